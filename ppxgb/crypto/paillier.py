"""Paillier helpers around python-paillier (phe): fixed-exponent encoding, fast
encryption for the key holder, fast decryption of small plaintexts, homomorphic sums.

Encoding.  Every float32 is an integer multiple of 2**-149, so one global scale of
2**152 = 16**38 (phe's base is 16, exponent -38) turns any float32 leaf value or
intercept into an exact integer of at most ~280 bits.  Because the exponent is the same
for every ciphertext, it reveals nothing about a leaf's magnitude (phe's own encoding
picks a per-number exponent, which would).  A sum of up to 2**700 such integers still
fits in the signed half of a 2048-bit plaintext space, so sums are exact.

Encryption (proxy side, which knows p and q).  A Paillier ciphertext is
(1 + n*m) * R mod n**2 for any random n-th power R.  Following Damgard-Jurik-Nielsen,
R = hs**a with hs = h**n, h = -x**2 mod n fixed per key and a short random exponent
(`EXPONENT_BITS`), computed with a fixed-base comb table, separately modulo p**2 and
q**2 and recombined by CRT.  phe decrypts the result like any of its own ciphertexts.
R does not depend on m, so it can be made ahead of time (`random_masks`, the proxy's
key pool), leaving (1 + n*m) * R = R + n * (m * R mod n) for the moment of encryption.

Decryption (client side).  A plaintext m with |m| < p/2 is determined by m mod p, so
only the p half of the CRT decryption is needed (half the work of phe's decrypt).
"""

from __future__ import annotations

import secrets
from typing import Iterable, Sequence

import gmpy2
import numpy as np
from phe import paillier

from ppxgb.errors import ParameterError

#: phe exponent (base 16) shared by every ppxgb ciphertext: value = encoding * 16**-38.
FIXED_EXPONENT = -38
SCALE_BITS = 152
#: Paillier modulus sizes ppxgb accepts; short-exponent lengths follow DJN (2x security).
KEY_BITS = (1024, 2048, 3072)
_EXPONENT_BITS = {512: 160, 1024: 160, 2048: 224, 3072: 256}
_WINDOW = 8


def encode_fixed(values) -> list[int]:
    """Exact integers value * 2**152 for float32 values (NaN/inf rejected)."""
    v = np.asarray(values, dtype=np.float32).astype(np.float64).ravel()
    if not np.isfinite(v).all():
        raise ParameterError.bad("values", "finite float32 numbers", "NaN or inf")
    return [int(x) for x in (v * 2.0 ** SCALE_BITS).tolist()]


def decode_fixed(m: int) -> float:
    """The float64 nearest to m / 2**152 (Python's int true division rounds correctly)."""
    return m / (1 << SCALE_BITS)


def generate_keypair(n_bits: int = 2048):
    """A phe key pair; only the sizes in KEY_BITS are accepted (512 for tests only)."""
    if n_bits not in KEY_BITS and n_bits != 512:
        raise ParameterError.bad("n_bits", f"one of {KEY_BITS}", n_bits)
    return paillier.generate_paillier_keypair(n_length=n_bits)


def private_key_from_factors(n: int, p: int, q: int) -> paillier.PaillierPrivateKey:
    public = paillier.PaillierPublicKey(int(n))
    return paillier.PaillierPrivateKey(public, int(p), int(q))


class FastEncryptor:
    """Encrypt many small plaintexts under one key whose factors we hold (DJN + CRT).

    masks: random n-th powers precomputed for this key (`random_masks`, e.g. by the
    proxy's key pool); each encryption consumes one, and computes its own once they
    are used up (the comb tables are built only then).
    """

    def __init__(self, private_key: paillier.PaillierPrivateKey, randbits=secrets.randbits,
                 masks: Sequence[int] = ()):
        self.n = gmpy2.mpz(private_key.public_key.n)
        self.nsquare = self.n * self.n
        p, q = gmpy2.mpz(private_key.p), gmpy2.mpz(private_key.q)
        self.p2, self.q2 = p * p, q * q
        self._q2_inv = gmpy2.invert(self.q2, self.p2)
        self._randbits = randbits
        bits = private_key.public_key.n.bit_length()
        self.exponent_bits = _EXPONENT_BITS.get(bits, 256 if bits > 3072 else 224)
        x = gmpy2.mpz(randbits(bits - 1)) | 1
        while gmpy2.gcd(x, self.n) != 1:
            x += 2
        self._h = (-x * x) % self.n
        self._tables = None
        self._masks = [gmpy2.mpz(m) for m in reversed(masks)]

    def _mask(self, a: int) -> int:
        """hs**a mod n**2 via the comb tables and CRT (one table row per byte of a)."""
        if self._tables is None:
            hs_p, hs_q = (gmpy2.powmod(self._h, self.n, m) for m in (self.p2, self.q2))
            self._tables = [_comb_table(hs_p, self.p2, self.exponent_bits),
                            _comb_table(hs_q, self.q2, self.exponent_bits)]
        digits = a.to_bytes(len(self._tables[0]), "little")
        parts = []
        for table, mod in zip(self._tables, (self.p2, self.q2)):
            acc = gmpy2.mpz(1)
            for row, digit in zip(table, digits):
                if digit:
                    acc = acc * row[digit] % mod
            parts.append(acc)
        rp, rq = parts
        return rq + self.q2 * ((rp - rq) * self._q2_inv % self.p2)

    def random_masks(self, count: int) -> list[int]:
        """`count` fresh random n-th powers hs**a mod n**2 (the randomness of as many
        encryptions), each to be used once: the precomputable half of encryption."""
        return [int(self._mask(self._randbits(self.exponent_bits))) for _ in range(count)]

    def encrypt_raw(self, plaintexts: Iterable[int], r_values: Sequence[int] | None = None) -> list[int]:
        """Raw ciphertexts of integer plaintexts (negative ones wrap modulo n, as in phe).

        r_values (the short exponents) may be pinned for known-answer tests only.
        """
        out = []
        for i, m in enumerate(plaintexts):
            if r_values is None and self._masks:
                mask = self._masks.pop()
            else:
                mask = self._mask(r_values[i] if r_values is not None else self._randbits(self.exponent_bits))
            # (1 + n*m) * mask = mask + n * (m * mask mod n)  (mod n**2): no 4096-bit product
            out.append(int((mask + self.n * ((gmpy2.mpz(m) % self.n) * (mask % self.n) % self.n)) % self.nsquare))
        return out

    def encrypt_fixed(self, values) -> list[int]:
        """Raw ciphertexts of float32 values under the shared fixed exponent."""
        return self.encrypt_raw(encode_fixed(values))


def _comb_table(base, mod, exponent_bits: int) -> list[list]:
    """table[i][d] = base**(d * 256**i) mod `mod`, for every window i of the exponent."""
    table = []
    b = gmpy2.mpz(base)
    for _ in range((exponent_bits + _WINDOW - 1) // _WINDOW):
        row = [gmpy2.mpz(1), b]
        for _d in range(2, 1 << _WINDOW):
            row.append(row[-1] * b % mod)
        table.append(row)
        b = row[-1] * b % mod
    return table


class SmallDecryptor:
    """Decrypt plaintexts known to satisfy |m| < p/2 using the p half of CRT only."""

    def __init__(self, private_key: paillier.PaillierPrivateKey):
        self.p = gmpy2.mpz(private_key.p)
        self.p2 = self.p * self.p
        self.pm1 = self.p - 1
        self.hp = gmpy2.mpz(private_key.hp)
        self.n = private_key.public_key.n

    def decrypt_raw(self, ciphertext: int) -> int:
        """Signed plaintext m of a raw ciphertext (m in (-p/2, p/2))."""
        c = gmpy2.mpz(ciphertext)
        u = gmpy2.powmod(c, self.pm1, self.p2)
        m = ((u - 1) // self.p) * self.hp % self.p
        return int(m - self.p) if m > self.p // 2 else int(m)

    def decrypt_fixed(self, ciphertext: int) -> float:
        return decode_fixed(self.decrypt_raw(ciphertext))


def product_mod(ciphertexts: Sequence, nsquare) -> int:
    """Homomorphic sum: the product of raw ciphertexts modulo n**2."""
    acc = gmpy2.mpz(1)
    for c in ciphertexts:
        acc = acc * c % nsquare
    return acc


def valid_ciphertext(c: int, n: int) -> bool:
    """A raw ciphertext is an integer in (0, n**2) coprime to n."""
    return 0 < c < n * n and gmpy2.gcd(c, n) == 1

"""The Lewi-Wu ORE (ppxgb.crypto.ore): exact comparisons on ppxgb's float32 domain, the
PRF pinned to `cryptography`'s AES, fresh nonces, and the documented leakage only."""

import numpy as np
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from ppxgb.crypto import ore
from ppxgb.crypto.ope import MISSING_HIGH, MISSING_LOW, float32_plaintext
from ppxgb.errors import ParameterError

KEY = bytes(range(16))


def _aes(key: bytes, block: bytes) -> bytes:
    enc = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    return enc.update(block) + enc.finalize()


def _block(tag: int, i: int, v: int, prefix: int) -> bytes:
    return (tag | i << 8 | v << 16).to_bytes(8, "little") + prefix.to_bytes(8, "little")


def _reference_left(key: bytes, x: int, d: int = ore.BLOCK_BITS) -> bytes:
    """The left ciphertext from the definition, with `cryptography`'s AES as the PRF."""
    nb, out = ore.n_blocks(d), b""
    for i in range(nb):
        prefix = x >> (d * (nb - i))
        xi = (x >> (d * (nb - 1 - i))) & ((1 << d) - 1)
        words = [int.from_bytes(_aes(key, _block(1, i, v, prefix))[:8], "little") for v in range(1 << d)]
        order = sorted(range(1 << d), key=lambda v: (words[v], v))
        h = order.index(xi)
        out += bytes([h]) + _aes(key, _block(2, i, h, prefix))
    return out


def _reference_right(key: bytes, y: int, nonce: bytes, d: int = ore.BLOCK_BITS) -> bytes:
    nb, out = ore.n_blocks(d), nonce
    for i in range(nb):
        prefix = y >> (d * (nb - i))
        yi = (y >> (d * (nb - 1 - i))) & ((1 << d) - 1)
        words = [int.from_bytes(_aes(key, _block(1, i, v, prefix))[:8], "little") for v in range(1 << d)]
        order = sorted(range(1 << d), key=lambda v: (words[v], v))       # order[h] = pi^-1(h)
        for h in range(1 << d):
            j = order[h]
            cmp = 0 if j == yi else (1 if j < yi else 2)
            mask = int.from_bytes(_aes(_aes(key, _block(2, i, h, prefix)), nonce)[:8], "little") % 3
            out += bytes([(cmp + mask) % 3])
    return out


@pytest.mark.parametrize("x", [0, 1, 2**31 + 7, 2**32 + 1])
def test_known_answer_against_cryptography(x):
    o = ore.ORE(KEY)
    nonce = bytes(range(100, 116))
    assert o.encrypt_left([x])[0].tobytes() == _reference_left(KEY, x)
    right = o.encrypt_right([x], nonces=np.frombuffer(nonce, np.uint8)[None, :])
    assert right[0].tobytes() == _reference_right(KEY, x, nonce)


def _float_edges(rng, n=3000):
    v = rng.lognormal(sigma=3, size=n).astype(np.float32) * rng.choice([-1, 1], size=n).astype(np.float32)
    edges = np.array([0.0, -0.0, np.finfo(np.float32).max, -np.finfo(np.float32).max,
                      np.finfo(np.float32).tiny, 1e-45, -1e-45], dtype=np.float32)
    return np.concatenate([v, edges, np.nextafter(v[:200], np.float32(np.inf)),
                           np.nextafter(v[:200], np.float32(-np.inf))])


def test_comparisons_exact_on_float32_domain():
    rng = np.random.default_rng(0)
    values = _float_edges(rng)
    x = np.concatenate([[MISSING_LOW, MISSING_HIGH], float32_plaintext(values)])
    y = np.concatenate([[MISSING_HIGH, MISSING_LOW], float32_plaintext(rng.permutation(values))])
    y[2:400] = x[2:400]                           # equal values
    y[400:600] = x[400:600] + 1                   # neighbours
    o = ore.ORE(KEY)
    got = ore.compare(o.encrypt_left(x), o.encrypt_right(y))
    expected = np.where(x == y, 0, np.where(x < y, 1, 2))
    assert np.array_equal(got, expected)


def test_right_ciphertexts_fresh_left_deterministic():
    o = ore.ORE(KEY)
    r1, r2 = o.encrypt_right([12345, 12345]), o.encrypt_right([12345])
    assert not np.array_equal(r1[0], r1[1]) and not np.array_equal(r1[0], r2[0])
    assert np.array_equal(o.encrypt_left([12345]), o.encrypt_left([12345]))
    other = ore.ORE(bytes(16))
    assert ore.compare(other.encrypt_left([5]), o.encrypt_right([9]))[0] in (0, 1, 2)   # no error, garbage


def test_right_ciphertext_values_uniform():
    """Without a left key, a right ciphertext's block values are uniform mod 3, whatever
    the plaintext (a chi-square over many ciphertexts of two extreme values)."""
    o = ore.ORE(KEY)
    for y in (MISSING_LOW, MISSING_HIGH):
        body = o.encrypt_right(np.full(400, y))[:, ore.NONCE_BYTES:].astype(np.int64)
        counts = np.bincount(body.ravel(), minlength=3)
        assert counts.shape == (3,)
        expected = body.size / 3
        assert ((counts - expected) ** 2 / expected).sum() < 20


def test_bad_inputs_refused():
    with pytest.raises(ParameterError):
        ore.ORE(b"short")
    with pytest.raises(ParameterError):
        ore.ORE(KEY).encrypt_left([2**33])
    with pytest.raises(ParameterError):
        ore.compare(np.zeros((1, 3), np.uint8), np.zeros((1, ore.right_width()), np.uint8))

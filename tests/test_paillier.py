"""ppxgb.crypto.paillier: exact fixed-exponent encoding, DJN encryption that phe decrypts."""

import hashlib
import json
import os

import gmpy2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from phe import paillier as phe

from ppxgb.crypto import paillier as pp
from ppxgb.errors import ParameterError

VEC = json.load(open(os.path.join(os.path.dirname(__file__), "vectors", "paillier_djn.json")))


def deterministic_randbits(seed: bytes):
    counter = [0]

    def randbits(k):
        out = b""
        while len(out) * 8 < k:
            out += hashlib.sha256(seed + counter[0].to_bytes(8, "big")).digest()
            counter[0] += 1
        return int.from_bytes(out, "big") >> (len(out) * 8 - k)
    return randbits


@pytest.fixture(scope="module")
def keypair():
    # 1024-bit: the point here is correctness, not key size
    return pp.generate_keypair(1024)


def test_known_answer_vectors():
    p, q = int(VEC["p"]), int(VEC["q"])
    key = pp.private_key_from_factors(p * q, p, q)
    assert [str(m) for m in pp.encode_fixed(VEC["values"])] == VEC["encoded"]
    enc = pp.FastEncryptor(key, randbits=deterministic_randbits(VEC["seed"].encode()))
    got = enc.encrypt_raw([int(m) for m in VEC["encoded"]])
    assert [str(c) for c in got] == VEC["ciphertexts"]
    dec = pp.SmallDecryptor(key)
    assert [dec.decrypt_fixed(c) for c in got] == [float(np.float32(v)) for v in VEC["values"]]


def test_djn_ciphertext_is_textbook_paillier():
    """c = (1 + n m) * (h^n)^a mod n^2 with h = -x^2, recomputed with plain pow()."""
    p, q = int(VEC["p"]), int(VEC["q"])
    n, n2 = p * q, (p * q) ** 2
    rb = deterministic_randbits(b"again")
    enc = pp.FastEncryptor(pp.private_key_from_factors(n, p, q), randbits=rb)
    rb2 = deterministic_randbits(b"again")
    x = rb2(n.bit_length() - 1) | 1
    while gmpy2.gcd(x, n) != 1:
        x += 2
    hs = pow((-x * x) % n, n, n2)
    a = 123456789123456789
    assert enc.encrypt_raw([42], r_values=[a])[0] == (1 + n * 42) * pow(hs, a, n2) % n2


def test_phe_decrypts_fixed_exponent_ciphertexts(keypair):
    public, private = keypair
    values = np.float32([0.1, -2.5, 1e-38, 3e38, 0.0, -7.25e-3])
    enc = pp.FastEncryptor(private)
    cs = enc.encrypt_fixed(values)
    for v, c in zip(values, cs):
        assert private.decrypt(phe.EncryptedNumber(public, c, pp.FIXED_EXPONENT)) == float(v)
    total = pp.product_mod(cs, public.n ** 2)
    assert pp.SmallDecryptor(private).decrypt_fixed(total) == pytest.approx(
        float(np.sum(values.astype(np.float64))), rel=1e-15)


def test_fresh_randomness_and_one_exponent(keypair):
    public, private = keypair
    enc = pp.FastEncryptor(private)
    a, b = enc.encrypt_fixed([0.5, 0.5])
    assert a != b                     # same value, different ciphertexts
    assert pp.FIXED_EXPONENT == -38   # one exponent for every value, whatever its magnitude


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(width=32, allow_nan=False, allow_infinity=False), min_size=1, max_size=50))
def test_encoding_is_exact(values):
    ints = pp.encode_fixed(values)
    from fractions import Fraction
    for v, m in zip(values, ints):
        assert Fraction(m, 2 ** pp.SCALE_BITS) == Fraction(float(np.float32(v)))


def test_encoding_rejects_non_finite():
    with pytest.raises(ParameterError):
        pp.encode_fixed([np.nan])
    with pytest.raises(ParameterError):
        pp.encode_fixed([np.inf])
    with pytest.raises(ParameterError):
        pp.generate_keypair(1000)

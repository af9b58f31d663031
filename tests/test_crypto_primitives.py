"""The crypto layer's hand-written primitives against the libraries they stand in for.

ppxgb.crypto.aes (every key size, the AES-NI and the portable path, one and four
blocks) against `cryptography`'s AES-ECB and FIPS-197's vectors; ppxgb.crypto.sha256
against hashlib / hmac and RFC 4231's vectors.  The last tests check that the
comparisons can fail: one flipped key bit must change every output.
"""

import hashlib
import hmac
import json
import os

import numpy as np
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from numba import njit

from ppxgb.crypto import aes, sha256
from ppxgb.errors import ParameterError

VECTORS = os.path.join(os.path.dirname(__file__), "vectors")
FIPS197 = json.load(open(os.path.join(VECTORS, "aes_fips197.json")))
RFC4231 = json.load(open(os.path.join(VECTORS, "hmac_rfc4231.json")))

PATHS = [pytest.param(False, id="ni", marks=pytest.mark.skipif(not aes.AES_INSTRUCTIONS,
                                                                reason="no AES instructions here")),
         pytest.param(True, id="portable")]


def _reference(key: bytes, data: bytes) -> bytes:
    return Cipher(algorithms.AES(key), modes.ECB()).encryptor().update(data)


def _four_at_a_time(encrypt4):
    """A kernel running `encrypt4` on four blocks per call, the PRF kernels' pattern
    (one kernel per path: the AES-NI one only compiles where the instructions exist)."""
    @njit
    def kernel(rk, words):
        out = np.empty_like(words)
        for i in range(0, words.shape[0], 4):
            w = words[i:i + 4]
            r = encrypt4(rk, w[0, 0], w[0, 1], w[1, 0], w[1, 1], w[2, 0], w[2, 1], w[3, 0], w[3, 1])
            for t in range(4):
                out[i + t, 0], out[i + t, 1] = r[2 * t], r[2 * t + 1]
        return out
    return kernel


FOUR = {True: _four_at_a_time(aes.encrypt4_portable), False: _four_at_a_time(aes.encrypt4_ni)}


def _encrypt4(rk: np.ndarray, data: bytes, portable: bool) -> bytes:
    words = np.frombuffer(data, dtype=np.uint64).reshape(-1, 2)
    return FOUR[portable](rk, words).tobytes()


# ---------------------------------------------------------------- AES
@pytest.mark.parametrize("portable", PATHS)
@pytest.mark.parametrize("case", FIPS197["encrypt"], ids=lambda c: c["where"])
def test_aes_fips197_vectors(case, portable):
    rk = aes.round_keys(bytes.fromhex(case["key"]))
    block = bytes.fromhex(case["plaintext"])
    assert aes.encrypt_blocks(rk, block, portable=portable).hex() == case["ciphertext"]
    assert _encrypt4(rk, block * 4, portable).hex() == case["ciphertext"] * 4


@pytest.mark.parametrize("case", FIPS197["last_round_key"], ids=lambda c: c["where"])
def test_aes_key_expansion_vectors(case):
    rk = aes.round_keys(bytes.fromhex(case["key"]))
    assert rk.shape == (len(case["key"]) // 8 + 7, 2)
    assert rk[-1].tobytes().hex() == case["round_key"]
    assert rk[0].tobytes().hex() == case["key"][:32]          # round key 0 is the key's start


@pytest.mark.parametrize("portable", PATHS)
@pytest.mark.parametrize("key_bytes", [16, 24, 32])
def test_aes_matches_cryptography_on_random_keys_and_blocks(key_bytes, portable):
    rng = np.random.default_rng(key_bytes)
    for _ in range(25):
        key = rng.bytes(key_bytes)
        data = rng.bytes(16 * 8)
        rk = aes.round_keys(key)
        want = _reference(key, data)
        assert aes.encrypt_blocks(rk, data, portable=portable) == want
        assert _encrypt4(rk, data, portable) == want


def test_the_selected_path_is_the_reference_too():
    """encrypt / encrypt4 are whichever path this processor takes."""
    assert (aes.encrypt, aes.encrypt4) == ((aes.encrypt_ni, aes.encrypt4_ni) if aes.AES_INSTRUCTIONS
                                           else (aes.encrypt_portable, aes.encrypt4_portable))
    key = bytes(range(32))
    assert aes.encrypt_blocks(aes.round_keys(key), bytes(64)) == _reference(key, bytes(64))


def test_expand_into_reuses_the_callers_array():
    key = np.frombuffer(bytes(range(100, 132)), dtype=np.uint8)
    rk = np.full((15, 2), 7, dtype=np.uint64)
    aes.expand_into(key, rk)
    np.testing.assert_array_equal(rk, aes.round_keys(key.tobytes()))


def test_aes_rejects_bad_keys_and_partial_blocks():
    for bad in (b"", bytes(15), bytes(17), bytes(33), "k" * 16, None):
        with pytest.raises(ParameterError):
            aes.round_keys(bad)
    with pytest.raises(ParameterError):
        aes.encrypt_blocks(aes.round_keys(bytes(16)), bytes(20))
    with pytest.raises(ParameterError):
        aes.encrypt_blocks(aes.round_keys(bytes(16))[:10], bytes(16))


def test_byte_swap_makes_the_big_endian_counter_block():
    for p in (0, 1, 255, 2**32 + 7, 2**64 - 1):
        lo, hi = np.uint64(0), aes.byte_swap(np.uint64(p))
        block = np.array([lo, hi], dtype=np.uint64).tobytes()
        assert block == p.to_bytes(16, "big")


# ---------------------------------------------------------------- SHA-256 / HMAC
def test_sha256_matches_hashlib_on_every_length_to_200():
    rng = np.random.default_rng(0)
    for n in range(201):
        data = rng.bytes(n)
        assert sha256.sha256(data) == hashlib.sha256(data).digest(), n


@pytest.mark.parametrize("key_bytes", [0, 1, 20, 32, 63, 64, 65, 131])
def test_hmac_matches_the_hmac_module_on_every_length_to_200(key_bytes):
    rng = np.random.default_rng(key_bytes)
    key = rng.bytes(key_bytes)
    for n in range(201):
        msg = rng.bytes(n)
        assert sha256.hmac_sha256(key, msg) == hmac.digest(key, msg, "sha256"), n


@pytest.mark.parametrize("case", RFC4231["cases"], ids=lambda c: f"case{c['case']}")
def test_hmac_rfc4231_vectors(case):
    got = sha256.hmac_sha256(bytes.fromhex(case["key"]), bytes.fromhex(case["data"]))
    assert got[:case.get("truncated_bytes", 32)].hex() == case["hmac_sha256"]


def test_hmac_into_is_allocation_free_and_reusable():
    """The kernel form the OPE uses: precomputed pad states, caller-owned scratch."""
    inner, outer = sha256.hmac_key_states(b"key")
    w, st, out = np.empty(64, np.int64), np.empty(8, np.int64), np.empty(8, np.int64)
    digest = np.empty(32, np.uint8)
    for label in (b"0", b"12345", b"4611686018427387903", b"x" * 119):
        sha256.hmac_into(inner, outer, np.frombuffer(label, np.uint8), w, st, out)
        sha256.words_to_bytes(out, digest)
        assert digest.tobytes() == hmac.digest(b"key", label, "sha256")


# ---------------------------------------------------------------- the tests can fail
def _flip(key: bytes, bit: int) -> bytes:
    b = bytearray(key)
    b[bit // 8] ^= 1 << (bit % 8)
    return bytes(b)


@pytest.mark.parametrize("portable", PATHS)
@pytest.mark.parametrize("key_bytes", [16, 32])
def test_one_key_bit_changes_the_aes_output(key_bytes, portable):
    key, data = bytes(range(key_bytes)), bytes(range(64))
    out = aes.encrypt_blocks(aes.round_keys(key), data, portable=portable)
    for bit in (0, 7, 8 * key_bytes - 1):
        mutant = aes.encrypt_blocks(aes.round_keys(_flip(key, bit)), data, portable=portable)
        assert mutant != out and mutant != _reference(key, data)
        assert all(mutant[i:i + 16] != out[i:i + 16] for i in range(0, 64, 16))


def test_one_key_bit_changes_the_hmac_output():
    key, msg = bytes(32), b"12345"
    want = hmac.digest(key, msg, "sha256")
    for bit in (0, 255):
        assert sha256.hmac_sha256(_flip(key, bit), msg) != want
    assert sha256.sha256(b"abd") != hashlib.sha256(b"abc").digest()

"""The protocol's PRF (ppxgb/crypto/prf.py) against the `cryptography` package's AES-128."""

import struct

import numpy as np
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from numba import njit

from ppxgb.errors import ParameterError
from ppxgb.crypto import prf

KEYS = [bytes(16), bytes(range(16)), bytes([0xFF] * 16), bytes.fromhex("2b7e151628aed2a6abf7158809cf4f3c")]


def _ecb(key: bytes, positions) -> bytes:
    blocks = b"".join(struct.pack(">QQ", 0, int(p)) for p in positions)
    return Cipher(algorithms.AES(key), modes.ECB()).encryptor().update(blocks)


def test_sbox_and_a_published_vector():
    assert prf.SBOX[0] == 0x63 and prf.SBOX[1] == 0x7C and prf.SBOX[0x53] == 0xED
    assert sorted(prf.SBOX.tolist()) == list(range(256))
    # FIPS-197 appendix B: key 2b7e1516..., plaintext 3243f6a8885a308d313198a2e0370734
    key = KEYS[3]
    want = Cipher(algorithms.AES(key), modes.ECB()).encryptor().update(bytes.fromhex("3243f6a8885a308d313198a2e0370734"))
    assert want.hex() == "3925841d02dc09fbdc118597196a0b32"
    rk = prf.round_keys(key)
    assert rk.view(np.uint8).reshape(-1)[-16:].tobytes().hex() == "d014f9a8c9ee2589e13f0cc8b6630ca6"


@pytest.mark.parametrize("key", KEYS)
def test_rows_are_the_aes128_ctr_keystream(key):
    for n in (0, 1, 3, 4, 5, 1001):
        want = Cipher(algorithms.AES(key), modes.CTR(bytes(16))).encryptor().update(bytes(16 * n))
        assert prf.rows(prf.round_keys(key), n).tobytes() == want
    start = 2**40 - 3                       # a start that carries into the next byte
    want = _ecb(key, range(start, start + 9))
    assert prf.rows(prf.round_keys(key), 9, start=start).tobytes() == want


@pytest.mark.parametrize("key", KEYS)
def test_rows_at_any_positions_are_aes128_of_the_counter_block(key):
    rng = np.random.default_rng(len(key) + key[0])
    for dtype in (np.int32, np.int64, np.uint32, np.uint64):
        pos = rng.integers(0, 2**31 - 1, 203).astype(dtype)
        assert prf.rows_at(prf.round_keys(key), pos).tobytes() == _ecb(key, pos)
    big = np.array([2**63 + 5, 2**64 - 1], dtype=np.uint64)
    assert prf.rows_at(prf.round_keys(key), big).tobytes() == _ecb(key, big)


@njit
def _portable_rows(rk, pos):
    out = np.empty((pos.shape[0], 2), np.uint64)
    for i in range(pos.shape[0]):
        out[i, 0], out[i, 1] = prf._prf_soft(rk, pos[i])
    return out


@pytest.mark.parametrize("key", KEYS)
def test_portable_aes_gives_the_same_words(key):
    """The byte-wise AES used on processors without AES instructions."""
    pos = np.array([0, 1, 2, 255, 256, 2**32 + 7, 2**63], dtype=np.uint64)
    assert _portable_rows(prf.round_keys(key), pos).tobytes() == _ecb(key, pos)


def test_bad_keys_are_rejected():
    for bad in (b"short", bytes(32), "x" * 16, None):
        with pytest.raises(ParameterError):
            prf.round_keys(bad)


def test_a_nonce_starts_the_keystream_at_its_counter_block():
    """with_nonce(rk, v) gives AES-128-CTR from counter block (v || 0), on both paths."""
    key = bytes(range(16, 32))
    for nonce in (0, 1, 0x0123456789ABCDEF, 2**64 - 1):
        rk = prf.with_nonce(prf.round_keys(key), nonce)
        start = nonce.to_bytes(8, "big") + bytes(8)
        stream = Cipher(algorithms.AES(key), modes.CTR(start)).encryptor().update(bytes(70 * 16))
        want = np.frombuffer(stream, np.uint64).reshape(70, 2)
        np.testing.assert_array_equal(prf.rows(rk, 70), want)
        np.testing.assert_array_equal(prf.rows_at(rk, np.arange(69, -1, -1)), want[::-1])
        assert prf._prf_soft(rk, 5) == tuple(want[5])
    with pytest.raises(ParameterError):
        prf.with_nonce(prf.round_keys(key), -1)
    with pytest.raises(ParameterError):
        prf.with_nonce(prf.round_keys(key), 2**64)

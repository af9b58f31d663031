"""AES's S-box and encryption T-tables, computed from their definition in FIPS-197.

Shared by the numba AES implementations: the OPE coin tape (ope.py, AES-256) and the
portable path of the vertical protocol's PRF (training/prf.py, AES-128).
"""

from __future__ import annotations

import numpy as np

_M32 = 0xFFFFFFFF


def aes_tables() -> tuple[np.ndarray, np.ndarray]:
    """(S-box, T-tables) as int64 arrays: sbox[x], and te[j, x] the round table
    rotated right by 8 j bits (big-endian column words)."""
    def mul(a, b):
        r = 0
        while b:
            if b & 1:
                r ^= a
            a = ((a << 1) ^ 0x11B) if a & 0x80 else a << 1
            b >>= 1
        return r
    inv = [0] * 256
    for a in range(1, 256):
        for b in range(1, 256):
            if mul(a, b) == 1:
                inv[a] = b
                break
    sbox = []
    for a in range(256):
        b, s = inv[a], inv[a]
        for _ in range(4):
            b = ((b << 1) | (b >> 7)) & 0xFF
            s ^= b
        sbox.append(s ^ 0x63)
    te = np.zeros((4, 256), dtype=np.int64)
    for x in range(256):
        s = sbox[x]
        word = (mul(s, 2) << 24) | (s << 16) | (s << 8) | mul(s, 3)
        for j in range(4):
            te[j, x] = ((word >> (8 * j)) | (word << (32 - 8 * j))) & _M32
    return np.array(sbox, dtype=np.int64), te

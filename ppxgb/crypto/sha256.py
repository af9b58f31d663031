"""SHA-256 and HMAC-SHA256 compiled in numba, for the OPE sampler (ope.py).

Why not hashlib/hmac: pyope keys every node of its bisection tree with HMAC-SHA256 of
the node's label, and the node labels are only known while the compiled sampler walks
the tree (about 14 nodes per plaintext).  Measured (CPU time) on 20,000 float32
plaintexts, 280,000 HMACs: the compiled HMAC costs 0.74 us per label; Python's
hmac.digest alone costs 1.7 us (1.9 us with str(label).encode()), and calling it from
the compiled walk (numba objmode) made the whole encryption 3.8 times slower (0.41 s
-> 1.58 s).  hashlib remains the reference: the tests compare every function here
against hashlib and hmac, and RFC 4231's vectors.

Words are 32-bit values held in int64 (big-endian, as SHA-256 reads its input), so
the arithmetic never mixes signed and unsigned types in numba.
"""

from __future__ import annotations

import numpy as np
from numba import njit

_K = np.array([
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
], dtype=np.int64)
#: The initial hash value (FIPS 180-4, 5.3.3).
H0 = np.array([0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
               0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19], dtype=np.int64)
_M32 = 0xFFFFFFFF


@njit(cache=True, inline="always")
def _rotr(x, n):
    return ((x >> n) | (x << (32 - n))) & 0xFFFFFFFF


@njit(cache=True, nogil=True)
def compress(state, w):
    """One compression into `state` (8 words); w[0:16] holds the block's big-endian
    words and w[16:64] is scratch for the message schedule."""
    for i in range(16, 64):
        x, y = w[i - 15], w[i - 2]
        s0 = _rotr(x, 7) ^ _rotr(x, 18) ^ (x >> 3)
        s1 = _rotr(y, 17) ^ _rotr(y, 19) ^ (y >> 10)
        w[i] = (w[i - 16] + s0 + w[i - 7] + s1) & 0xFFFFFFFF
    a, b, c, d = state[0], state[1], state[2], state[3]
    e, f, g, h = state[4], state[5], state[6], state[7]
    for i in range(64):
        t1 = (h + (_rotr(e, 6) ^ _rotr(e, 11) ^ _rotr(e, 25)) + (g ^ (e & (f ^ g))) + _K[i] + w[i]) & 0xFFFFFFFF
        t2 = (_rotr(a, 2) ^ _rotr(a, 13) ^ _rotr(a, 22)) + ((a & b) | (c & (a | b)))
        h, g, f, e, d, c, b, a = g, f, e, (d + t1) & 0xFFFFFFFF, c, b, a, (t1 + t2) & 0xFFFFFFFF
    state[0] = (state[0] + a) & 0xFFFFFFFF
    state[1] = (state[1] + b) & 0xFFFFFFFF
    state[2] = (state[2] + c) & 0xFFFFFFFF
    state[3] = (state[3] + d) & 0xFFFFFFFF
    state[4] = (state[4] + e) & 0xFFFFFFFF
    state[5] = (state[5] + f) & 0xFFFFFFFF
    state[6] = (state[6] + g) & 0xFFFFFFFF
    state[7] = (state[7] + h) & 0xFFFFFFFF


@njit(cache=True, nogil=True)
def absorb(state, prefix, msg, w):
    """Finish a hash: `state` has absorbed `prefix` bytes (a multiple of 64); absorb
    msg (uint8), the 0x80 byte, zeros and the bit length.  w is 64 words of scratch."""
    n = msg.shape[0]
    bits = (prefix + n) * 8
    blocks = (n + 72) // 64                      # room for 0x80 and the 8-byte length
    for blk in range(blocks):
        base = 64 * blk
        whole = min(max(n - base, 0), 64) >> 2   # message words filling the whole word
        for i in range(whole):
            k = base + 4 * i
            w[i] = ((np.int64(msg[k]) << 24) | (np.int64(msg[k + 1]) << 16) | (np.int64(msg[k + 2]) << 8)
                    | np.int64(msg[k + 3]))
        for i in range(whole, 16):
            w[i] = 0
        for k in range(base + 4 * whole, min(n, base + 64)):
            w[(k - base) >> 2] |= np.int64(msg[k]) << (24 - 8 * ((k - base) & 3))
        if base <= n < base + 64:
            w[(n - base) >> 2] |= 0x80 << (24 - 8 * ((n - base) & 3))
        if blk == blocks - 1:
            w[14] = bits >> 32
            w[15] = bits & _M32
        compress(state, w)


@njit(cache=True, nogil=True)
def hmac_into(inner, outer, msg, w, st, out):
    """HMAC-SHA256 of msg (uint8) into out (8 words), allocation-free for kernels.

    inner/outer are the states after the key^ipad / key^opad block (hmac_key_states);
    w (64 words) and st (8 words) are scratch.
    """
    for i in range(8):
        st[i] = inner[i]
    absorb(st, 64, msg, w)
    for i in range(8):                           # the outer message: the inner digest
        w[i] = st[i]
        out[i] = outer[i]
    w[8] = 0x80000000
    for i in range(9, 15):
        w[i] = 0
    w[15] = (64 + 32) * 8
    compress(out, w)


@njit(cache=True, nogil=True)
def words_to_bytes(words, out):
    """The big-endian bytes of 32-bit words (a digest) into out (uint8, 4 per word)."""
    for i in range(words.shape[0]):
        v = words[i]
        out[4 * i], out[4 * i + 1], out[4 * i + 2], out[4 * i + 3] = \
            (v >> 24) & 0xFF, (v >> 16) & 0xFF, (v >> 8) & 0xFF, v & 0xFF


@njit(cache=True, nogil=True)
def _digest(msg):
    st = H0.copy()
    absorb(st, 0, msg, np.empty(64, np.int64))
    out = np.empty(32, np.uint8)
    words_to_bytes(st, out)
    return out


def _u8(data: bytes) -> np.ndarray:
    return np.frombuffer(bytes(data), dtype=np.uint8)


def sha256(data: bytes) -> bytes:
    """SHA-256 of `data` by the compiled code (what the tests compare with hashlib)."""
    return _digest(_u8(data)).tobytes()


def hmac_key_states(key: bytes) -> tuple[np.ndarray, np.ndarray]:
    """SHA-256 states after absorbing key^ipad and key^opad, HMAC's fixed first block;
    computed once per key, so each message costs only its own compressions."""
    key = bytes(key)
    if len(key) > 64:
        key = sha256(key)
    padded = _u8(key.ljust(64, b"\0"))
    states = []
    for pad in (0x36, 0x5C):
        block = (padded ^ np.uint8(pad)).astype(np.int64)
        w = np.zeros(64, dtype=np.int64)
        w[:16] = (block[0::4] << 24) | (block[1::4] << 16) | (block[2::4] << 8) | block[3::4]
        st = H0.copy()
        compress(st, w)
        states.append(st)
    return states[0], states[1]


def hmac_sha256(key: bytes, msg: bytes) -> bytes:
    """HMAC-SHA256 by the compiled code (what the tests compare with hmac)."""
    inner, outer = hmac_key_states(key)
    out = np.empty(8, np.int64)
    hmac_into(inner, outer, _u8(msg), np.empty(64, np.int64), np.empty(8, np.int64), out)
    digest = np.empty(32, np.uint8)
    words_to_bytes(out, digest)
    return digest.tobytes()

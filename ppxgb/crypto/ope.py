"""Order-preserving encryption: an exact float32 order map and a fast Boldyreva OPE.

Two pieces of pure maths, no I/O:

* `float32_ordinal` maps float32 values to integers so that `x < y` (IEEE, as XGBoost
  compares) holds exactly when `ordinal(x) < ordinal(y)`.  It is the sign-flip of the
  IEEE bit pattern: non-negative values get the top bit set, negative values have all
  bits inverted.  -0.0 is first made +0.0, because IEEE says `-0.0 < 0.0` is false.

* `OPE` is Boldyreva et al.'s lazy-sampled order-preserving scheme, ciphertext for
  ciphertext the same as `pyope.ope.OPE(key, in_range, out_range)`: the same recursive
  bisection of the ciphertext range, the same hypergeometric sampler (TOMS 668 HRUA /
  HYP, with the same floating-point operations in the same order) and the same coins
  (HMAC-SHA256 of the decimal node label keys AES-256-CTR with a zero counter block).
  It is fast because (1) HMAC-SHA256, AES-256 and the sampler run compiled in numba,
  (2) a batch is sorted and de-duplicated, and one walk of the bisection tree serves
  every value below a node, so shared upper levels are sampled once.  Known-answer
  vectors and a test against pyope pin the equivalence.
"""

from __future__ import annotations

import hashlib
import math

import numba
import numpy as np

from ppxgb.crypto.aes_tables import aes_tables
from ppxgb.errors import ParameterError

# ---------------------------------------------------------------- float32 order map
#: Plaintext domain used by ppxgb: 0 and 2**32 + 1 are the two missing-value sentinels,
#: a float32 x encodes to float32_ordinal(x) + 1 in between.
IN_RANGE = (0, 2**32 + 1)
#: Ciphertext range: 62-bit, so ciphertexts fit int64 and compare with numpy.
OUT_RANGE = (0, 2**62 - 1)
MISSING_LOW = IN_RANGE[0]
MISSING_HIGH = IN_RANGE[1]


def float32_ordinal(x) -> np.ndarray:
    """Exact order-preserving map float32 -> [0, 2**32) as int64; NaN is rejected."""
    x = np.asarray(x, dtype=np.float32)
    if np.isnan(x).any():
        raise ParameterError.bad("x", "no NaN (missing values are encoded separately)", "NaN")
    x = np.where(x == 0, np.float32(0.0), x)            # -0.0 -> +0.0
    bits = x.view(np.uint32).astype(np.int64)
    return np.where(bits >= 2**31, (~bits) & 0xFFFFFFFF, bits | 2**31)


def float32_plaintext(x) -> np.ndarray:
    """OPE plaintexts of float32 values in ppxgb's domain (ordinal + 1)."""
    return float32_ordinal(x) + 1


# ---------------------------------------------------------------- SHA-256 / HMAC
_K256 = np.array([
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
], dtype=np.int64)
_H256 = np.array([0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                  0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19], dtype=np.int64)


_M32 = 0xFFFFFFFF


@numba.njit(cache=True)
def _rotr(x, n):
    return ((x >> n) | (x << (32 - n))) & 0xFFFFFFFF


@numba.njit(cache=True)
def _sha256_compress(state, w, K):
    """One SHA-256 compression; w[0:16] holds the block's big-endian words (w is scratch)."""
    for i in range(16, 64):
        x, y = w[i - 15], w[i - 2]
        s0 = _rotr(x, 7) ^ _rotr(x, 18) ^ (x >> 3)
        s1 = _rotr(y, 17) ^ _rotr(y, 19) ^ (y >> 10)
        w[i] = (w[i - 16] + s0 + w[i - 7] + s1) & 0xFFFFFFFF
    a, b, c, d = state[0], state[1], state[2], state[3]
    e, f, g, h = state[4], state[5], state[6], state[7]
    for i in range(64):
        t1 = (h + (_rotr(e, 6) ^ _rotr(e, 11) ^ _rotr(e, 25)) + ((e & f) ^ (~e & g & 0xFFFFFFFF))
              + K[i] + w[i]) & 0xFFFFFFFF
        t2 = ((_rotr(a, 2) ^ _rotr(a, 13) ^ _rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c))) & 0xFFFFFFFF
        h, g, f, e, d, c, b, a = g, f, e, (d + t1) & 0xFFFFFFFF, c, b, a, (t1 + t2) & 0xFFFFFFFF
    state[0] = (state[0] + a) & 0xFFFFFFFF
    state[1] = (state[1] + b) & 0xFFFFFFFF
    state[2] = (state[2] + c) & 0xFFFFFFFF
    state[3] = (state[3] + d) & 0xFFFFFFFF
    state[4] = (state[4] + e) & 0xFFFFFFFF
    state[5] = (state[5] + f) & 0xFFFFFFFF
    state[6] = (state[6] + g) & 0xFFFFFFFF
    state[7] = (state[7] + h) & 0xFFFFFFFF


@numba.njit(cache=True)
def _hmac_label(inner0, outer0, label, K, w, st, out):
    """HMAC-SHA256 of the decimal digits of int `label` into out[0:8] (big-endian words).

    inner0/outer0 are the SHA-256 states after the key^ipad / key^opad block; w and st
    are scratch (64 and 8 words).
    """
    nd = 1
    v = label // 10
    while v > 0:
        nd += 1
        v //= 10
    for i in range(16):
        w[i] = 0
    v = label
    for i in range(nd - 1, -1, -1):          # digits, most significant first
        w[i // 4] |= (48 + v % 10) << (24 - 8 * (i % 4))
        v //= 10
    w[nd // 4] |= 0x80 << (24 - 8 * (nd % 4))
    w[15] = (64 + nd) * 8
    for i in range(8):
        st[i] = inner0[i]
    _sha256_compress(st, w, K)
    for i in range(8):
        w[i] = st[i]
    w[8] = 0x80000000
    for i in range(9, 15):
        w[i] = 0
    w[15] = 768
    for i in range(8):
        out[i] = outer0[i]
    _sha256_compress(out, w, K)


def _hmac_pad_states(key: bytes) -> tuple[np.ndarray, np.ndarray]:
    """SHA-256 states after absorbing key^ipad and key^opad (HMAC's fixed first block)."""
    if len(key) > 64:
        key = hashlib.sha256(key).digest()
    k = np.frombuffer(key.ljust(64, b"\0"), dtype=np.uint8)
    states = []
    for pad in (0x36, 0x5C):
        block = (k ^ np.uint8(pad)).astype(np.int64)
        w = np.zeros(64, dtype=np.int64)
        w[:16] = (block[0::4] << 24) | (block[1::4] << 16) | (block[2::4] << 8) | block[3::4]
        st = _H256.copy()
        _sha256_compress(st, w, _K256)
        states.append(st)
    return states[0], states[1]


# ---------------------------------------------------------------- AES-256 (T-tables)
_SBOX, _TE = aes_tables()
_RCON = np.array([0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40], dtype=np.int64)


@numba.njit(cache=True)
def _aes256_expand(key_words, sbox, rcon, rk):
    """AES-256 key schedule: 8 big-endian key words -> 60 round-key words (rk, in place)."""
    for i in range(8):
        rk[i] = key_words[i]
    for i in range(8, 60):
        t = rk[i - 1]
        if i % 8 == 0:
            t = ((t << 8) | (t >> 24)) & 0xFFFFFFFF
            t = ((sbox[t >> 24] << 24) | (sbox[(t >> 16) & 0xFF] << 16) | (sbox[(t >> 8) & 0xFF] << 8)
                 | sbox[t & 0xFF]) ^ (rcon[i // 8 - 1] << 24)
        elif i % 8 == 4:
            t = ((sbox[t >> 24] << 24) | (sbox[(t >> 16) & 0xFF] << 16) | (sbox[(t >> 8) & 0xFF] << 8)
                 | sbox[t & 0xFF])
        rk[i] = rk[i - 8] ^ t


@numba.njit(cache=True)
def _aes256_block(rk, sbox, te, counter, out):
    """Encrypt the 128-bit big-endian counter block `counter` into out[0:16] (bytes)."""
    s0, s1 = rk[0], rk[1]
    s2 = ((counter >> 32) & 0xFFFFFFFF) ^ rk[2]
    s3 = (counter & 0xFFFFFFFF) ^ rk[3]
    t0 = t1 = t2 = t3 = 0
    for r in range(1, 14):
        t0 = te[0, s0 >> 24] ^ te[1, (s1 >> 16) & 0xFF] ^ te[2, (s2 >> 8) & 0xFF] ^ te[3, s3 & 0xFF] ^ rk[4 * r]
        t1 = te[0, s1 >> 24] ^ te[1, (s2 >> 16) & 0xFF] ^ te[2, (s3 >> 8) & 0xFF] ^ te[3, s0 & 0xFF] ^ rk[4 * r + 1]
        t2 = te[0, s2 >> 24] ^ te[1, (s3 >> 16) & 0xFF] ^ te[2, (s0 >> 8) & 0xFF] ^ te[3, s1 & 0xFF] ^ rk[4 * r + 2]
        t3 = te[0, s3 >> 24] ^ te[1, (s0 >> 16) & 0xFF] ^ te[2, (s1 >> 8) & 0xFF] ^ te[3, s2 & 0xFF] ^ rk[4 * r + 3]
        s0, s1, s2, s3 = t0, t1, t2, t3
    o0 = ((sbox[s0 >> 24] << 24) | (sbox[(s1 >> 16) & 0xFF] << 16) | (sbox[(s2 >> 8) & 0xFF] << 8)
          | sbox[s3 & 0xFF]) ^ rk[56]
    o1 = ((sbox[s1 >> 24] << 24) | (sbox[(s2 >> 16) & 0xFF] << 16) | (sbox[(s3 >> 8) & 0xFF] << 8)
          | sbox[s0 & 0xFF]) ^ rk[57]
    o2 = ((sbox[s2 >> 24] << 24) | (sbox[(s3 >> 16) & 0xFF] << 16) | (sbox[(s0 >> 8) & 0xFF] << 8)
          | sbox[s1 & 0xFF]) ^ rk[58]
    o3 = ((sbox[s3 >> 24] << 24) | (sbox[(s0 >> 16) & 0xFF] << 16) | (sbox[(s1 >> 8) & 0xFF] << 8)
          | sbox[s2 & 0xFF]) ^ rk[59]
    out[0], out[1], out[2], out[3] = o0 >> 24, (o0 >> 16) & 0xFF, (o0 >> 8) & 0xFF, o0 & 0xFF
    out[4], out[5], out[6], out[7] = o1 >> 24, (o1 >> 16) & 0xFF, (o1 >> 8) & 0xFF, o1 & 0xFF
    out[8], out[9], out[10], out[11] = o2 >> 24, (o2 >> 16) & 0xFF, (o2 >> 8) & 0xFF, o2 & 0xFF
    out[12], out[13], out[14], out[15] = o3 >> 24, (o3 >> 16) & 0xFF, (o3 >> 8) & 0xFF, o3 & 0xFF


# ---------------------------------------------------------------- the coin tape
@numba.njit(cache=True)
def _tape(inner0, outer0, label, K, sbox, rcon, te, tape, rk, w, st, dig, state):
    """Start the coin tape of node `label`: AES-256-CTR (zero IV) under HMAC(key, label).

    `tape` holds the current 16-byte keystream block; state = [bit position, block index];
    rk, w, st, dig are scratch words (round keys, SHA-256 schedule, state, digest).
    """
    _hmac_label(inner0, outer0, label, K, w, st, dig)
    _aes256_expand(dig, sbox, rcon, rk)
    _aes256_block(rk, sbox, te, 0, tape)
    state[0] = 0
    state[1] = 0


@numba.njit(cache=True)
def _coin(tape, state, rk, sbox, te):
    """The next coin (bit), most significant bit of each keystream byte first."""
    pos = state[0]
    block = pos // 128
    if block != state[1]:
        _aes256_block(rk, sbox, te, block, tape)
        state[1] = block
    state[0] = pos + 1
    within = pos % 128
    return (tape[within // 8] >> (7 - within % 8)) & 1


@numba.njit(cache=True)
def _draw(tape, state, rk, sbox, te):
    """32 coins as a float in [0, 1], as pyope's PRNG.draw."""
    out = 0
    pos = state[0]
    if pos % 32 == 0:                           # aligned: four whole keystream bytes
        block = pos // 128
        if block != state[1]:
            _aes256_block(rk, sbox, te, block, tape)
            state[1] = block
        byte = (pos % 128) // 8
        for i in range(4):
            out = (out << 8) | tape[byte + i]
        state[0] = pos + 32
    else:
        for _ in range(32):
            out = (out << 1) | _coin(tape, state, rk, sbox, te)
    return 1.0 * out / 4294967295.0


# ---------------------------------------------------------------- hypergeometric sampler
@numba.njit(cache=True)
def _loggam(x):
    a0, a1, a2, a3, a4 = 8.333333333333333e-02, -2.777777777777778e-03, 7.936507936507937e-04, \
        -5.952380952380952e-04, 8.417508417508418e-04
    a5, a6, a7, a8, a9 = -1.917526917526918e-03, 6.410256410256410e-03, -2.955065359477124e-02, \
        1.796443723688307e-01, -1.39243221690590e+00
    coef = (a0, a1, a2, a3, a4, a5, a6, a7, a8)
    x0 = x
    n = 0
    if x == 1.0 or x == 2.0:
        return 0.0
    elif x <= 7.0:
        n = int(7 - x)
        x0 = x + n
    x2 = 1.0 / (x0 * x0)
    xp = 2 * math.pi
    gl0 = a9
    for k in range(8, -1, -1):
        gl0 *= x2
        gl0 += coef[k]
    gl = gl0 / x0 + 0.5 * math.log(xp) + (x0 - 0.5) * math.log(x0) - x0
    if x <= 7.0:
        for k in range(1, n + 1):
            gl -= math.log(x0 - 1.0)
            x0 -= 1.0
    return gl


@numba.njit(cache=True)
def _bitlen(v):
    n = 0
    while v > np.uint64(0):
        v >>= np.uint64(1)
        n += 1
    return n


@numba.njit(cache=True)
def _product_as_float(a, b):
    """float(a * b) correctly rounded for 0 <= a, b < 2**63, as Python's int*float does."""
    m32 = np.uint64(0xFFFFFFFF)
    ua, ub = np.uint64(a), np.uint64(b)
    a0, a1 = ua & m32, ua >> np.uint64(32)
    b0, b1 = ub & m32, ub >> np.uint64(32)
    p00, p01, p10, p11 = a0 * b0, a0 * b1, a1 * b0, a1 * b1
    mid = (p00 >> np.uint64(32)) + (p01 & m32) + (p10 & m32)
    lo = (p00 & m32) | ((mid & m32) << np.uint64(32))
    hi = p11 + (p01 >> np.uint64(32)) + (p10 >> np.uint64(32)) + (mid >> np.uint64(32))
    if hi == np.uint64(0):
        return float(lo)
    shift = _bitlen(hi)                      # keep the top 64 bits, fold the rest as sticky
    top = (hi << np.uint64(64 - shift)) | (lo >> np.uint64(shift))
    if lo & ((np.uint64(1) << np.uint64(shift)) - np.uint64(1)):
        top |= np.uint64(1)
    return float(top) * 2.0 ** shift


@numba.njit(cache=True)
def _hyp(tape, state, rk, sbox, te, good, bad, sample):
    d1 = bad + good - sample
    d2 = float(min(bad, good))
    y = d2
    k = sample
    while y > 0.0:
        u = _draw(tape, state, rk, sbox, te)
        y -= int(math.floor(u + y / (d1 + k)))
        k -= 1
        if k == 0:
            break
    z = int(d2 - y)
    if good > bad:
        z = sample - z
    return z


@numba.njit(cache=True)
def _hrua(tape, state, rk, sbox, te, good, bad, sample):
    D1 = 1.7155277699214135
    D2 = 0.8989161620588988
    mingoodbad = min(good, bad)
    popsize = good + bad
    maxgoodbad = max(good, bad)
    m = min(sample, popsize - sample)
    d4 = float(mingoodbad) / popsize
    d5 = 1.0 - d4
    d6 = m * d4 + 0.5
    d7 = math.sqrt(_product_as_float(popsize - m, sample) * d4 * d5 / (popsize - 1) + 0.5)
    d8 = D1 * d7 + D2
    d9 = int(math.floor(float(m + 1) * (mingoodbad + 1) / (popsize + 2)))
    d10 = (_loggam(float(d9 + 1)) + _loggam(float(mingoodbad - d9 + 1)) + _loggam(float(m - d9 + 1))
           + _loggam(float(maxgoodbad - m + d9 + 1)))
    d11 = min(min(m, mingoodbad) + 1.0, math.floor(d6 + 16 * d7))
    z = 0
    while True:
        x = _draw(tape, state, rk, sbox, te)
        y = _draw(tape, state, rk, sbox, te)
        w = d6 + d8 * (y - 0.5) / x
        if w < 0.0 or w >= d11:
            continue
        z = int(math.floor(w))
        t = d10 - (_loggam(float(z + 1)) + _loggam(float(mingoodbad - z + 1)) + _loggam(float(m - z + 1))
                   + _loggam(float(maxgoodbad - m + z + 1)))
        if (x * (4.0 - x) - 3.0) <= t:
            break
        if x * (x - t) >= 1:
            continue
        if 2.0 * math.log(x) <= t:
            break
    if good > bad:
        z = m - z
    if m < sample:
        z = good - z
    return z


# ---------------------------------------------------------------- the bisection walk
_EMPTY = np.iinfo(np.int64).min


@numba.njit(cache=True)
def _cache_slot(keys, key):
    """Open-addressing slot of `key` (or the empty slot where it would go; -1 if full)."""
    mask = keys.shape[0] - 1
    h = np.uint64(key) * np.uint64(0x9E3779B97F4A7C15)
    i = np.int64(h >> np.uint64(40)) & mask
    for _ in range(64):
        if keys[i] == key or keys[i] == _EMPTY:
            return i
        i = (i + 1) & mask
    return -1


@numba.njit(cache=True)
def _encrypt_sorted(values, in_lo, in_hi, out_lo, out_hi, inner0, outer0, K, sbox, rcon, te,
                    ckeys, cvals):
    """Ciphertexts of sorted, unique plaintexts, walking pyope's bisection tree once.

    Every sampled split point (keyed by its node label `mid`, which is unique in the
    tree) and every leaf ciphertext (keyed by -1 - plaintext) is memoised in the
    (ckeys, cvals) hash table, so later calls skip the shared upper levels.
    """
    n = values.shape[0]
    result = np.empty(n, dtype=np.int64)
    tape = np.empty(16, dtype=np.int64)
    rk = np.empty(60, dtype=np.int64)
    w = np.empty(64, dtype=np.int64)
    st = np.empty(8, dtype=np.int64)
    dig = np.empty(8, dtype=np.int64)
    state = np.zeros(2, dtype=np.int64)
    stack = np.empty((200, 6), dtype=np.int64)
    stack[0, 0], stack[0, 1], stack[0, 2], stack[0, 3], stack[0, 4], stack[0, 5] = \
        0, n, in_lo, in_hi, out_lo, out_hi
    top = 1
    while top > 0:
        top -= 1
        i0, i1, ilo, ihi, olo, ohi = stack[top, 0], stack[top, 1], stack[top, 2], \
            stack[top, 3], stack[top, 4], stack[top, 5]
        in_size = ihi - ilo + 1
        out_size = ohi - olo + 1
        if in_size == 1:                        # leaf: uniform point of the remaining range
            slot = _cache_slot(ckeys, -1 - ilo)
            if slot >= 0 and ckeys[slot] == -1 - ilo:
                for i in range(i0, i1):
                    result[i] = cvals[slot]
                continue
            _tape(inner0, outer0, ilo, K, sbox, rcon, te, tape, rk, w, st, dig, state)
            lo, hi = olo, ohi
            while hi - lo + 1 > 1:
                mid = (lo + hi) // 2
                if _coin(tape, state, rk, sbox, te) == 0:
                    hi = mid
                else:
                    lo = mid + 1
            for i in range(i0, i1):
                result[i] = lo
            if slot >= 0:
                ckeys[slot], cvals[slot] = -1 - ilo, lo
            continue
        mid = olo - 1 + int(math.ceil(float(out_size) / 2.0))
        nsample = mid - olo + 1
        slot = _cache_slot(ckeys, mid)
        if in_size == out_size:
            x = ilo + nsample - 1
        elif slot >= 0 and ckeys[slot] == mid:
            x = cvals[slot]
        else:
            _tape(inner0, outer0, mid, K, sbox, rcon, te, tape, rk, w, st, dig, state)
            if nsample > 10:
                num = _hrua(tape, state, rk, sbox, te, in_size, out_size - in_size, nsample)
            else:
                num = _hyp(tape, state, rk, sbox, te, in_size, out_size - in_size, nsample)
            x = ilo if num == 0 else ilo + num - 1
            if slot >= 0:
                ckeys[slot], cvals[slot] = mid, x
        j = i0
        while j < i1 and values[j] <= x:
            j += 1
        if j < i1:
            stack[top, 0], stack[top, 1], stack[top, 2], stack[top, 3], stack[top, 4], stack[top, 5] = \
                j, i1, x + 1, ihi, mid + 1, ohi
            top += 1
        if j > i0:
            stack[top, 0], stack[top, 1], stack[top, 2], stack[top, 3], stack[top, 4], stack[top, 5] = \
                i0, j, ilo, x, olo, mid
            top += 1
    return result


@numba.njit(cache=True)
def _encrypt_any(values, in_lo, in_hi, out_lo, out_hi, inner0, outer0, K, sbox, rcon, te, ckeys, cvals):
    """Sort and de-duplicate `values`, encrypt the distinct ones, scatter back."""
    n = values.shape[0]
    order = np.argsort(values, kind="mergesort")
    uniq = np.empty(n, dtype=np.int64)
    slot = np.empty(n, dtype=np.int64)
    m = 0
    for i in range(n):
        v = values[order[i]]
        if m == 0 or uniq[m - 1] != v:
            uniq[m] = v
            m += 1
        slot[order[i]] = m - 1
    cipher = _encrypt_sorted(uniq[:m], in_lo, in_hi, out_lo, out_hi, inner0, outer0, K, sbox, rcon,
                             te, ckeys, cvals)
    out = np.empty(n, dtype=np.int64)
    for i in range(n):
        out[i] = cipher[slot[i]]
    return out


class OPE:
    """Boldyreva OPE, bit-compatible with `pyope.ope.OPE(key, ValueRange(*in_range), ...)`.

    Deterministic by design (that is what lets the server compare); `encrypt` accepts one
    int or an array and de-duplicates, so repeated thresholds cost nothing extra.
    """

    def __init__(self, key: bytes, in_range: tuple[int, int] = IN_RANGE,
                 out_range: tuple[int, int] = OUT_RANGE, cache_bits: int = 14):
        if not isinstance(key, (bytes, bytearray)) or not key:
            raise ParameterError.bad("key", "non-empty bytes", type(key).__name__)
        (ilo, ihi), (olo, ohi) = in_range, out_range
        if not (0 <= ilo <= ihi and 0 <= olo <= ohi < 2**62 and ihi - ilo <= ohi - olo):
            raise ParameterError.bad("in_range/out_range",
                                     "0 <= ranges < 2**62 with |in| <= |out|", (in_range, out_range))
        self.in_range = (int(ilo), int(ihi))
        self.out_range = (int(olo), int(ohi))
        self._inner, self._outer = _hmac_pad_states(bytes(key))
        # Memo of sampled nodes; it only ever holds values derived from this key.
        self._ckeys = np.full(1 << cache_bits, _EMPTY, dtype=np.int64)
        self._cvals = np.zeros(1 << cache_bits, dtype=np.int64)

    def encrypt(self, plaintexts) -> np.ndarray | int:
        """Ciphertext(s) of integer plaintext(s) in `in_range` (int64 array, same shape)."""
        scalar = np.ndim(plaintexts) == 0
        p = np.asarray(plaintexts)
        if p.size and not np.issubdtype(p.dtype, np.integer):
            raise ParameterError.bad("plaintexts", "integers", p.dtype)
        p = np.ascontiguousarray(p, dtype=np.int64).ravel()
        if p.size and (p.min() < self.in_range[0] or p.max() > self.in_range[1]):
            raise ParameterError.bad("plaintexts", f"integers in {self.in_range}", "out of range")
        if p.size == 0:
            return np.zeros(np.shape(plaintexts), dtype=np.int64)
        out = _encrypt_any(p, self.in_range[0], self.in_range[1], self.out_range[0], self.out_range[1],
                           self._inner, self._outer, _K256, _SBOX, _RCON, _TE, self._ckeys, self._cvals)
        return int(out[0]) if scalar else out.reshape(np.shape(plaintexts))

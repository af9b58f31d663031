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
  It is fast because (1) HMAC-SHA256 (sha256.py), AES-256 (aes.py, the crypto layer's
  one compiled AES) and the sampler run compiled in numba, (2) a batch is sorted and
  de-duplicated, and one walk of the bisection tree serves every value below a node,
  so shared upper levels are sampled once.  Known-answer vectors and a test against
  pyope pin the equivalence.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from ppxgb.crypto import aes, sha256
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


# ---------------------------------------------------------------- the coin tape
_ZERO = np.uint64(0)


@numba.njit(cache=True)
def _decimal(label, buf):
    """The decimal digits of int label >= 0 into buf (uint8), as pyope's str(label);
    returns how many."""
    nd = 1
    v = label // 10
    while v > 0:
        nd += 1
        v //= 10
    v = label
    for i in range(nd - 1, -1, -1):              # least significant digit last
        buf[i] = 48 + v % 10
        v //= 10
    return nd


@numba.njit(cache=True)
def _refill(tape, state, rk, block):
    """Make `tape` keystream block number `block` (AES-256 of the big-endian counter)."""
    if block != state[1]:
        tape[0], tape[1] = aes.encrypt(rk, _ZERO, aes.byte_swap(np.uint64(block)))
        state[1] = block


@numba.njit(cache=True)
def _tape(inner0, outer0, label, scratch, tape, rk, state):
    """Start the coin tape of node `label`: AES-256-CTR (zero IV) under HMAC(key, label).

    `tape` holds the current keystream block as two little-endian words; state = [bit
    position, block index]; `scratch` holds the buffers (digits, SHA-256 schedule and
    state, digest words and bytes, the round keys' column words), so a node allocates
    nothing.
    """
    digits, w, st, dig, key, words = scratch
    nd = _decimal(label, digits)
    sha256.hmac_into(inner0, outer0, digits[:nd], w, st, dig)
    sha256.words_to_bytes(dig, key)
    aes.expand_words(key, words)
    state[0] = 0
    state[1] = -1
    _refill(tape, state, rk, 0)


@numba.njit(cache=True)
def _coin(tape, state, rk):
    """The next coin (bit), most significant bit of each keystream byte first."""
    pos = state[0]
    _refill(tape, state, rk, pos // 128)
    state[0] = pos + 1
    within = pos % 128
    shift = 8 * ((within >> 3) & 7) + 7 - (within & 7)
    return np.int64((tape[within >> 6] >> np.uint64(shift)) & np.uint64(1))


@numba.njit(cache=True)
def _draw(tape, state, rk):
    """32 coins as a float in [0, 1], as pyope's PRNG.draw."""
    out = 0
    pos = state[0]
    if pos % 32 == 0:                           # aligned: four whole keystream bytes
        _refill(tape, state, rk, pos // 128)
        within = pos % 128
        v = np.int64((tape[within >> 6] >> np.uint64(within & 63)) & np.uint64(0xFFFFFFFF))
        out = ((v & 0xFF) << 24) | (((v >> 8) & 0xFF) << 16) | (((v >> 16) & 0xFF) << 8) | (v >> 24)
        state[0] = pos + 32
    else:
        for _ in range(32):
            out = (out << 1) | _coin(tape, state, rk)
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
def _hyp(tape, state, rk, good, bad, sample):
    d1 = bad + good - sample
    d2 = float(min(bad, good))
    y = d2
    k = sample
    while y > 0.0:
        u = _draw(tape, state, rk)
        y -= int(math.floor(u + y / (d1 + k)))
        k -= 1
        if k == 0:
            break
    z = int(d2 - y)
    if good > bad:
        z = sample - z
    return z


@numba.njit(cache=True)
def _hrua(tape, state, rk, good, bad, sample):
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
        x = _draw(tape, state, rk)
        y = _draw(tape, state, rk)
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
def _encrypt_sorted(values, in_lo, in_hi, out_lo, out_hi, inner0, outer0, ckeys, cvals):
    """Ciphertexts of sorted, unique plaintexts, walking pyope's bisection tree once.

    Every sampled split point (keyed by its node label `mid`, which is unique in the
    tree) and every leaf ciphertext (keyed by -1 - plaintext) is memoised in the
    (ckeys, cvals) hash table, so later calls skip the shared upper levels.
    """
    n = values.shape[0]
    result = np.empty(n, dtype=np.int64)
    tape = np.zeros(2, dtype=np.uint64)
    rk = np.empty((15, 2), dtype=np.uint64)      # AES-256 round keys
    scratch = (np.empty(20, np.uint8), np.empty(64, np.int64), np.empty(8, np.int64),
               np.empty(8, np.int64), np.empty(32, np.uint8), aes.column_words(rk))
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
            _tape(inner0, outer0, ilo, scratch, tape, rk, state)
            lo, hi = olo, ohi
            while hi - lo + 1 > 1:
                mid = (lo + hi) // 2
                if _coin(tape, state, rk) == 0:
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
            _tape(inner0, outer0, mid, scratch, tape, rk, state)
            if nsample > 10:
                num = _hrua(tape, state, rk, in_size, out_size - in_size, nsample)
            else:
                num = _hyp(tape, state, rk, in_size, out_size - in_size, nsample)
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
def _encrypt_any(values, in_lo, in_hi, out_lo, out_hi, inner0, outer0, ckeys, cvals):
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
    cipher = _encrypt_sorted(uniq[:m], in_lo, in_hi, out_lo, out_hi, inner0, outer0, ckeys, cvals)
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
        self._inner, self._outer = sha256.hmac_key_states(bytes(key))
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
                           self._inner, self._outer, self._ckeys, self._cvals)
        return int(out[0]) if scalar else out.reshape(np.shape(plaintexts))

"""A pool of Paillier key material that the proxy fills in the background.

Enrolling a user costs a fresh Paillier key pair and one encryption per leaf.  Both the
key pair and the random half of each encryption (a random n-th power r = hs**a mod n**2,
see ppxgb.crypto.paillier) are independent of the model, so a helper process can make
them ahead of time; the enrolment itself is then left with the OPE/ORE thresholds and
one multiplication per leaf ((1 + n*m) * r mod n**2).

* The helper is a separate process at low priority (nice 10): gmpy2 holds the GIL, so
  a thread would halve the speed of the enrolments and requests it should spare (an
  enrolment took 3-4x longer beside a key-generating thread; beside the process, about
  as long as alone when a core was free).
* It talks to the pool over its stdin/stdout pipes only; key material never touches a
  file.  Request: (key_bits, count), 8 bytes.  Answer: one frame, see `encode_entry`.
* `take` hands each entry out once and never blocks: with the pool empty, the caller
  generates inline, exactly as without a pool.  A forked child's copy of the pool hands
  out nothing (its entries are the parent's).
* `close` stops the helper and the filling thread; so does the end of the interpreter
  (the thread is a daemon, and the helper exits at end of file on its stdin).
"""

from __future__ import annotations

import atexit
import collections
import os
import struct
import subprocess
import sys
import threading
from dataclasses import dataclass

from ppxgb.errors import FormatError, ParameterError
from ppxgb.crypto.paillier import FastEncryptor, generate_keypair, private_key_from_factors

_REQUEST = struct.Struct("<II")          # key_bits, number of masks
_HEADER = struct.Struct("<IIQ")          # key_bits, number of masks, frame length
#: Largest number of precomputed encryptions per key (a bound on frame sizes).
MAX_MASKS = 1 << 20


@dataclass(frozen=True)
class PooledKey:
    """One user's worth of key material: a key pair and fresh encryption randomness."""

    private_key: object                  # phe PaillierPrivateKey
    masks: tuple[int, ...]

    def encryptor(self) -> FastEncryptor:
        return FastEncryptor(self.private_key, masks=self.masks)


def encode_entry(key_bits: int, p: int, q: int, masks: list[int]) -> bytes:
    """Header, then p and q in key_bits/8 bytes each, then each mask in key_bits/4 bytes."""
    width = key_bits // 8
    body = b"".join([p.to_bytes(width, "little"), q.to_bytes(width, "little")]
                    + [m.to_bytes(2 * width, "little") for m in masks])
    return _HEADER.pack(key_bits, len(masks), len(body)) + body


def decode_entry(header: bytes, body: bytes, key_bits: int) -> PooledKey:
    """The entry of one frame, checked: the requested size, n = p*q of key_bits bits,
    masks below n**2."""
    bits, count, length = _HEADER.unpack(header)
    width = key_bits // 8
    if bits != key_bits or length != len(body) or length != (2 + 2 * count) * width:
        raise FormatError(f"key pool entry: expected {key_bits}-bit key material, got a frame of "
                          f"{bits} bits, {count} masks, {len(body)} bytes")
    p = int.from_bytes(body[:width], "little")
    q = int.from_bytes(body[width:2 * width], "little")
    n = p * q
    if p == q or n.bit_length() != key_bits:
        raise FormatError(f"key pool entry: expected a {key_bits}-bit modulus of two primes")
    n2 = n * n
    masks = tuple(int.from_bytes(body[i:i + 2 * width], "little")
                  for i in range(2 * width, len(body), 2 * width))
    if any(not 0 < m < n2 for m in masks):
        raise FormatError("key pool entry: a mask outside (0, n**2)")
    return PooledKey(private_key_from_factors(n, p, q), masks)


class KeyPool:
    """Up to `size` entries of key material for `key_bits`-bit Paillier keys, each with
    `ciphertexts` precomputed encryptions (raise it with `expect`), filled by a helper
    process as entries are taken."""

    def __init__(self, size: int, key_bits: int, ciphertexts: int = 0):
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise ParameterError.bad("key_pool", "a whole number of keys, 0 or more", size)
        self.size, self.key_bits, self.ciphertexts = size, key_bits, 0
        self.taken = 0                       # entries handed out so far
        self._owner = os.getpid()            # only this process hands entries out
        self._ready: collections.deque[PooledKey] = collections.deque()
        self._cond = threading.Condition()
        self._closed = False
        self._helper: subprocess.Popen | None = None
        self._thread: threading.Thread | None = None
        self.expect(ciphertexts)

    def expect(self, ciphertexts: int) -> None:
        """Entries made from now on carry at least this many encryptions."""
        self.ciphertexts = min(MAX_MASKS, max(self.ciphertexts, int(ciphertexts)))

    def start(self) -> None:
        """Start the helper and the filling thread (once; nothing for a pool of size 0)."""
        with self._cond:
            if self._thread is not None or self._closed or self.size == 0:
                return
            self._helper = subprocess.Popen([sys.executable, os.path.abspath(__file__)],
                                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
            self._thread = threading.Thread(target=self._fill, name="ppxgb-key-pool", daemon=True)
            self._thread.start()
        atexit.register(self.close)

    def ready(self) -> int:
        """Entries waiting to be taken."""
        with self._cond:
            return len(self._ready)

    def wait_full(self, timeout: float) -> bool:
        """Wait until `size` entries are ready (benchmarks and tests); False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: len(self._ready) >= self.size or self._closed, timeout) \
                and len(self._ready) >= self.size

    def take(self, key_bits: int) -> PooledKey | None:
        """An entry for a key_bits-bit modulus, removed from the pool (it is never handed
        out again); None if none is ready.  Entries of another size are dropped."""
        with self._cond:
            if os.getpid() != self._owner:
                self._ready.clear()          # a forked copy of the pool: its entries belong to the parent
                return None
            while self._ready:
                entry = self._ready.popleft()
                self._cond.notify_all()
                if entry.private_key.public_key.n.bit_length() == key_bits:
                    self.taken += 1
                    return entry
            return None

    def close(self) -> None:
        """Stop the helper and the thread, and drop the entries not taken."""
        with self._cond:
            self._closed = True
            self._ready.clear()
            self._cond.notify_all()
            helper, thread = self._helper, self._thread
        if helper is not None:
            helper.kill()
            helper.wait()
            for pipe in (helper.stdin, helper.stdout):
                try:
                    pipe.close()
                except OSError:
                    pass
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=10)
        atexit.unregister(self.close)

    def _fill(self) -> None:
        helper = self._helper
        try:
            while True:
                with self._cond:
                    self._cond.wait_for(lambda: self._closed or len(self._ready) < self.size)
                    if self._closed:
                        return
                    bits, count = self.key_bits, self.ciphertexts
                helper.stdin.write(_REQUEST.pack(bits, count))
                helper.stdin.flush()
                header = _read_exactly(helper.stdout, _HEADER.size)
                body = _read_exactly(helper.stdout, _HEADER.unpack(header)[2])
                entry = decode_entry(header, body, bits)
                with self._cond:
                    if self._closed:
                        return
                    self._ready.append(entry)
                    self._cond.notify_all()
        except (OSError, ValueError, FormatError) as exc:
            # The helper is gone (closed, killed or failed): enrolments generate inline.
            if not self._closed:
                print(f"ppxgb: key pool stopped ({exc}); enrolments generate keys inline",
                      file=sys.stderr)


def _read_exactly(stream, n: int) -> bytes:
    data = stream.read(n)
    if data is None or len(data) != n:
        raise OSError("key pool helper closed its pipe")
    return data


def _serve(stdin, stdout) -> None:
    """The helper: answer each (key_bits, count) request with fresh key material."""
    while True:
        request = stdin.read(_REQUEST.size)
        if len(request) < _REQUEST.size:
            return                          # the pool closed its end (or its process ended)
        bits, count = _REQUEST.unpack(request)
        _, private = generate_keypair(bits)
        masks = FastEncryptor(private).random_masks(min(count, MAX_MASKS))
        stdout.write(encode_entry(bits, private.p, private.q, masks))
        stdout.flush()


if __name__ == "__main__":
    os.nice(10)
    try:
        _serve(sys.stdin.buffer, sys.stdout.buffer)
    except (BrokenPipeError, KeyboardInterrupt):
        pass

"""A horizontal compute server: adds the parties' shares of each step; sees nothing else.

Each share it receives is uniformly random on its own (a key that expands into random
words, or a vector masked by such expansions), and it sends only the sum of one share
per party to the coordinator.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ppxgb.crypto.dgauss import MAX_SIGMA, noise_vector
from ppxgb.crypto.sharing import Randomness, default_randomness
from ppxgb.errors import PeerFailure, PeerTimeout, ProtocolError
from ppxgb.transport import Transport

from ..messages import field, report_failure
from .stages import COORDINATOR


def run_server(transport: Transport, name: str, *, parties: Sequence[str],
               coordinator: str = COORDINATOR, timeout: float | None = None,
               rng: Randomness | None = None) -> None:
    """Sum one share per party for every step, until stop.

    Under differential privacy the parties announce, with each share, the noise sigmas
    of the step (all must announce the same); the server then adds its own N_Z noise
    of that size to its sum, drawn from rng (a CSPRNG unless a test pins it), so the
    opened total carries k independent noises and any k - 1 servers' knowledge of
    theirs leaves one full noise in place (README, "Differential privacy")."""
    parties = list(parties)
    rng = rng or default_randomness()
    try:
        while True:
            acc, step, seen, noise = None, None, set(), []
            while len(seen) < len(parties):
                try:
                    msg = transport.recv(name, ("share", "stop"), timeout=timeout)
                except PeerTimeout as exc:      # names no one: blame the parties still owed
                    missing = [q for q in parties if q not in seen]
                    raise PeerFailure(exc.awaited or ", ".join(missing), f"{name} got no share ({exc.reason})") from None
                except PeerFailure as exc:      # a lost connection names its peer, whatever its role
                    raise PeerFailure(exc.peer, f"{name} got no share ({exc.reason})") from None
                if msg.stage == "stop":
                    return
                if msg.src not in parties or msg.src in seen:
                    raise ProtocolError(f"{name}: unexpected share from {msg.src}")
                if step is None:
                    step = field(msg, "step", int)
                elif msg.payload.get("step") != step:
                    raise ProtocolError(f"{name}: share for step {msg.payload.get('step')} "
                                        f"from {msg.src} while summing step {step}")
                n = field(msg, "n", int)
                if "seed" in msg.payload:
                    part = Randomness(field(msg, "seed", bytes)).words(n)
                else:
                    part = field(msg, "data", np.ndarray).astype(np.uint64, copy=False)
                    if part.size != n:
                        raise ProtocolError(f"{name}: share of {part.size} words, announced {n}")
                acc = part.copy() if acc is None else acc + part
                seen.add(msg.src)
                noise.append(_noise_spec(msg.payload.get("noise"), n, name, msg.src))
            if any(s != noise[0] for s in noise):
                raise ProtocolError(f"{name}: the parties announced different noise for step {step}")
            if noise[0] is not None:
                acc += noise_vector(list(noise[0]), acc.size, rng).view(np.uint64)
            transport.send(name, coordinator, "sum", {"step": step, "data": acc})
    except PeerFailure as exc:
        transport.send(name, coordinator, "abort", {"peer": exc.peer, "reason": exc.reason})
        raise
    except Exception as exc:
        report_failure(transport, name, coordinator, exc)
        raise


def _noise_spec(spec, n: int, name: str, src: str) -> tuple[float, ...] | None:
    """A share's announced DP noise: None, or 1 or 2 sigmas (cycled over the n words) in
    (0, 2^50); anything else is refused, naming the sender."""
    if spec is None:
        return None
    ok = isinstance(spec, list) and len(spec) in (1, 2) and n % len(spec) == 0 and all(
        isinstance(s, float) and 0.0 < s < MAX_SIGMA for s in spec)
    if not ok:
        raise ProtocolError(f"{name}: share from {src}: noise: expected 1 or 2 sigmas in (0, 2^50) "
                            f"dividing {n} words, got {spec!r}")
    return tuple(spec)

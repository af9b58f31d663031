"""Checks on incoming messages, shared by every training role.

A field that is missing or of the wrong type is a ProtocolError naming the stage, the
sender, the field, what was expected and what came.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ppxgb.errors import ProtocolError
from ppxgb.transport import Message, Transport


def field(msg: Message, key: str, kind: type | tuple[type, ...]):
    value = msg.payload.get(key)
    if not isinstance(value, kind):
        raise ProtocolError(f"stage {msg.stage!r} from {msg.src}: field {key!r} should be "
                            f"{kind}, got {type(value).__name__}")
    return value


def array(msg: Message, key: str, dtype, shape=None) -> np.ndarray:
    value = field(msg, key, np.ndarray)
    if value.dtype.kind != np.dtype(dtype).kind:
        raise ProtocolError(f"stage {msg.stage!r} from {msg.src}: field {key!r} should be "
                            f"{np.dtype(dtype)}, got {value.dtype}")
    if shape is not None and tuple(value.shape) != tuple(shape):
        raise ProtocolError(f"stage {msg.stage!r} from {msg.src}: field {key!r} should have "
                            f"shape {tuple(shape)}, got {tuple(value.shape)}")
    return value


def arrays(msg: Message, key: str, n: int) -> list[np.ndarray]:
    value = field(msg, key, list)
    if len(value) != n or not all(isinstance(v, np.ndarray) for v in value):
        raise ProtocolError(f"stage {msg.stage!r} from {msg.src}: field {key!r} should be "
                            f"a list of {n} arrays")
    return value


def abort_all(transport: Transport, me: str, peers: Sequence[str]) -> None:
    """Tell every peer that training stopped; best effort (a peer may be gone)."""
    for q in peers:
        try:
            transport.send(me, q, "abort", {"peer": me, "reason": "training stopped"})
        except Exception:
            pass


def report_failure(transport: Transport, me: str, to: str, exc: BaseException) -> None:
    """A role that fails tells the driver why, before the exception propagates."""
    transport.send(me, to, "abort", {"peer": me, "reason": f"{type(exc).__name__}: {exc}"})

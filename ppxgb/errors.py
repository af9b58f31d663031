"""Exception types shared by every role.

One template for parameter errors (name the parameter, what was expected, what came),
and one opaque type for anything cryptographic or wire-format related, so that a
failure never tells an attacker which check it tripped.
"""

from __future__ import annotations


class PPXGBError(Exception):
    """Base class of every error ppxgb raises on purpose."""


class ParameterError(PPXGBError, ValueError):
    """A user-supplied parameter or input is unknown, unsupported or malformed."""

    @classmethod
    def bad(cls, name: str, expected: str, got: object) -> "ParameterError":
        return cls(f"{name}: expected {expected}, got {got!r}")


class UnsupportedParameter(ParameterError):
    """An XGBoost parameter that ppxgb does not implement (never silently ignored)."""


class FormatError(PPXGBError, ValueError):
    """Malformed, truncated, tampered or wrong-version serialized data."""


class ProtocolError(PPXGBError):
    """A message arrived at the wrong stage or with a wrong payload."""


class PeerFailure(PPXGBError):
    """A party or server died or stopped answering; `peer` names it."""

    def __init__(self, peer: str, reason: str):
        super().__init__(f"{peer}: {reason}")
        self.peer = peer
        self.reason = reason


class PeerTimeout(PeerFailure):
    """No message arrived within the timeout.  `awaited` names the sender that was
    waited for, or is None when any sender would have done (then `peer` reads
    "peers of <me>", and the caller knows better whom to blame)."""

    def __init__(self, me: str, reason: str, awaited: str | None = None):
        super().__init__(awaited or f"peers of {me}", reason)
        self.me = me
        self.awaited = awaited

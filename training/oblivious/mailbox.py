"""Per-sender order on a transport that has one queue per role.

Server 1 hears from two roles at once (server 0's openings and the dealer's
corrections), in an order the thread scheduler picks.  A Mailbox keeps each sender's
messages in their own order: a message from another sender than the one awaited is
held until it is asked for.  Every stage is still checked on delivery.
"""

from __future__ import annotations

from collections import defaultdict, deque

from ppxgb.errors import ProtocolError
from ppxgb.transport import Message, Transport


class Mailbox:
    def __init__(self, transport: Transport, me: str, stages: tuple[str, ...], timeout: float | None = None):
        self.transport, self.me, self.stages, self.timeout = transport, me, stages, timeout
        self._held: dict[str, deque] = defaultdict(deque)

    def recv(self, stage: str | tuple[str, ...], src: str) -> Message:
        wanted = (stage,) if isinstance(stage, str) else stage
        while not self._held[src]:
            msg = self.transport.recv(self.me, self.stages, timeout=self.timeout)
            self._held[msg.src].append(msg)
        msg = self._held[src].popleft()
        if msg.stage not in wanted:
            raise ProtocolError(f"{self.me}: expected stage {stage!r} from {src}, got stage {msg.stage!r}")
        return msg

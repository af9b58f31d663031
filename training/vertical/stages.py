"""Vertical training's roles, stages and message fields, in one place.

Parties hold column blocks of the same (PSI-aligned) rows.  The label holder LH has y
and drives the protocol, like SecureBoost's active party; feature holders FH_j hold
columns only; the dealer D (played by server-0) hands out correlated randomness and
sees no data.  Each role is a function that talks only through a `Transport`.

Stages (LH = label holder, FH = feature holder, D = dealer):

    LH->FH vconfig    parameters and the number of rows
    FH->LH vhello     number of rows, bins per feature (and feature names, if any)
    LH->D  dconfig    number of rows, max_bin, max_depth, grow_policy, steps (the
                      most histogram requests a tree makes), number of trees, the
                      FHs and their feature counts
    D->LH  dkeys      one 32-byte key per FH (seeds LH's side of every correlation)
    D->FH  dkey       a 32-byte key (seeds FH's permutations)
    LH->FH vtree      a new tree starts: every row goes back to the root
    LH->D  dlevel     correlations for (tree, level), please
    D->FH  corr       delta vectors of the two gathers, for as many features as
                      fit in 24 MB (the dealer prepares the next level, of this
                      tree or the next; the schedule is public)
    LH->FH vlevel     last level's partition (node, children, left bits), nodes to
                      build, and z = (g, h) - a of the built rows
    FH->LH vperm      one per feature: k1, the gather positions of FH's (node, bin) order
    LH->FH vsel       for every feature: z2 = LH's prefix share at block ends - a2
                      (one message, sent when FH's last vperm is answered)
    FH->LH vsum       for every feature: k2 and FH's prefix sums at segment ends (masked)
    LH->FH vsplit     split these nodes on your feature f at local bin b
    FH->LH vsplit_ok  left bits of those nodes' rows and the float32 thresholds (under
                      dp_split="random", which sends no vlevel: one bit vector per
                      split, over every row)
    LH->FH veval      after a tree, per level: the validation rows' last partition and
                      this level's splits on FH's features (training/vertical/validation.py)
    FH->LH veval_ok   left bits of the validation rows at those nodes, per eval set
    LH->D  stop       then D->LH dbye (D sent everything), then LH->FH stop
    any    abort

What each role learns is listed in docs/vertical.md: LH opens per-(node, bin) sums of
g and h of FH features (SecureBoost's leakage); FH receives only uniformly random ring
words (z, z2, delta) and the partitions of split nodes; D receives only the public
schedule (number of rows, features, trees, levels).
"""

from __future__ import annotations

from ppxgb.errors import ParameterError, ProtocolError
from ppxgb.transport import Message, Transport

from . import permute as pm

DEALER = "server-0"
AHEAD = 1      # levels of the public schedule the dealer prepares beyond the one asked for
LH_STAGES = ("vhello", "dkeys", "vperm", "vsum", "vsplit_ok", "veval_ok", "dbye")
FH_STAGES = ("vconfig", "dkey", "vtree", "corr", "vlevel", "vsel", "vsplit", "veval", "stop")
D_STAGES = ("dconfig", "dlevel", "stop")
_CORR_BYTES = 24 << 20


def role_names(n_parties: int, label_party: int, n_servers: int) -> tuple[list[str], str, str]:
    """Party names in party order, the label holder's name, and the dealer's name."""
    if not isinstance(n_servers, int) or isinstance(n_servers, bool) or not 1 <= n_servers <= 4:
        raise ParameterError.bad("n_servers", "an int in [1, 4] (server-0 acts as the dealer)", n_servers)
    if not isinstance(n_parties, int) or n_parties < 2:
        raise ParameterError.bad("parties", "at least two column blocks", n_parties)
    if isinstance(label_party, bool) or not isinstance(label_party, int) or not 0 <= label_party < n_parties:
        raise ParameterError.bad("label_party", f"an int in [0, {n_parties})", label_party)
    names = [f"party-{i}" for i in range(n_parties)]
    return names, names[label_party], DEALER


class Mailbox:
    """Messages for one role, taken by (stage, sender) whatever order they arrive in
    (the dealer and the label holder write to a feature holder independently)."""

    def __init__(self, transport: Transport, me: str, stages: tuple[str, ...], timeout):
        self.t, self.me, self.stages, self.timeout = transport, me, stages, timeout
        self.pending: list[Message] = []

    def get(self, stage: str | tuple[str, ...], src: str | None = None) -> Message:
        stages = (stage,) if isinstance(stage, str) else stage
        for i, msg in enumerate(self.pending):
            if msg.stage in stages and (src is None or msg.src == src):
                return self.pending.pop(i)
        while True:
            msg = self.t.recv(self.me, self.stages, timeout=self.timeout)
            if msg.stage in stages and (src is None or msg.src == src):
                return msg
            if msg.stage == "stop":
                raise ProtocolError(f"{self.me}: stop from {msg.src} while waiting for {stage!r}")
            self.pending.append(msg)


def corr_group(N: int, N2: int, n_feat: int) -> int:
    """Features per correlation message: as many as fit in 24 MB (at least one).  Fewer
    messages cost less interpreter time; below glibc's largest mmap threshold (32 MB)
    freed messages are reused instead of mapped and faulted in afresh.  Public sizes
    only, so FH computes the same grouping."""
    return max(1, min(n_feat, _CORR_BYTES // max(1, (N + N2) * pm.WIDTH * 8)))


def tag(msg: Message) -> tuple[int, int]:
    tree, level = msg.payload.get("tree"), msg.payload.get("level")
    if not isinstance(tree, int) or not isinstance(level, int):
        raise ProtocolError(f"stage {msg.stage!r} from {msg.src}: tree and level should be ints")
    return tree, level


"""A compute server of oblivious training: receives shares, runs the learner on them,
and sends the analyst shares of the trees.  It sees public sizes and masked words only."""

from __future__ import annotations

import numpy as np

from ppxgb.crypto.sharing import Randomness
from ppxgb.errors import PeerFailure, ProtocolError
from ppxgb.transport import Transport

from ..messages import field, report_failure
from ..params import TrainParams
from .dealer import Correlations
from .engine import Engine
from .learner import Learner
from .roles import LABEL_FIELDS
from .mailbox import Mailbox
from .stages import ANALYST, DEALER, SERVER_STAGES, SERVERS


def _array(msg, key: str, shape: tuple) -> np.ndarray:
    value = field(msg, key, np.ndarray)
    if value.dtype != np.uint64 or value.shape != shape:
        raise ProtocolError(f"stage {msg.stage!r} from {msg.src}: field {key!r} should be uint64 {shape}, "
                            f"got {value.dtype} {value.shape}")
    return value


def run_server(transport: Transport, index: int, *, parties: list[str], timeout: float | None = None) -> None:
    me, peer = SERVERS[index], SERVERS[1 - index]
    box = Mailbox(transport, me, SERVER_STAGES, timeout)
    try:
        key = field(box.recv("oseed", DEALER), "key", bytes)
        engine = Engine(transport, box, me, peer, index, Correlations(transport, box, me, index, key, DEALER))
        while True:                                   # horizontal bin agreement, if any
            msg = box.recv(("obinround", "oconfig"), ANALYST)
            if msg.stage == "oconfig":
                break
            size = field(msg, "size", int)
            total = np.zeros(size, np.uint64)
            for p in parties:
                total += _array(box.recv("obinshare", p), "counts", (size,))
            transport.send(me, ANALYST, "obinsum", {"counts": total})
        n, F, nb = field(msg, "n_rows", int), field(msg, "n_features", int), field(msg, "n_bins", int)
        blocks = field(msg, "blocks", list)          # per party: (rows, features) of its upload
        horizontal = field(msg, "partition", str) == "horizontal"
        label_party = field(msg, "label_party", int)
        missing = field(msg, "missing", bool)
        width = nb + 1 if missing else nb
        cand = nb * (2 if missing else 1)
        # the one-hot matrix stays in the parties' blocks (joined by rows horizontally, by
        # features vertically): server 1 turns each upload into E in place, server 0 fills
        # an empty block from the party's seed stream, whose words after the matrix's are
        # its shares of the candidate mask and the labels
        onehot, rest, at = [], [], [0, 0]
        for i, (p, (rows, feats)) in enumerate(zip(parties, blocks)):
            labelled = horizontal or i == label_party
            shapes = [(feats * width, rows), (feats * cand,)] + ([(rows,)] * (len(LABEL_FIELDS) - 1) if labelled else [])
            m = box.recv("odata", p)
            if index == 0:
                stream = Randomness(field(m, "seed", bytes))
                onehot.append((at[0], at[1], np.empty(shapes[0], np.uint64), stream))
                rest.append((stream, shapes[1:]))
            else:
                got = [_array(m, k, s) for k, s in zip(("onehot",) + LABEL_FIELDS, shapes)]
                store = got[0] if got[0].flags.writeable else got[0].copy()
                onehot.append((at[0], at[1], store, None))
                rest.append((None, got[1:]))
            at[1 if horizontal else 0] += rows if horizontal else feats * width
        engine.load_onehot(F * width, n, onehot)
        del onehot
        got = [[stream.uint64(s) for s in parts] if stream is not None else parts for stream, parts in rest]
        real = got[0][0] if horizontal else np.concatenate([g[0] for g in got])   # horizontally all the same
        y, w, wy, wysq = (np.concatenate([g[k] for g in got if len(g) > 1]) for k in range(1, len(LABEL_FIELDS)))
        categorical = np.asarray(field(msg, "categorical", list), bool)      # public feature types
        if categorical.shape != (F,):
            raise ProtocolError(f"oconfig: 'categorical' should hold {F} flags, got {categorical.shape}")
        learner = Learner(engine, n, F, nb, TrainParams.from_dict(field(msg, "params", dict)).to_dict(), missing,
                          real, categorical)
        transport.send(me, ANALYST, "oysum", {"share": np.array([v.sum(dtype=np.uint64) for v in (wy, w, wysq)])})
        got_base = box.recv("obase", ANALYST)
        base = _array(got_base, "share", (1,))
        learner.set_scale(field(got_base, "scale", int))
        margin = np.repeat(base, n)
        for _ in range(field(msg, "n_trees", int)):
            margin, valid, index_, weight = learner.tree(margin, y, w)
            transport.send(me, ANALYST, "otree", {"valid": valid, "index": index_, "weight": weight})
    except PeerFailure:
        raise
    except BaseException as exc:
        report_failure(transport, me, ANALYST, exc)
        raise

"""`ppxgb warmup`: compile and cache the numba kernels once, ahead of the first real run.

ppxgb's kernels (AES and the PRF, OPE/ORE, histograms, numeric and categorical split
finding, the vertical permutation) are numba functions compiled on first use and cached on disk
(`cache=True`: next to the sources, or under NUMBA_CACHE_DIR).  Without a warm cache
the first training or enrolment spends most of its time compiling (the demo's
horizontal training: about 18 s cold, 1.3 s warm), which would read as protocol time.

The warm-up runs each path once on a few dozen synthetic rows, in this process and on
the in-memory transport: horizontal training, vertical training with PSI alignment
(both protocols), both with category columns, and enrolment plus scoring under both
threshold schemes.  Every kernel those paths call gets compiled and written to the
cache; a second warm-up only loads it.  `make install`
(and so `make demo` and `make test`) runs it.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np


def register(subparsers) -> None:
    p = subparsers.add_parser("warmup", help="compile and cache the numba kernels (run once after install)",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("--quiet", action="store_true", help="print only the total time")
    p.set_defaults(func=main)


def _data(seed: int = 0, n: int = 80) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4))
    X[rng.random(X.shape) < 0.05] = np.nan          # the missing-value paths too
    # the label depends on columns of both vertical parties, so both split nodes
    return X, (np.nan_to_num(X[:, 0]) + np.nan_to_num(X[:, 2]) > 0).astype(np.float64)


def _horizontal() -> Any:
    from ppxgb.training import train_horizontal

    X, y = _data()
    params = {"objective": "binary:logistic", "max_depth": 2, "eta": 0.3}
    return train_horizontal(params, [(X[:40], y[:40]), (X[40:], y[40:])], num_boost_round=2, n_servers=2)


def _vertical() -> Any:
    import pandas as pd

    from ppxgb.training import train_vertical

    X, y = _data(1)
    ids = np.arange(len(y))
    a = pd.DataFrame({"id": ids, "f0": X[:, 0], "f1": X[:, 1], "y": y})
    b = pd.DataFrame({"id": ids[::-1], "f2": X[::-1, 2], "f3": X[::-1, 3]})
    booster = train_vertical({"objective": "binary:logistic", "max_depth": 3}, [a, b], label="y",
                             num_boost_round=3, id_column="id")
    train_vertical({"objective": "binary:logistic", "max_depth": 1}, [a, b], label="y", num_boost_round=1,
                   id_column="id", psi_protocol="oprf")          # the OPRF PSI's kernels
    return booster


def _categorical() -> None:
    """Category columns: a one-hot (3 categories) and a partition (8) split scan and the
    routing tables, horizontally (with the category agreement) and vertically."""
    import pandas as pd

    from ppxgb.training import train_horizontal, train_vertical

    X, y = _data(3)
    rng = np.random.default_rng(3)
    frame = pd.DataFrame({"x": X[:, 0], "few": pd.Categorical(rng.choice(list("abc"), len(y))),
                          "many": pd.Categorical(rng.choice(list("abcdefgh"), len(y)))})
    params = {"objective": "binary:logistic", "max_depth": 2, "eta": 0.3, "verbosity": 0}
    train_horizontal(params, [(frame[:40], y[:40]), (frame[40:], y[40:])], num_boost_round=2)
    train_vertical(params, [frame[["x", "few"]], frame[["many"]]], label=y, num_boost_round=2)


def _inference(booster, scheme: str) -> None:
    from ppxgb.inference import Client, Server
    from ppxgb.proxy import Proxy

    # small keys: key size changes no compiled code, and this model and its keys are discarded
    enrollment = Proxy(1024, scheme=scheme, allow_weak_keys=True).enroll(booster, user_id="warmup")
    server = Server()
    server.add(enrollment.model)
    client = Client(enrollment.keys)
    X, _ = _data(2, 8)
    client.decrypt(server.predict(enrollment.model.model_id, client.encrypt(X)))


def steps() -> list[tuple[str, Callable[[], Any]]]:
    """The warm-up's steps, in order (the inference steps reuse the horizontal model)."""
    state: dict[str, Any] = {}

    def horizontal() -> None:
        state["booster"] = _horizontal()

    return [("horizontal training", horizontal),
            ("vertical training with PSI", _vertical),
            ("categorical features", _categorical),
            ("enrolment and scoring (OPE)", lambda: _inference(state["booster"], "ope")),
            ("enrolment and scoring (ORE)", lambda: _inference(state["booster"], "ore"))]


def main(args) -> int:
    import sys

    started = time.perf_counter()
    for name, step in steps():
        t0 = time.perf_counter()
        step()
        if not args.quiet:
            print(f"ppxgb warmup: {name}: {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
    print(f"ppxgb warmup: kernels compiled and cached in {time.perf_counter() - started:.1f} s",
          file=sys.stderr, flush=True)
    return 0

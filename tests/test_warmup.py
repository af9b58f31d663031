"""`ppxgb warmup` compiles and caches every numba kernel the roles use: after it, a fresh
process that trains (horizontal and vertical) and enrols and scores (OPE and ORE) on
other data and parameters than the warm-up's loads every kernel from the cache and
compiles none (numba's per-dispatcher cache statistics are the oracle)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

# Runs in a fresh interpreter: real use of the roles, then numba's cache counters of every
# compiled function in ppxgb's modules.
PROBE = r"""
import json, sys
import numpy as np, pandas as pd
from numba.core.registry import CPUDispatcher
from ppxgb.training import train_horizontal, train_vertical
from ppxgb.inference import Client, Server
from ppxgb.proxy import Proxy

rng = np.random.default_rng(7)
X = rng.normal(size=(150, 6)); y = (X[:, 0] - X[:, 2] > 0).astype(float)
X[rng.random(X.shape) < 0.1] = np.nan
b = train_horizontal({"objective": "binary:logistic", "max_depth": 3, "eta": 0.2},
                     [(X[:70], y[:70]), (X[70:], y[70:])], num_boost_round=3, n_servers=3)
ids = np.arange(150)
lh = pd.DataFrame({"pid": ids, "a": X[:, 0], "b": X[:, 1], "t": y})
fh = pd.DataFrame({"pid": ids[::-1].copy(), "c": X[::-1, 2], "d": X[::-1, 3]})
train_vertical({"objective": "binary:logistic", "max_depth": 3}, [lh, fh], label="t",
               num_boost_round=3, id_column="pid")
for scheme in ("ope", "ore"):
    e = Proxy(1024, scheme=scheme, allow_weak_keys=True).enroll(b, user_id="u")
    s = Server(); s.add(e.model); c = Client(e.keys)
    c.decrypt(s.predict(e.model.model_id, c.encrypt(X[:5])))
stats = {}
for name, mod in list(sys.modules.items()):
    if not name.startswith("ppxgb") or mod is None:
        continue
    for attr, f in vars(mod).items():
        if isinstance(f, CPUDispatcher) and f.signatures:
            st = f.stats
            stats[f"{name}.{attr}"] = [sum(st.cache_hits.values()), sum(st.cache_misses.values())]
print(json.dumps(stats))
"""


def probe(cache_dir) -> dict[str, list[int]]:
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache_dir))
    proc = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_after_warmup_no_kernel_is_compiled_again(tmp_path):
    cold = tmp_path / "cold"
    stats = probe(cold)
    compiled = {k for k, (hits, misses) in stats.items() if misses}
    # the probe itself must see compilation on an empty cache, or it could not fail
    assert len(compiled) >= 5, stats

    warm = tmp_path / "warm"
    env = dict(os.environ, NUMBA_CACHE_DIR=str(warm))
    proc = subprocess.run([sys.executable, "-m", "ppxgb.app.cli", "warmup"], capture_output=True, text=True,
                          env=env, timeout=900)
    assert proc.returncode == 0, proc.stderr
    assert "kernels compiled and cached in" in proc.stderr
    stats = probe(warm)
    missed = {k: v for k, v in stats.items() if v[1]}
    assert not missed, f"compiled after the warm-up: {missed}"
    # kernels inlined into others are not dispatched on their own once loaded, so count
    # the entry points: each was loaded from the cache
    entry = {"ppxgb.training.split._best_splits", "ppxgb.training.kernels._build_hist",
             "ppxgb.training.kernels._partition", "ppxgb.training.kernels._gather_rows"}
    assert entry <= compiled, sorted(compiled)
    assert all(stats.get(k, [0, 0])[0] >= 1 for k in entry), {k: stats.get(k) for k in entry}

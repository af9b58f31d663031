"""Helpers shared by the tests (imported as `helpers`; pytest puts tests/ on sys.path).

- the oracle: plaintext xgboost hist on the pooled rows, and comparisons of a secure
  model's margins with it or with its own exported booster;
- synthetic data: discrete features with NaNs, labels for each objective;
- partitions: rows among hospitals (horizontal), column blocks among institutions
  (vertical);
- recorded in-process federations (training and PSI): every message as its receiver
  got it;
- uniformity checks on the ring words and bytes that parties and servers receive;
- free loopback ports for network tests, and a scoring server on one.

No training code is imported at module level: a federation is run by the function the
test passes in, and the PSI module is imported when a PSI runs.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time

import numpy as np
import xgboost as xgb

from ppxgb.transport import InMemoryTransport

# ------------------------------------------------------------------ oracle


def centralized(params, X, y, rounds, weight=None):
    """Plaintext xgboost hist on the pooled (or joined) rows: the oracle."""
    return xgb.train({**params, "tree_method": "hist"}, xgb.DMatrix(X, label=y, weight=weight), rounds)


def assert_margins_match(secure, reference, X, tol=1e-3, frac=0.99):
    """At least `frac` of the rows have every margin of the two boosters within `tol`."""
    d = xgb.DMatrix(X)
    m1 = secure.predict(d, output_margin=True).reshape(len(X), -1)
    m2 = reference.predict(d, output_margin=True).reshape(len(X), -1)
    close = np.all(np.abs(m1 - m2) <= tol, axis=1)
    assert close.mean() >= frac, f"only {close.mean():.4f} of rows within {tol}"


def assert_booster_reproduces_model(model, X):
    """The model's exported xgboost booster predicts the model's own margins."""
    np.testing.assert_allclose(model.to_booster().predict(xgb.DMatrix(X), output_margin=True),
                               model.predict_margin(X), rtol=0, atol=1e-6)


# ------------------------------------------------------------------ synthetic data


def make_discrete_data(objective, n, n_features, nan_rate, seed, signal):
    """Features with at most 12 distinct values (well under max_bin), NaNs at random;
    labels for `objective` from signal(X), computed before the NaNs are drawn."""
    rng = np.random.default_rng(seed)
    X = rng.integers(0, 12, size=(n, n_features)).astype(np.float64) * 0.5 - 2.0
    s = signal(X)
    if nan_rate:
        X[rng.random(X.shape) < nan_rate] = np.nan
    if objective == "binary:logistic":
        y = (s + rng.normal(size=n) > 0).astype(float)
    elif objective == "reg:squarederror":
        y = s * 3.0 + 10.0 + rng.normal(size=n)
    else:
        y = np.digitize(s + rng.normal(size=n) * 0.5, [-1.0, 1.0]).astype(float)
    return X, y


# ------------------------------------------------------------------ partitions


def split_rows(X, y, sizes):
    """Consecutive rows for each hospital: [(X, y), ...] with the given sizes."""
    edges = np.cumsum([0] + list(sizes))
    assert edges[-1] == len(y)
    return [(X[a:b], y[a:b]) for a, b in zip(edges[:-1], edges[1:])]


def column_bounds(n_columns, n_parties):
    """(first, end) column of each institution's block, as even as possible."""
    edges = np.linspace(0, n_columns, n_parties + 1).astype(int)
    return list(zip(edges[:-1], edges[1:]))


def column_blocks(X, n_parties):
    """The columns of X cut into n_parties blocks, one per institution."""
    return [X[:, a:b] for a, b in column_bounds(X.shape[1], n_parties)]


# ------------------------------------------------------------------ recorded federations


def recorded_federation(run, *args, **kwargs):
    """Run an in-process federation (run_federation, run_vertical_federation) over an
    InMemoryTransport that records every message as its receiver got it (encoded and
    decoded as the network transport sends it): (messages, model)."""
    messages = []
    model, _ = run(*args, transport=InMemoryTransport(recorder=messages.append), **kwargs)
    return messages, model


def psi_federation(id_lists, recorder=None, timeout=None, protocol="auto"):
    """In-process PSI among party-0 (the leader) .. party-k over an InMemoryTransport
    with the given recorder: (each party's aligned rows, the transport)."""
    from ppxgb.training.vertical import psi

    transport = InMemoryTransport(recorder=recorder)
    names = [f"party-{i}" for i in range(len(id_lists))]
    return psi.run_psi_federation(transport, names, names[0], id_lists, timeout=timeout,
                                  protocol=protocol), transport


# ------------------------------------------------------------------ uniformity


def canonical(value):
    """A message payload as nested tuples of plain values (arrays by dtype, shape and
    bytes), so two recorded views compare with ==."""
    if isinstance(value, np.ndarray):
        return ("array", value.dtype.str, value.shape, value.tobytes())
    if isinstance(value, dict):
        return tuple(sorted((k, canonical(v)) for k, v in value.items()))
    if isinstance(value, list):
        return tuple(canonical(v) for v in value)
    return value


def bits_of(words: np.ndarray) -> np.ndarray:
    """Every bit of an array of words or bytes, as 0/1 bytes."""
    return np.unpackbits(words.view(np.uint8))


def assert_uniform_words(words: np.ndarray):
    """Bit frequencies and top-byte histogram of uniform 64-bit words (loose 6-sigma bounds)."""
    bits = bits_of(words).reshape(-1, 64).mean(axis=0)
    sd = 0.5 / np.sqrt(len(words))
    assert np.all(np.abs(bits - 0.5) < 6 * sd + 1e-9), bits
    top = np.bincount((words >> np.uint64(56)).astype(np.int64), minlength=256)
    chi2 = ((top - len(words) / 256) ** 2 / (len(words) / 256)).sum()
    assert chi2 < 255 + 6 * np.sqrt(2 * 255), chi2


# ------------------------------------------------------------------ network


def free_ports(n: int) -> list[int]:
    """n distinct loopback ports free right now (bound together, then released)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@contextlib.contextmanager
def scoring_server(tmp_path, admin_token_file: str):
    """A `ppxgb scoring-server` on a free loopback port (plain HTTP, a SQLite store in
    tmp_path), ready to serve; yields its URL and stops it afterwards."""
    import httpx

    (port,) = free_ports(1)
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, "-m", "ppxgb.app.cli", "scoring-server", "--db",
                               f"sqlite:///{tmp_path / 'm.db'}", "--admin-token-file", admin_token_file,
                               "--port", str(port), "--insecure-http"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            try:
                if httpx.get(f"{url}/v1/health").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        else:
            raise RuntimeError(f"the scoring server at {url} did not become healthy in 40 s")
        yield url
    finally:
        server.terminate()
        server.wait(timeout=10)

"""Running training roles as OS processes: the deployment helpers of the app layer.

The training roles (ppxgb.training) are functions over a `Transport`; this module is
what turns them into processes a hospital can run, and is shared by the horizontal
and vertical command lines:

- the peers file (PEERS.json): who plays which role, where each listens, its TLS files;
- loading a party's data file (CSV or .npz);
- running one role over a `NetworkTransport` (or a `RelayTransport`), reporting the
  root cause when it fails;
- supervising a whole federation on loopback: one child process per role, their
  output relayed, the first failure named, the model written only on success;
- the atomic file writers of ppxgb.files, re-exported for launchers.

The peers file, read the same way by every role:

    {"version": 1, "coordinator": "coordinator",
     "parties": ["party-0", ...], "servers": ["server-0", ...],
     "addresses": {"party-0": "127.0.0.1:40001", ...},
     "tls": {"ca": "ca.pem", "roles": {"party-0": {"cert": "party-0.pem", "key": "party-0.key"}}}}

Relative paths are taken from the directory of PEERS.json; `--cert/--key/--ca` override
the "tls" section.  Without TLS material a role refuses to start, unless `--insecure`.
Instead of "addresses", a file may name a relay that every role dials out to, and the
run's session: `"relay": "relay.example.org:7443", "session": "study-7"` (or
`--relay/--session` on each role; see ppxgb.relay).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ppxgb.errors import ParameterError, PeerFailure, PeerTimeout, PPXGBError
from ppxgb.files import write_atomic, write_private_file
from ppxgb.net import NetworkTransport, PeerTransport, parse_address
from ppxgb.tls import TLSConfig, make_test_pki

from .relay_cli import add_relay_federation_option, add_relay_role_option, relay_command, relay_plan

__all__ = ["PEERS_VERSION", "Peers", "write_peers", "load_data", "load_block", "feature_names_of",
           "free_ports", "json_arg", "read_csv", "check_numeric", "check_params", "categorize",
           "numeric_columns_as_float", "add_categorical_option", "add_dp_options", "dp_summary",
           "column_difference", "plural", "human_bytes", "secret_file", "announce_when_ready", "output_path", "federation_tls", "run_role", "blame",
           "add_role_options", "add_net_options", "add_federation_options", "progress_for", "Plan", "run_federation",
           "CLI_COMMAND", "write_atomic", "write_private_file", "Child", "stop_children",
           "wait_children", "federation_error"]

PEERS_VERSION = 1
DEFAULT_TIMEOUT = 30.0          # seconds of silence after which a peer is declared failed
DEFAULT_STEP_TIMEOUT = 3600.0   # longest wait for any one protocol message
#: How a launcher starts a role: the `ppxgb` command line of this interpreter.
CLI_COMMAND = [sys.executable, "-m", "ppxgb.app.cli"]


# ===================================================================== data and args

def read_csv(path: str, flag: str = "--data", nrows: int | None = None):
    """A CSV with a header row as a DataFrame; an empty, binary or malformed file is a
    ParameterError naming the file (never a pandas traceback)."""
    import pandas as pd

    try:
        return pd.read_csv(path, nrows=nrows)
    except pd.errors.EmptyDataError:
        raise ParameterError.bad(flag, "a CSV with a header row", f"{path}: empty file") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ParameterError.bad(flag, "a CSV with a header row", f"{path}: {reason}") from None
    except OSError as exc:
        raise ParameterError.bad(flag, "a readable CSV file", f"{path}: {exc.strerror}") from None


def _npz(path: str, flag: str = "--data"):
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ParameterError.bad(flag, "an .npz file of numeric arrays", f"{path}: {exc}") from None


def check_numeric(frame, path: str, flag: str = "--data") -> None:
    """Every column numeric (empty cells are NaN); else name the first other one."""
    import pandas as pd

    bad = [c for c in frame.columns if not pd.api.types.is_numeric_dtype(frame[c].dtype)]
    if bad:
        sample = frame[bad[0]].dropna().astype(str).head(3).tolist()
        raise ParameterError(
            f"{flag}: {path}: column {bad[0]!r} is not numeric (values such as {sample}); encode it "
            "as numbers first (e.g. 0/1 or one column per category), or drop it")


def categorize(frame, categorical: str | None, path: str, flag: str = "--data", keep=(), named_elsewhere=False):
    """The columns named in --categorical (comma-separated) and every non-numeric column
    as pandas `category` columns (XGBoost's categorical features); a non-numeric column
    not named is said on stderr, so a typo in numeric data does not pass unnoticed.
    keep: columns left as they are (an id or label column); named_elsewhere: a vertical
    party's file need not hold every --categorical column."""
    import sys

    import pandas as pd

    named = [c for c in (categorical or "").split(",") if c and (c in frame.columns or not named_elsewhere)]
    unknown = [c for c in named if c not in frame.columns]
    if unknown:
        raise ParameterError.bad("--categorical", f"columns of {path}", unknown[0])
    inferred = [c for c in frame.columns if c not in named and c not in keep
                and not pd.api.types.is_numeric_dtype(frame[c].dtype)]
    for c in inferred:
        sample = frame[c].dropna().astype(str).head(3).tolist()
        print(f"ppxgb: {flag} {path}: column {c!r} is not numeric (values such as {sample}): trained as a "
              f"categorical feature (name it in --categorical to say so)", file=sys.stderr, flush=True)
    if not named and not inferred:
        return frame
    out = frame.copy()
    for c in named + inferred:
        col = out[c]
        if pd.api.types.is_float_dtype(col.dtype) and (col.dropna() == col.dropna().round()).all():
            # integer codes with empty cells, read as floats: int64 categories, as xgboost takes
            out[c] = pd.Categorical(col, categories=np.sort(col.dropna().unique()).astype(np.int64))
        else:
            out[c] = col.astype("category")
    return out


def numeric_columns_as_float(X):
    """A DataFrame's numeric columns as float64 (category columns as they are)."""
    import pandas as pd

    return X.astype({c: np.float64 for c in X.columns if not isinstance(X[c].dtype, pd.CategoricalDtype)})


def load_data(path: str, label: str | None, categorical: str | None = None) -> tuple[Any, np.ndarray]:
    """(X, y) from a CSV (header row; empty cells are NaN) or an .npz holding X and y.

    X comes back as a DataFrame for CSV (its columns are the feature names; the columns
    of `categorical` and non-numeric ones as category columns, see categorize) and as
    an array for .npz.  A file without rows is refused.
    """
    if not os.path.isfile(path):
        raise ParameterError.bad("--data", "an existing CSV or .npz file", path)
    if path.endswith(".npz"):
        if categorical:
            raise ParameterError.bad("--categorical", "a CSV with a header (an .npz has no column names)", path)
        with _npz(path) as npz:
            if "X" not in npz or "y" not in npz:
                raise ParameterError.bad("--data", "an .npz with arrays 'X' and 'y'", sorted(npz.files))
            try:
                X, y = np.asarray(npz["X"], dtype=np.float64), np.asarray(npz["y"])
            except (TypeError, ValueError):
                raise ParameterError.bad("--data", "a numeric array 'X'", path) from None
        if X.ndim != 2 or len(X) == 0 or len(y) != len(X):
            raise ParameterError.bad("--data", "an .npz with a non-empty 2-D X and one y per row",
                                     f"{path}: X {X.shape}, y {y.shape}")
        return X, y
    frame = read_csv(path)
    if not label:
        raise ParameterError.bad("--label", "the label column of the CSV", label)
    if label not in frame.columns:
        raise ParameterError.bad("--label", f"one of the columns of {path}", label)
    if len(frame) == 0:
        raise ParameterError.bad("--data", "a CSV with at least one data row", f"{path}: header only")
    X = categorize(frame.drop(columns=[label]), categorical, path)
    return numeric_columns_as_float(X), frame[label].to_numpy()


def load_block(path: str):
    """A vertical party's columns as a DataFrame: a CSV with a header (empty cells are
    NaN), or an .npz with X (and optionally y and ids)."""
    if not os.path.isfile(path):
        raise ParameterError.bad("--data", "an existing CSV or .npz file", path)
    import pandas as pd

    if path.endswith(".npz"):
        with _npz(path) as npz:
            if "X" not in npz:
                raise ParameterError.bad("--data", "an .npz with an array 'X'", sorted(npz.files))
            try:
                X = np.asarray(npz["X"], dtype=np.float64)
            except (TypeError, ValueError):
                raise ParameterError.bad("--data", "a numeric array 'X'", path) from None
            if X.ndim != 2:
                raise ParameterError.bad("--data", "a 2-D array 'X'", f"{path}: shape {X.shape}")
            frame = pd.DataFrame(X, columns=[f"{Path(path).stem}_{j}" for j in range(X.shape[1])])
            if "ids" in npz:
                frame.insert(0, "ids", npz["ids"])
            if "y" in npz:
                frame["y"] = npz["y"]
    else:
        frame = read_csv(path)
    if len(frame) == 0:
        raise ParameterError.bad("--data", "a file with at least one data row", f"{path}: header only")
    return frame


def column_difference(path: str, columns: list[str], first: str, expected: list[str]) -> str:
    """Why two parties' feature columns differ, in a few words instead of two lists."""
    missing = [c for c in expected if c not in columns]
    extra = [c for c in columns if c not in expected]
    if not missing and not extra:
        return f"--data: {path} has the same columns as {first}, in a different order; reorder them"
    parts = ([f"missing: {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}"] if missing else []) + \
            ([f"unexpected: {', '.join(extra[:5])}{' ...' if len(extra) > 5 else ''}"] if extra else [])
    return f"--data: {path} differs from {first} ({'; '.join(parts)})"


def check_params(text: str, args: argparse.Namespace | None = None) -> dict[str, Any]:
    """--params parsed (with --dp-epsilon/--dp-delta merged in, when args has them) and
    validated as secure training will (before any process starts)."""
    from ppxgb.training.params import TrainParams

    params = json_arg(text, "--params")
    for option, key in (("dp_epsilon", "dp_epsilon"), ("dp_delta", "dp_delta")):
        value = getattr(args, option, None)
        if value is None:
            continue
        if key in params and params[key] != value:
            raise ParameterError(f"--{option.replace('_', '-')}: {value} differs from {key}={params[key]} "
                                 f"in --params; give it once")
        params = {**params, key: value}
    TrainParams.from_dict(params)
    return params


def add_categorical_option(p: argparse.ArgumentParser) -> None:
    """--categorical: columns trained as categorical features."""
    p.add_argument("--categorical", default=None, metavar="COL1,COL2",
                   help="columns trained as categorical features (XGBoost's categorical splits); "
                        "non-numeric columns are categorical anyway, with a message (default: none)")


def add_dp_options(p: argparse.ArgumentParser) -> None:
    """--dp-epsilon / --dp-delta: differentially private training (README)."""
    p.add_argument("--dp-epsilon", type=float, help="train with (epsilon, delta)-differential privacy "
                   "(default: none); same as dp_epsilon in --params")
    p.add_argument("--dp-delta", type=float, help="delta of the DP guarantee (default 1e-5); same as "
                   "dp_delta in --params")


def dp_summary(model_json: bytes | str) -> str | None:
    """One line on the privacy budget a trained model file says it spent (None without DP)."""
    attrs = json.loads(model_json).get("learner", {}).get("attributes", {})
    if "dp_epsilon_spent" not in attrs:
        return None
    return (f"differential privacy: epsilon {attrs['dp_epsilon_spent']} spent of {attrs['dp_epsilon_budget']} "
            f"(delta {attrs['dp_delta']}) over {attrs['dp_releases']} releases; {attrs['dp_mechanism']}, "
            f"noise multiplier {attrs['dp_noise_multiplier']}")


def feature_names_of(path: str, label: str | None) -> list[str] | None:
    """The feature columns of a CSV (its header without the label); None for .npz."""
    if path.endswith(".npz"):
        return None
    columns = [str(c) for c in read_csv(path, nrows=0).columns]
    if label not in columns:
        raise ParameterError.bad("--label", f"one of the columns of {path}", label)
    return [c for c in columns if c != label]


def plural(n: int, word: str, many: str | None = None) -> str:
    """'1 party', '2 parties'."""
    return f"{n} {word if n == 1 else (many or word + 's')}"


def human_bytes(n: float) -> str:
    """1234567 -> '1.2 MB' (powers of 1000, as disks and networks count)."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def free_ports(n: int, host: str = "127.0.0.1") -> list[int]:
    """n distinct ports that were free a moment ago (held open together while choosing)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind((host, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def json_arg(text: str, name: str) -> dict[str, Any]:
    """A JSON object given inline or as @file (e.g. --params)."""
    if text.startswith("@"):
        try:
            text = Path(text[1:]).read_text()
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or type(exc).__name__
            raise ParameterError.bad(name, "a JSON object or @FILE with one", f"{text}: {reason}") from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ParameterError.bad(name, "a JSON object (or @file)", f"invalid JSON ({exc.msg})") from None
    if not isinstance(value, dict):
        raise ParameterError.bad(name, "a JSON object", type(value).__name__)
    return value


def output_path(value: str, overwrite: bool | None = None) -> Path:
    """--out checked before any work starts: its folder exists and, when `overwrite`
    is False, the file does not (None: no such check, the caller replaces it)."""
    out = Path(value)
    if not out.parent.is_dir():
        raise ParameterError.bad("--out", "a path in an existing directory", str(out))
    if overwrite is False and out.exists():
        raise ParameterError.bad("--out", "a path that does not exist yet (or --overwrite)", str(out))
    return out


def secret_file(path: str | None, flag: str, kind: str = "token") -> str:
    """Check that a secret file given by `flag` exists; if not, say how to create it."""
    if path and os.path.exists(path):
        return path
    make = f"ppxgb proxy new-secret --out {path or 'FILE'}" + (" --kind master-key" if kind == "master-key" else "")
    raise ParameterError(f"{flag}: {path!r} does not exist; create it with `{make}` (mode 0600)")


def announce_when_ready(service: str, host: str, port: int, tls: bool, timeout: float = 600.0) -> None:
    """Print "<service>: ready at <URL>" once the port accepts connections (a thread,
    since the web server blocks), so a user or script knows when to connect."""
    url = f"{'https' if tls else 'http'}://{host}:{port}"
    print(f"ppxgb {service}: starting on {url}", file=sys.stderr, flush=True)

    def wait() -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection((host, port), timeout=1.0):
                    print(f"ppxgb {service}: ready at {url}", file=sys.stderr, flush=True)
                    return
            except OSError:
                time.sleep(0.1)
    threading.Thread(target=wait, daemon=True).start()


# ========================================================================== PEERS.json

class Peers:
    """A parsed PEERS.json: who plays which role, where they listen, their TLS files."""

    def __init__(self, doc: dict[str, Any], base: Path):
        if not isinstance(doc, dict) or doc.get("version") != PEERS_VERSION:
            raise ParameterError.bad("peers", f"a PEERS.json object with version {PEERS_VERSION}",
                                     doc.get("version") if isinstance(doc, dict) else doc)
        self.coordinator = doc.get("coordinator", "coordinator")
        self.parties = list(doc.get("parties") or [])
        self.servers = list(doc.get("servers") or [])
        self.relay = doc.get("relay")           # "host:port": every role dials out to it
        self.session = str(doc.get("session") or "")
        raw = doc.get("addresses") or {}         # none at all: every role goes through a relay
        if not isinstance(raw, dict):
            raise ParameterError.bad("peers.addresses", "a map of role -> 'host:port'", raw)
        self.addresses = {name: parse_address(addr) for name, addr in raw.items()}
        self.roles = list(dict.fromkeys([self.coordinator, *self.parties, *self.servers]))
        self.base = base
        self.tls = doc.get("tls") or {}

    @classmethod
    def load(cls, path: str) -> "Peers":
        try:
            doc = json.loads(Path(path).read_text())
        except FileNotFoundError:
            raise ParameterError.bad("--peers", "an existing PEERS.json", path) from None
        except json.JSONDecodeError as exc:
            raise ParameterError.bad("--peers", "valid JSON", f"{path}: {exc.msg}") from None
        return cls(doc, Path(path).resolve().parent)

    def _path(self, value: str | None) -> str | None:
        return None if not value else str(self.base / value)

    def tls_for(self, name: str, args: argparse.Namespace) -> TLSConfig | None:
        """The role's TLS files: flags first, then PEERS.json; none is an error unless --insecure."""
        if args.insecure:
            print(f"ppxgb: WARNING: {name} runs WITHOUT TLS (--insecure): traffic is plaintext "
                  "and peers are not authenticated", file=sys.stderr)
            return None
        mine = (self.tls.get("roles") or {}).get(name) or {}
        cert = args.cert or self._path(mine.get("cert"))
        key = args.key or self._path(mine.get("key"))
        ca = args.ca or self._path(self.tls.get("ca"))
        if not (cert and key and ca):
            missing = [n for n, v in (("cert", cert), ("key", key), ("ca", ca)) if not v]
            raise ParameterError(
                f"tls: no {', '.join(missing)} for {name}: give --cert/--key/--ca or a 'tls' section "
                "in PEERS.json (plaintext only with an explicit --insecure)")
        config = TLSConfig(cert, key, ca)
        config.check()
        return config


def write_peers(path: Path, parties: list[str], servers: list[str], coordinator: str,
                host: str, tls: dict[str, TLSConfig] | None, relay: str | None = None,
                session: str | None = None) -> dict[str, Any]:
    """Write a PEERS.json with free ports on `host` (or a relay and session; and
    absolute TLS paths); return it."""
    names = [coordinator, *parties, *servers]
    doc: dict[str, Any] = {"version": PEERS_VERSION, "coordinator": coordinator, "parties": parties,
                           "servers": servers}
    if relay:
        doc.update(relay=relay, session=session or "")
    else:
        doc["addresses"] = {name: f"{host}:{port}" for name, port in zip(names, free_ports(len(names), host))}
    if tls:
        doc["tls"] = {"ca": str(Path(tls[names[0]].ca).resolve()),
                      "roles": {n: {"cert": str(Path(tls[n].cert).resolve()),
                                    "key": str(Path(tls[n].key).resolve())} for n in names}}
    write_atomic(path, json.dumps(doc, indent=2))
    return doc


def federation_tls(args: argparse.Namespace, roles: list[str], workdir: Path) -> dict | None:
    """TLS material of every role: from --certs DIR, else a fresh test PKI; None only
    with the explicit --insecure."""
    if args.insecure:
        return None
    if args.certs:
        tls = {n: TLSConfig(str(Path(args.certs, f"{n}.pem")), str(Path(args.certs, f"{n}.key")),
                            str(Path(args.certs, "ca.pem"))) for n in roles}
        for config in tls.values():
            config.check()
        return tls
    return make_test_pki(workdir / "pki", roles)


# ====================================================================== one role

def blame(exc: PeerFailure) -> str | None:
    """The role a failure names; None for a timeout that waited on any sender (its
    `peer` is then only a description, "peers of <me>", not a role to blame)."""
    if isinstance(exc, PeerTimeout):
        return exc.awaited
    return exc.peer


def _transport(args: argparse.Namespace, peers: Peers, name: str) -> PeerTransport:
    relay = getattr(args, "relay", None) or peers.relay
    if relay:
        from ppxgb.relay import RelayTransport
        if name not in peers.roles:
            raise ParameterError.bad("--name", f"one of {peers.roles}", name)
        session = getattr(args, "session", None) or peers.session
        if not session:
            raise ParameterError("--session: a run through a relay needs a session name, the same for every "
                                 "role (--session NAME, or \"session\" in PEERS.json)")
        return RelayTransport(name, peers.roles, parse_address(relay), peers.tls_for(name, args),
                              insecure=args.insecure, session=session,
                              connect_timeout=args.connect_timeout, peer_timeout=args.timeout,
                              default_timeout=args.step_timeout)
    for role in peers.roles:                 # a mesh needs every role's address
        if role not in peers.addresses:
            raise ParameterError.bad("peers.addresses", f"an address for {role!r} (or a 'relay', or --relay)",
                                     sorted(peers.addresses))
    if name not in peers.addresses:
        raise ParameterError.bad("--name", f"one of {sorted(peers.addresses)}", name)
    return NetworkTransport(name, peers.addresses, peers.tls_for(name, args), insecure=args.insecure,
                            connect_timeout=args.connect_timeout, peer_timeout=args.timeout,
                            default_timeout=args.step_timeout)


def _root_cause(transport: PeerTransport, exc: PeerFailure, me: str) -> PeerFailure:
    """Prefer what this role saw first-hand: a relayed abort may blame a bystander, and
    a timeout that named no one blames nobody."""
    seen = transport.first_failure(wait=0.0 if blame(exc) == me else 1.0)
    if seen is not None and seen[0] != blame(exc):
        return PeerFailure(seen[0], f"{seen[1]} (and then {exc})")
    return exc


def run_role(args: argparse.Namespace, name: str, body: Callable[[PeerTransport, Peers], None]) -> int:
    """Run one role; on failure tell every peer who failed, and write the --report file."""
    peers = Peers.load(args.peers)
    started = time.monotonic()
    report: dict[str, Any] = {"role": name, "ok": False}
    transport = _transport(args, peers, name)
    relay = getattr(transport, "relay_address", None)
    report["relay"] = f"{relay[0]}:{relay[1]}" if relay else None      # None: the direct mesh
    try:
        try:
            body(transport, peers)
        except PeerFailure as exc:
            cause = _root_cause(transport, exc, name)
            if cause is not exc:
                raise cause from exc
            raise
        report["ok"] = True
    except PeerFailure as exc:
        culprit = blame(exc)
        report.update(error=str(exc), peer=culprit)
        transport.abort(culprit or name, exc.reason)
        raise
    except BaseException as exc:
        report.update(error=f"{type(exc).__name__}: {exc}", peer=name)
        # peers learn only that this role failed and the exception type, never its message
        transport.abort(name, f"failed with {type(exc).__name__}")
        raise
    finally:
        transport.close()
        report.update(seconds=round(time.monotonic() - started, 3),
                      sent_messages=transport.sent_messages, sent_bytes=transport.sent_bytes,
                      received_messages=transport.total_messages, received_bytes=transport.total_bytes)
        if args.report:
            write_atomic(args.report, json.dumps(report, indent=2))
    return 0


def progress_for(mode: str):
    """The per-round progress reporter for --progress auto|bar|lines|off; its lines show
    the elapsed time once and the traffic in readable units ("1.2 MB")."""
    from ppxgb.training.progress import Progress

    class ReadableProgress(Progress):
        def line(self, info: dict[str, Any] | None = None) -> str:
            info = dict(info or {})
            info.pop("elapsed", None)                 # the line already shows it
            received = info.pop("bytes", None)
            text = super().line(info)
            return text if received is None else f"{text} received {human_bytes(received)}"

    return {"auto": lambda: ReadableProgress(), "bar": lambda: ReadableProgress(enabled=True, tty=True),
            "lines": lambda: ReadableProgress(enabled=True, tty=False),
            "off": lambda: ReadableProgress(enabled=False)}[mode]()


def add_role_options(p: argparse.ArgumentParser, name_required: bool = True) -> None:
    """The options of a role process: its name, PEERS.json, TLS overrides, the report."""
    p.add_argument("--name", required=name_required, help="this role's name in PEERS.json")
    p.add_argument("--peers", required=True, metavar="PEERS.json", help="roles, addresses and TLS files")
    p.add_argument("--cert", help="this role's certificate (PEM); overrides PEERS.json")
    p.add_argument("--key", help="this role's private key (PEM); overrides PEERS.json")
    p.add_argument("--ca", help="CA certificate that signs every role (PEM); overrides PEERS.json")
    add_relay_role_option(p)
    add_net_options(p)
    p.add_argument("--report", metavar="FILE", help="write a JSON report (outcome, messages, bytes) here")


def add_federation_options(p: argparse.ArgumentParser) -> None:
    """The options every loopback federation command shares (after its --data)."""
    p.add_argument("--params", required=True, help="XGBoost parameters as JSON (or @file)")
    p.add_argument("--rounds", type=int, required=True, help="number of boosting rounds")
    p.add_argument("--out", required=True, help="model file (XGBoost JSON), written only on success")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.add_argument("--certs", metavar="DIR",
                   help="use ca.pem and <role>.pem/<role>.key from DIR instead of a fresh test PKI")
    p.add_argument("--host", default="127.0.0.1", help="address every role listens on")
    p.add_argument("--report", metavar="FILE", help="write a JSON summary (time, messages, bytes per role)")
    p.add_argument("--progress", choices=("auto", "bar", "lines", "off"), default="auto",
                   help="per-round progress on stderr (auto: only on a terminal)")
    add_dp_options(p)
    add_relay_federation_option(p)
    add_net_options(p)


def add_net_options(p: argparse.ArgumentParser) -> None:
    """Timeouts and the explicit plaintext switch, for roles and federations alike."""
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, metavar="SECONDS",
                   help="a peer that dies or stays silent this long fails the run, naming it")
    p.add_argument("--step-timeout", type=float, default=DEFAULT_STEP_TIMEOUT, metavar="SECONDS",
                   help="longest wait for any single protocol message from live peers")
    p.add_argument("--connect-timeout", type=float, default=30.0, metavar="SECONDS",
                   help="how long to wait for every peer to come up")
    p.add_argument("--insecure", action="store_true",
                   help="DEBUGGING ONLY: no TLS, plaintext traffic, unauthenticated peers")


# ========================================================== child processes

class Child:
    """One role process, its output relayed to our stderr and its tail kept for the report."""

    def __init__(self, name: str, argv: list[str], raw: bool):
        self.name = name
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        self.tail = b""
        self.exit_time: float | None = None
        self.killed = False
        self._relay = threading.Thread(target=self._pump, args=(raw,), daemon=True)
        self._relay.start()

    def _pump(self, raw: bool) -> None:
        out = getattr(sys.stderr, "buffer", None)
        pending = b""
        while True:
            chunk = os.read(self.proc.stderr.fileno(), 65536)
            if not chunk:
                break
            self.tail = (self.tail + chunk)[-8192:]
            if raw:
                text = chunk
            else:  # prefix whole lines with the role name
                pending += chunk
                *lines, pending = pending.split(b"\n")
                text = b"".join(f"[{self.name}] ".encode() + line + b"\n" for line in lines)
            if text:
                try:
                    if out is not None:
                        out.write(text)
                        out.flush()
                    else:
                        sys.stderr.write(text.decode(errors="replace"))
                except (OSError, ValueError):
                    pass

    def error_line(self) -> str | None:
        """The message of the child's last `ppxgb: error:` line, if it printed one."""
        self._relay.join(timeout=2)
        lines = [line for line in self.tail.decode(errors="replace").splitlines() if "error:" in line]
        return lines[-1].split("error:", 1)[1].strip() if lines else None

    def describe_exit(self) -> str:
        code = self.proc.returncode
        if code is None:
            return "still running"
        if code < 0:
            sig = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ else -code
            return "stopped by the launcher" if self.killed else f"killed by {sig}"
        return f"exit code {code}"


def stop_children(children: list[Child], grace: float = 2.0) -> None:
    """Terminate every child still running; kill those that outlive `grace` seconds."""
    for c in children:
        if c.proc.poll() is None:
            c.killed = True
            c.proc.terminate()
    deadline = time.monotonic() + grace
    for c in children:
        try:
            c.proc.wait(max(0.01, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            c.proc.kill()
            c.proc.wait()


def wait_children(children: list[Child], driver: str, grace: float) -> list[Child]:
    """Wait for every role; on the first failure give the driver `grace` s to report.
    Returns the children that failed."""
    first_failure: float | None = None
    while True:
        now = time.monotonic()
        for c in children:
            if c.exit_time is None and c.proc.poll() is not None:
                c.exit_time = now
        failed = [c for c in children if c.exit_time is not None and c.proc.returncode != 0]
        if failed and first_failure is None:
            first_failure = now
        running = [c for c in children if c.exit_time is None]
        if not running:
            return failed
        lead = next(c for c in children if c.name == driver)
        if first_failure is not None and (lead.exit_time is not None or now - first_failure > grace):
            return failed
        time.sleep(0.05)


def federation_error(children: list[Child], driver: str, failed: list[Child], workdir: Path) -> PeerFailure:
    """Name the role that failed: the driver's verdict (its report), else the first
    process to die."""
    culprit, reason = None, None
    report = workdir / f"report-{driver}.json"
    if report.is_file():
        doc = json.loads(report.read_text())
        culprit, reason = doc.get("peer"), doc.get("error")
    if culprit is None and failed:
        first = min(failed, key=lambda c: c.exit_time)
        culprit, reason = first.name, first.error_line() or first.describe_exit()
    culprit = culprit or driver
    if reason and reason.startswith(f"{culprit}: "):
        reason = reason[len(culprit) + 2:]
    own = next((c for c in children if c.name == culprit and c.proc.returncode not in (0, None)), None)
    own_line = own.error_line() if own is not None else None
    if own_line and own_line not in (reason or "") and culprit != driver:
        reason = f"{reason} ({culprit} says: {own_line})"  # it is our own process: show its message
    status = "; ".join(f"{c.name} {c.describe_exit()}" for c in children if c.proc.returncode not in (0,))
    return PeerFailure(culprit, f"{reason or 'failed'} [{status}]; no model written")


# ============================================================ a federation on loopback

@dataclass(frozen=True)
class Plan:
    """What every launched role of one federation shares."""

    common: list[str]      # options every role gets: peers file, timeouts, --insecure
    model_tmp: Path        # where the driving role writes the model
    progress: str          # the driver's --progress mode
    base: list[str]        # the command that starts a role


def _plan(args: argparse.Namespace, parties: list[str], servers: list[str], driver: str,
          roles: list[str], workdir: Path, tls: dict | None, relay: str | None, session: str | None) -> Plan:
    peers_path = workdir / "peers.json"
    write_peers(peers_path, parties, servers, driver, args.host, tls, relay, session)
    common = ["--peers", str(peers_path), "--timeout", str(args.timeout),
              "--step-timeout", str(args.step_timeout), "--connect-timeout", str(args.connect_timeout)]
    if args.insecure:
        common.append("--insecure")
    show = args.progress if args.progress != "auto" else ("bar" if sys.stderr.isatty() else "off")
    return Plan(common, workdir / "model.json", show, list(CLI_COMMAND))


def run_federation(args: argparse.Namespace, command: str, parties: list[str], servers: list[str],
                   driver: str, driver_role: str, argvs: Callable[[Plan], dict[str, list[str]]],
                   head: dict[str, Any], what: str) -> int:
    """Start every role as a child process, wait, and write the model and the summary.

    roles are `driver` (which writes the model), `parties` and `servers`; `argvs(plan)`
    gives each role's command line.  If a role fails the others are stopped and the
    error names the culprit; the model is written to --out only if every role succeeded.
    """
    roles = list(dict.fromkeys([driver, *parties, *servers]))
    out = Path(args.out)
    workdir = Path(tempfile.mkdtemp(prefix=f"ppxgb-{command}-"))
    started = time.monotonic()
    children: list[Child] = []
    relay_child: Child | None = None
    try:
        relay, session = relay_plan(args)
        tls = federation_tls(args, roles + ["relay"] * (relay == "start"), workdir)
        if relay == "start":
            port = free_ports(1, args.host)[0]
            relay = f"{args.host}:{port}"
            relay_child = Child("relay", relay_command(list(CLI_COMMAND), args.host, port, tls and tls["relay"]),
                                raw=False)
        plan = _plan(args, parties, servers, driver, roles, workdir, tls, relay, session)
        commands = argvs(plan)
        for name in roles:
            argv = commands[name] + ["--report", str(workdir / f"report-{name}.json")]
            children.append(Child(name, argv, raw=(name == driver)))
        if getattr(args, "verbose", False):
            for c in children + [relay_child] * (relay_child is not None):
                print(f"ppxgb {command}: started {c.name} (pid {c.proc.pid})", file=sys.stderr, flush=True)

        failed = wait_children(children, driver, grace=args.timeout + 5)
        if failed:
            stop_children(children)
            if relay_child is not None and relay_child.proc.poll() is not None:
                children.append(relay_child)      # it died by itself: the roles name it
            raise federation_error(children, driver, failed, workdir)
        if not plan.model_tmp.is_file():
            raise PPXGBError(f"{command}: the {driver_role} exited without writing a model")
        write_atomic(out, plan.model_tmp.read_bytes())
        reports = [json.loads((workdir / f"report-{n}.json").read_text()) for n in roles]
        summary = {
            **head, "rounds": args.rounds,
            "seconds": round(time.monotonic() - started, 3),
            "messages": sum(r["sent_messages"] for r in reports),
            "bytes": sum(r["sent_bytes"] for r in reports),
            "tls": not args.insecure, "model": str(out), "roles": reports,
        }
        if args.report:
            write_atomic(args.report, json.dumps(summary, indent=2))
        print(f"ppxgb {command}: {what}, {plural(args.rounds, 'round')} in {summary['seconds']:.1f}s; "
              f"{summary['messages']} messages, {human_bytes(summary['bytes'])} "
              f"{'over TLS' if tls else 'IN PLAINTEXT'}; model written to {out}")
        line = dp_summary(plan.model_tmp.read_bytes())
        if line:
            print(f"ppxgb {command}: {line}")
        return 0
    except BaseException:
        stop_children(children)
        raise
    finally:
        if relay_child is not None:
            stop_children([relay_child])
        shutil.rmtree(workdir, ignore_errors=True)

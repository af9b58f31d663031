"""`ppxgb vparty | vdealer | vfederation`: vertical training as OS processes.

Same PEERS.json as horizontal training (see training/cli.py), read this way:
"coordinator" names the label holder (one of "parties", it drives the protocol), and
"servers"[0] is the dealer.  Every role talks over `NetworkTransport`, mutual TLS by
default (plaintext only with an explicit --insecure).

    ppxgb vfederation --data clinic.csv lab.csv insurer.csv --id-column patient_id \\
        --label ms --label-party 0 --params '{"objective": "binary:logistic"}' --rounds 20 \\
        --out model.json

starts one process per party and one dealer on loopback with a throw-away test PKI,
aligns rows by PSI on --id-column, trains, and writes the model (only on success,
atomically).  If a role fails the others are stopped and the error names it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from ppxgb.errors import ParameterError

from .cli import (Peers, _Child, _federation_finish, _federation_plan, _json_arg, _net_options, _progress_for,
                  _role_options, _run_role, _stop, write_atomic)


def load_block(path: str):
    """A party's columns: a CSV with a header (empty cells are NaN) or an .npz with X
    (and optionally y and ids)."""
    if not os.path.isfile(path):
        raise ParameterError.bad("--data", "an existing CSV or .npz file", path)
    import pandas as pd

    if path.endswith(".npz"):
        with np.load(path, allow_pickle=False) as npz:
            if "X" not in npz:
                raise ParameterError.bad("--data", "an .npz with an array 'X'", sorted(npz.files))
            X = np.asarray(npz["X"], dtype=np.float64)
            frame = pd.DataFrame(X, columns=[f"{Path(path).stem}_{j}" for j in range(X.shape[1])])
            if "ids" in npz:
                frame.insert(0, "ids", npz["ids"])
            if "y" in npz:
                frame["y"] = npz["y"]
            return frame
    return pd.read_csv(path)


def _split(frame, path: str, id_column: str | None, label: str | None, is_lh: bool):
    from .vertical_api import split_block
    return split_block(frame, 0, id_column, label if is_lh else None, is_lh)


def cmd_vparty(args: argparse.Namespace) -> int:
    from . import psi
    from .vertical import run_feature_holder, run_label_holder

    peers = Peers.load(args.peers)
    lh, dealer = peers.coordinator, (peers.servers or ["server-0"])[0]
    is_lh = args.name == lh
    if is_lh:
        if not args.label or args.params is None or args.rounds is None or not args.out:
            raise ParameterError("vparty: the label holder needs --label, --params, --rounds and --out")
        params = _json_arg(args.params, "--params")
        out = Path(args.out)
        if not out.parent.is_dir():
            raise ParameterError.bad("--out", "a path in an existing directory", str(out))
    frame = load_block(args.data)

    def body(transport, peers):
        X, names, ids, y = _split(frame, args.data, args.id_column, args.label, is_lh)
        others = [q for q in peers.parties if q != lh]
        if is_lh:
            if args.id_column:
                order, _ = psi.run_psi_leader(transport, args.name, others, ids, timeout=args.step_timeout)
                X, y = X.iloc[order], np.asarray(y)[order]
            model = run_label_holder(transport, args.name, X, y, params, args.rounds, parties=peers.parties,
                                     dealer=dealer, feature_names=names, progress=_progress_for(args.progress),
                                     timeout=args.step_timeout)
            write_atomic(out, json.dumps(model.to_xgboost_json()).encode())
        else:
            if args.id_column:
                order = psi.run_psi_follower(transport, args.name, lh, ids, timeout=args.step_timeout)
                X = X.iloc[order]
            run_feature_holder(transport, args.name, X, label_holder=lh, dealer=dealer, feature_names=names,
                               timeout=args.step_timeout)
    return _run_role(args, args.name, body)


def cmd_vdealer(args: argparse.Namespace) -> int:
    from .vertical import run_dealer

    def body(transport, peers):
        run_dealer(transport, args.name, label_holder=peers.coordinator, timeout=args.step_timeout)
    return _run_role(args, args.name, body)


def cmd_vfederation(args: argparse.Namespace) -> int:
    from .vertical import role_names

    params = _json_arg(args.params, "--params")
    out = Path(args.out)
    if not out.parent.is_dir():
        raise ParameterError.bad("--out", "a path in an existing directory", str(out))
    if out.exists() and not args.overwrite:
        raise ParameterError.bad("--out", "a path that does not exist yet (or --overwrite)", str(out))
    for path in args.data:
        if not os.path.isfile(path):
            raise ParameterError.bad("--data", "existing CSV or .npz files", path)
    parties, lh, dealer = role_names(len(args.data), args.label_party, args.servers)
    servers = [dealer]                      # the protocol needs only the dealer
    roles = [*parties, *servers]
    workdir = Path(tempfile.mkdtemp(prefix="ppxgb-vfederation-"))
    started = time.monotonic()
    children: list[_Child] = []
    try:
        tls, common, model_tmp, show, base = _federation_plan(args, parties, servers, lh, roles, workdir)
        argvs: dict[str, list[str]] = {}
        for name, path in zip(parties, args.data):
            argvs[name] = base + ["vparty", "--name", name, "--data", str(Path(path).resolve())] + common
            if args.id_column:
                argvs[name] += ["--id-column", args.id_column]
            if name == lh:
                argvs[name] += ["--label", args.label or "", "--params", json.dumps(params),
                                "--rounds", str(args.rounds), "--out", str(model_tmp), "--progress", show]
        argvs[dealer] = base + ["vdealer", "--name", dealer] + common
        for name in roles:
            argvs[name] += ["--report", str(workdir / f"report-{name}.json")]
            children.append(_Child(name, argvs[name], raw=(name == lh)))
        return _federation_finish(args, "vfederation", children, lh, "label holder", roles, workdir,
                                  model_tmp, out, started, tls, {"parties": len(parties), "label_party": args.label_party},
                                  f"{len(parties)} parties and a dealer")
    except BaseException:
        _stop(children)
        raise
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def register(subparsers) -> None:
    p = subparsers.add_parser("vparty", help="run a party of vertical training (label or feature holder)")
    _role_options(p)
    p.add_argument("--data", required=True, help="this party's columns: CSV with a header, or .npz")
    p.add_argument("--id-column", help="align rows with the other parties by PSI on this column")
    p.add_argument("--label", help="label column (label holder only)")
    p.add_argument("--params", help="XGBoost parameters as JSON or @file (label holder only)")
    p.add_argument("--rounds", type=int, help="number of boosting rounds (label holder only)")
    p.add_argument("--out", help="model file, written only on success (label holder only)")
    p.add_argument("--progress", choices=("auto", "bar", "lines", "off"), default="auto")
    p.set_defaults(func=cmd_vparty)

    p = subparsers.add_parser("vdealer", help="run the dealer of correlated randomness (vertical training)")
    _role_options(p)
    p.set_defaults(func=cmd_vdealer)

    p = subparsers.add_parser("vfederation",
                              help="simulate vertical training on loopback, every role a separate process")
    p.add_argument("--data", nargs="+", required=True, help="one CSV or .npz per party, in party order")
    p.add_argument("--id-column", help="patient-ID column present in every file (rows aligned by PSI)")
    p.add_argument("--label", help="label column of the label party's file")
    p.add_argument("--label-party", type=int, default=0, help="index of the label holder in --data")
    p.add_argument("--servers", type=int, default=2, help="compute servers available (server-0 is the dealer)")
    p.add_argument("--params", required=True, help="XGBoost parameters as JSON (or @file)")
    p.add_argument("--rounds", type=int, required=True, help="number of boosting rounds")
    p.add_argument("--out", required=True, help="model file (XGBoost JSON), written only on success")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.add_argument("--certs", metavar="DIR", help="directory with ca.pem and NAME.pem/NAME.key per role")
    p.add_argument("--host", default="127.0.0.1", help="loopback address to listen on")
    p.add_argument("--progress", choices=("auto", "bar", "lines", "off"), default="auto")
    p.add_argument("--report", metavar="FILE", help="write a JSON summary here")
    _net_options(p)
    p.set_defaults(func=cmd_vfederation)

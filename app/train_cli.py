"""`ppxgb party | server | coordinator | federation`: horizontal training as OS processes.

Each role runs in its own process and talks over `NetworkTransport` (mutual TLS by
default); every role reads the same PEERS.json (format in app/deploy.py).

`ppxgb federation` simulates a whole federation on loopback: it writes a PEERS.json with
free ports and a throw-away test PKI, starts every role with `python -m ppxgb.app.cli`,
relays their output, and writes the model only if every role succeeded. If a role
fails, the rest are stopped and the error names the role that failed.

Model files are written atomically (ppxgb.files.write_atomic), and only on success, so
a failed run never leaves a partial model.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ppxgb.errors import ParameterError

from .evaluation_cli import add_eval_options, check_eval_data, cli_evaluation, eval_flags, model_text
from .deploy import (add_categorical_option, Peers, Plan, add_dp_options, add_federation_options, add_role_options, check_params, column_difference,
                     dp_summary,
                     load_data, output_path, plural, progress_for, run_federation, run_role,
                     write_atomic)


def cmd_party(args: argparse.Namespace) -> int:
    from ppxgb.training.horizontal import run_party

    X, y = load_data(args.data, args.label, args.categorical)    # a bad data file fails before any connection
    evals = {"valid": load_data(args.eval_data, args.label)} if args.eval_data else None

    def body(transport, peers):
        run_party(transport, args.name, X, y, servers=peers.servers,
                  coordinator=peers.coordinator, timeout=args.step_timeout, evals=evals)
    return run_role(args, args.name, body)


def cmd_server(args: argparse.Namespace) -> int:
    from ppxgb.training.horizontal import run_server

    def body(transport, peers):
        run_server(transport, args.name, parties=peers.parties, coordinator=peers.coordinator,
                   timeout=args.step_timeout)
    return run_role(args, args.name, body)


def cmd_coordinator(args: argparse.Namespace) -> int:
    from ppxgb.training.horizontal import run_coordinator

    params = check_params(args.params, args)
    if args.rounds < 0:
        raise ParameterError.bad("--rounds", "an int >= 0", args.rounds)
    names = [n for n in args.feature_names.split(",")] if args.feature_names else None
    out = output_path(args.out)
    evaluation = cli_evaluation(params, args.eval, args.early_stopping_rounds)

    def body(transport, peers):
        if transport.me != peers.coordinator:
            raise ParameterError.bad("--name", f"the coordinator {peers.coordinator!r}", transport.me)
        model = run_coordinator(transport, params, args.rounds, parties=peers.parties,
                                servers=peers.servers, progress=progress_for(args.progress),
                                timeout=args.step_timeout, feature_names=names, evaluation=evaluation)
        write_atomic(out, model_text(model, evaluation))
        line = dp_summary(json.dumps(model.to_xgboost_json()))
        if line:
            print(f"ppxgb coordinator: {line}", flush=True)
    args.name = args.name or Peers.load(args.peers).coordinator
    return run_role(args, args.name, body)


def cmd_federation(args: argparse.Namespace) -> int:
    from ppxgb.training.horizontal import role_names

    # every check the Python API makes, once and before any process starts
    json_params = json.dumps(check_params(args.params, args))
    if args.rounds < 0:
        raise ParameterError.bad("--rounds", "an int >= 0", args.rounds)
    output_path(args.out, overwrite=args.overwrite)
    names = None
    for i, path in enumerate(args.data):
        X, _ = load_data(path, args.label, args.categorical)    # readable, has rows
        columns = [str(c) for c in X.columns] if hasattr(X, "columns") else X.shape[1]
        kinds = [str(X[c].dtype) == "category" for c in X.columns] if hasattr(X, "columns") else None
        if i == 0:
            first, first_kinds = columns, kinds
            names = columns if isinstance(columns, list) else None
        elif columns != first:
            if isinstance(columns, list) and isinstance(first, list):
                raise ParameterError(column_difference(path, columns, args.data[0], first))
            raise ParameterError.bad("--data", f"{first} feature columns as in {args.data[0]}",
                                     f"{path}: {columns}")
        elif kinds != first_kinds:      # text here, numbers in the first file (or the reverse)
            c = next(c for c, a, b in zip(columns, kinds, first_kinds) if a != b)
            text, numeric = (path, args.data[0]) if kinds[columns.index(c)] else (args.data[0], path)
            raise ParameterError(f"--data: {text}: column {c!r} is not numeric there but numeric in {numeric}; "
                                 f"fix its values, or name it in --categorical to train it as categorical")
    parties, servers, coordinator = role_names(len(args.data), args.servers)
    eval_data = check_eval_data(args.eval_data, args.data, args.early_stopping_rounds)
    for path in eval_data:
        load_data(path, args.label)

    def argvs(plan: Plan) -> dict[str, list[str]]:
        out = {coordinator: plan.base + ["coordinator", "--name", coordinator, "--params", json_params,
                                         "--rounds", str(args.rounds), "--out", str(plan.model_tmp),
                                         "--progress", plan.progress] + plan.common}
        if names is not None:
            out[coordinator] += ["--feature-names", ",".join(names)]
        if eval_data:
            out[coordinator] += ["--eval"] + eval_flags(args.early_stopping_rounds)
        for i, (name, path) in enumerate(zip(parties, args.data)):
            out[name] = plan.base + ["party", "--name", name, "--data", str(Path(path).resolve())] + plan.common
            if args.categorical:
                out[name] += ["--categorical", args.categorical]
            if args.label:
                out[name] += ["--label", args.label]
            if eval_data:
                out[name] += ["--eval-data", str(Path(eval_data[i]).resolve())]
        for name in servers:
            out[name] = plan.base + ["server", "--name", name] + plan.common
        return out

    return run_federation(args, "federation", parties, servers, coordinator, "coordinator", argvs,
                          {"parties": len(parties), "servers": len(servers)},
                          f"{plural(len(parties), 'party', 'parties')}, {plural(len(servers), 'server')}")


def register(subparsers) -> None:
    p = subparsers.add_parser("party", help="run a data party (hospital) of horizontal training")
    add_role_options(p)
    p.add_argument("--data", required=True, help="this party's rows: CSV with a header, or .npz with X, y")
    p.add_argument("--label", help="label column of the CSV")
    add_categorical_option(p)
    p.add_argument("--eval-data", help="this party's validation rows (same format and label column); they stay "
                                       "here, only metric statistics are shared (the coordinator needs --eval)")
    p.set_defaults(func=cmd_party)

    p = subparsers.add_parser("server", help="run a compute server of horizontal training")
    add_role_options(p)
    p.set_defaults(func=cmd_server)

    p = subparsers.add_parser("coordinator", help="drive horizontal training and write the model")
    add_role_options(p, name_required=False)
    p.add_argument("--params", required=True, help="XGBoost parameters as JSON (or @file)")
    p.add_argument("--rounds", type=int, required=True, help="number of boosting rounds")
    p.add_argument("--out", required=True, help="model file (XGBoost JSON), written only on success")
    p.add_argument("--feature-names", help="comma-separated feature names to store in the model")
    p.add_argument("--eval", action="store_true",
                   help="score every party's --eval-data after each round (eval set 'valid')")
    add_eval_options(p, "the parties' validation rows")
    add_dp_options(p)
    p.add_argument("--progress", choices=("auto", "bar", "lines", "off"), default="auto",
                   help="per-round progress on stderr (auto: only on a terminal)")
    p.set_defaults(func=cmd_coordinator)

    p = subparsers.add_parser(
        "federation", help="simulate a whole federation on loopback, every role a separate process")
    p.add_argument("--data", nargs="+", required=True, help="one CSV or .npz per party")
    p.add_argument("--label", help="label column of the CSVs")
    add_categorical_option(p)
    p.add_argument("--servers", type=int, default=2, help="number of compute servers, 2..4 (default 2)")
    p.add_argument("--eval-data", nargs="+", help="one validation CSV or .npz per party, in --data order")
    add_eval_options(p, "the --eval-data rows")
    add_federation_options(p)
    p.add_argument("--verbose", action="store_true", help="print each role's process id as it starts")
    p.set_defaults(func=cmd_federation)

"""`ppxgb oblivious-role | oblivious-federation`: oblivious training as OS processes.

Same PEERS.json as the other federations (app/deploy.py), read this way: "coordinator"
is the analyst (it drives the run and writes the model), "parties" the data owners and
"servers" the two compute servers and the dealer, named server-0, server-1 and dealer.
Every role talks over `NetworkTransport`, mutual TLS by default.

    ppxgb oblivious-federation --data a.csv b.csv --label y \\
        --params '{"objective": "binary:logistic", "max_depth": 4}' --rounds 5 --out model.json

starts one process per party, both servers, the dealer and the analyst on loopback with
a throw-away test PKI.  Rows split across the parties by default; with --partition
vertical each file holds other columns of the same rows (aligned row by row), and the
label column is in the file of --label-party.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ppxgb.errors import ParameterError

from .deploy import (Plan, add_categorical_option, add_federation_options, add_role_options, categorize, check_params,
                     load_block, load_data, output_path, plural, run_federation, run_role, write_atomic)


def load_party(path: str, label: str | None, vertical: bool, categorical: str | None = None):
    """(X, y) of one party: y None for a vertical party without the label column.  The
    columns named in `categorical` (and text columns) come back as category columns."""
    if not vertical:
        return load_data(path, label, categorical)
    frame = load_block(path)
    if label and label not in frame.columns:
        raise ParameterError.bad("--label", f"one of the columns of {path}", label)
    X = categorize(frame.drop(columns=[label] if label else []), categorical, path, named_elsewhere=True)
    return X, (frame[label].to_numpy() if label else None)


def cmd_role(args: argparse.Namespace) -> int:
    from ppxgb.training.oblivious import api, dealer, roles, server, stages

    name = args.name
    if name == stages.ANALYST:
        params = check_params(args.params, args)
        api.check_params(params)
        out = output_path(args.out)

        def body(transport, peers):
            model = roles.run_analyst(transport, params, args.rounds, parties=peers.parties,
                                      partition=args.partition, label_party=args.label_party,
                                      timeout=args.step_timeout)
            write_atomic(out, json.dumps(model.to_xgboost_json()))
    elif name in stages.SERVERS:
        def body(transport, peers):
            server.run_server(transport, stages.SERVERS.index(name), parties=peers.parties,
                              timeout=args.step_timeout)
    elif name == stages.DEALER:
        def body(transport, peers):
            dealer.run_dealer(transport, name, servers=stages.SERVERS, analyst=stages.ANALYST,
                              timeout=args.step_timeout)
    else:
        if not args.data:
            raise ParameterError.bad("--data", f"the rows of party {name!r}", None)
        X, y = load_party(args.data, args.label, args.partition == "vertical", args.categorical)
        X = api.check_matrix(X, args.data)

        def body(transport, peers):
            roles.run_party(transport, name, X, y, timeout=args.step_timeout)
    return run_role(args, name, body)


def cmd_federation(args: argparse.Namespace) -> int:
    from ppxgb.training.oblivious import api, stages

    params = check_params(args.params, args)
    api.check_params(params)
    json_params = json.dumps(params)
    if args.rounds < 0:
        raise ParameterError.bad("--rounds", "an int >= 0", args.rounds)
    output_path(args.out, overwrite=args.overwrite)
    vertical = args.partition == "vertical"
    if vertical and not 0 <= args.label_party < len(args.data):
        raise ParameterError.bad("--label-party", f"an index into --data, 0..{len(args.data) - 1}", args.label_party)
    rows = set()
    for i, path in enumerate(args.data):
        X, _ = load_party(path, args.label if not vertical or i == args.label_party else None, vertical,
                          args.categorical)
        rows.add(len(api.check_matrix(X, path)))
    if vertical and len(rows) != 1:
        raise ParameterError.bad("--data", "files with the same number of rows (vertical: aligned rows)",
                                 sorted(rows))
    parties = stages.party_names(len(args.data))
    labelled = [not vertical or i == args.label_party for i in range(len(parties))]
    servers = [*stages.SERVERS, stages.DEALER]

    def argvs(plan: Plan) -> dict[str, list[str]]:
        where = ["--partition", args.partition]
        out = {stages.ANALYST: plan.base + ["oblivious-role", "--name", stages.ANALYST, "--params", json_params,
                                            "--rounds", str(args.rounds), "--out", str(plan.model_tmp),
                                            "--label-party", str(args.label_party)] + where + plan.common}
        for name, path, has in zip(parties, args.data, labelled):
            out[name] = plan.base + ["oblivious-role", "--name", name, "--data", str(Path(path).resolve())] \
                + (["--label", args.label] if args.label and has else []) \
                + (["--categorical", args.categorical] if args.categorical else []) + where + plan.common
        for name in servers:
            out[name] = plan.base + ["oblivious-role", "--name", name] + plan.common
        return out

    return run_federation(args, "oblivious-federation", parties, servers, stages.ANALYST, "analyst", argvs,
                          {"parties": len(parties), "servers": 2},
                          f"{plural(len(parties), 'party', 'parties')}, 2 servers and a dealer")


def register(subparsers) -> None:
    p = subparsers.add_parser("oblivious-role", help="run one role of oblivious training (party-i, server-0, "
                                                     "server-1, dealer or analyst)")
    add_role_options(p)
    p.add_argument("--data", help="a party's rows: CSV with a header, or .npz with X, y")
    p.add_argument("--label", help="label column of the CSV")
    p.add_argument("--params", help="the analyst's XGBoost parameters as JSON (or @file)")
    p.add_argument("--rounds", type=int, default=10, help="the analyst's number of boosting rounds")
    p.add_argument("--out", help="the analyst's model file (XGBoost JSON), written only on success")
    add_partition_options(p)
    add_categorical_option(p)
    p.set_defaults(func=cmd_role)

    p = subparsers.add_parser("oblivious-federation",
                              help="simulate oblivious training on loopback, every role a separate process")
    p.add_argument("--data", nargs="+", required=True, help="one CSV or .npz per party (rows split)")
    p.add_argument("--label", help="label column of the CSVs (vertical: of the --label-party file)")
    add_partition_options(p)
    add_categorical_option(p)
    add_federation_options(p)
    p.set_defaults(func=cmd_federation)


def add_partition_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--partition", choices=("horizontal", "vertical"), default="horizontal",
                   help="rows split across the parties, or columns of the same rows")
    p.add_argument("--label-party", type=int, default=0, help="vertical: the party whose file holds the label")

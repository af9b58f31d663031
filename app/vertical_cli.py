"""`ppxgb vparty | vdealer | vfederation`: vertical training as OS processes.

Same PEERS.json as horizontal training (app/deploy.py), read this way: "coordinator"
names the label holder (one of "parties", it drives the protocol), and "servers"[0] is
the dealer.  Every role talks over `NetworkTransport`, mutual TLS by default (plaintext
only with an explicit --insecure).

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
from pathlib import Path

import numpy as np

from ppxgb.errors import ParameterError

from .evaluation_cli import add_eval_options, check_eval_data, cli_evaluation, eval_flags, model_text
from .deploy import (Peers, Plan, add_categorical_option, add_dp_options, add_federation_options, add_role_options,
                     categorize,
                     check_params, dp_summary, load_block, output_path, plural, progress_for, run_federation, run_role, write_atomic)


def cmd_vparty(args: argparse.Namespace) -> int:
    from ppxgb.training.vertical import psi, run_feature_holder, run_label_holder, split_block

    peers = Peers.load(args.peers)
    lh, dealer = peers.coordinator, (peers.servers or ["server-0"])[0]
    is_lh = args.name == lh
    if is_lh:
        if not args.label or args.params is None or args.rounds is None or not args.out:
            raise ParameterError("vparty: the label holder needs --label, --params, --rounds and --out")
        params = check_params(args.params, args)
        out = output_path(args.out)
    frame = categorize(load_block(args.data), args.categorical, args.data, keep=(args.id_column, args.label),
                       named_elsewhere=True)    # the data file is checked before any connection
    X, names, ids, y = split_block(frame, 0, args.id_column, args.label if is_lh else None, is_lh)
    Xv = yv = ids_v = None
    if args.eval_data:                       # validation columns: same layout as --data
        Xv, _, ids_v, yv = split_block(load_block(args.eval_data), 0, args.id_column,
                                       args.label if is_lh else None, is_lh)
    evaluation = cli_evaluation(params, bool(args.eval_data), args.early_stopping_rounds) if is_lh else None

    def body(transport, peers):
        nonlocal X, y, Xv, yv
        others = [q for q in peers.parties if q != lh]
        if is_lh:
            if args.id_column:
                order, _ = psi.run_psi_leader(transport, args.name, others, ids, timeout=args.step_timeout,
                                              protocol=args.psi)
                X, y = X.iloc[order], np.asarray(y)[order]
                if args.eval_data:
                    order, _ = psi.run_psi_leader(transport, args.name, others, ids_v, timeout=args.step_timeout,
                                                  protocol=args.psi)
                    Xv, yv = Xv.iloc[order], np.asarray(yv)[order]
            evals = [("valid", Xv, yv, None)] if args.eval_data else None
            model = run_label_holder(transport, args.name, X, y, params, args.rounds, parties=peers.parties,
                                     dealer=dealer, feature_names=names, progress=progress_for(args.progress),
                                     timeout=args.step_timeout, evals=evals, evaluation=evaluation)
            write_atomic(out, model_text(model, evaluation))
            line = dp_summary(json.dumps(model.to_xgboost_json()))
            if line:
                print(f"ppxgb vparty: {line}", flush=True)
        else:
            if args.id_column:
                order = psi.run_psi_follower(transport, args.name, lh, ids, timeout=args.step_timeout)
                X = X.iloc[order]
                if args.eval_data:
                    Xv = Xv.iloc[psi.run_psi_follower(transport, args.name, lh, ids_v, timeout=args.step_timeout)]
            run_feature_holder(transport, args.name, X, label_holder=lh, dealer=dealer, feature_names=names,
                               timeout=args.step_timeout, evals={"valid": Xv} if args.eval_data else None)
    return run_role(args, args.name, body)


def cmd_vdealer(args: argparse.Namespace) -> int:
    from ppxgb.training.vertical import run_dealer

    def body(transport, peers):
        run_dealer(transport, args.name, label_holder=peers.coordinator, timeout=args.step_timeout)
    return run_role(args, args.name, body)


def cmd_vfederation(args: argparse.Namespace) -> int:
    from ppxgb.training.vertical import role_names

    # every check the Python API makes, once and before any process starts
    params = check_params(args.params, args)
    if args.rounds < 0:
        raise ParameterError.bad("--rounds", "an int >= 0", args.rounds)
    output_path(args.out, overwrite=args.overwrite)
    if not 0 <= args.label_party < len(args.data):
        raise ParameterError.bad("--label-party", f"an index into --data, 0..{len(args.data) - 1}",
                                 args.label_party)
    for i, path in enumerate(args.data):
        frame = load_block(path)                      # readable and has rows
        drop = [c for c in (args.id_column, args.label if i == args.label_party else None) if c]
        for column in drop:
            if column not in frame.columns:
                flag = "--id-column" if column == args.id_column else "--label"
                raise ParameterError.bad(flag, f"a column of {path}", column)
        categorize(frame.drop(columns=drop), args.categorical, path, named_elsewhere=True)
    eval_data = check_eval_data(args.eval_data, args.data, args.early_stopping_rounds)
    for path in eval_data:
        load_block(path)
    parties, lh, dealer = role_names(len(args.data), args.label_party, args.servers)

    def argvs(plan: Plan) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for name, path in zip(parties, args.data):
            out[name] = plan.base + ["vparty", "--name", name, "--data", str(Path(path).resolve())] + plan.common
            if args.categorical:
                out[name] += ["--categorical", args.categorical]
            if args.id_column:
                out[name] += ["--id-column", args.id_column]
            if eval_data:
                out[name] += ["--eval-data", str(Path(eval_data[parties.index(name)]).resolve())]
                if name == lh:
                    out[name] += eval_flags(args.early_stopping_rounds)
            if name == lh:
                out[name] += ["--psi", args.psi, "--label", args.label or "", "--params", json.dumps(params),
                              "--rounds", str(args.rounds), "--out", str(plan.model_tmp),
                              "--progress", plan.progress]
        out[dealer] = plan.base + ["vdealer", "--name", dealer] + plan.common
        return out

    # the protocol needs only the dealer of the servers
    return run_federation(args, "vfederation", parties, [dealer], lh, "label holder", argvs,
                          {"parties": len(parties), "label_party": args.label_party},
                          f"{plural(len(parties), 'party', 'parties')} and a dealer")


def register(subparsers) -> None:
    p = subparsers.add_parser("vparty", help="run a party of vertical training (label or feature holder)")
    add_role_options(p)
    p.add_argument("--data", required=True, help="this party's columns: CSV with a header, or .npz")
    p.add_argument("--id-column", help="align rows with the other parties by PSI on this column")
    p.add_argument("--psi", choices=("auto", "ecdh", "oprf"), default="auto",
                   help="PSI protocol, chosen by the label holder (auto: OPRF when a party holds 1,000 IDs, else Diffie-Hellman)")
    p.add_argument("--label", help="label column (label holder only)")
    add_categorical_option(p)
    p.add_argument("--params", help="XGBoost parameters as JSON or @file (label holder only)")
    p.add_argument("--rounds", type=int, help="number of boosting rounds (label holder only)")
    p.add_argument("--out", help="model file, written only on success (label holder only)")
    p.add_argument("--progress", choices=("auto", "bar", "lines", "off"), default="auto",
                   help="per-round progress on stderr, label holder only (auto: only on a terminal)")
    p.add_argument("--eval-data", help="this party's validation columns, laid out as --data (the label holder's "
                                       "with the label column); every party gives one or none does")
    add_eval_options(p, "the validation rows (label holder only)")
    add_dp_options(p)
    p.set_defaults(func=cmd_vparty)

    p = subparsers.add_parser("vdealer", help="run the dealer of correlated randomness (vertical training)")
    add_role_options(p)
    p.set_defaults(func=cmd_vdealer)

    p = subparsers.add_parser("vfederation",
                              help="simulate vertical training on loopback, every role a separate process")
    p.add_argument("--data", nargs="+", required=True, help="one CSV or .npz per party, in party order")
    p.add_argument("--id-column", help="patient-ID column present in every file (rows aligned by PSI)")
    p.add_argument("--psi", choices=("auto", "ecdh", "oprf"), default="auto",
                   help="PSI protocol (auto: OPRF when a party holds 1,000 IDs, else Diffie-Hellman)")
    p.add_argument("--label", help="label column of the label party's file")
    p.add_argument("--label-party", type=int, default=0, help="index of the label holder in --data")
    add_categorical_option(p)
    p.add_argument("--servers", type=int, default=2, help="compute servers available (server-0 is the dealer)")
    p.add_argument("--eval-data", nargs="+", help="one validation file per party, in --data order and layout")
    add_eval_options(p, "the --eval-data rows")
    add_federation_options(p)
    p.set_defaults(func=cmd_vfederation)

"""`ppxgb scoring-server` and `ppxgb score` (the client app) over ppxgb.inference.

    ppxgb scoring-server --db sqlite:///models.db --admin-token-file server.token \
        --tls-cert cert.pem --tls-key key.pem [--host 127.0.0.1 --port 8443] [--workers N]
        (--db postgresql+psycopg://user:password@host:5432/dbname for PostgreSQL)
    ppxgb score --keys alice.key --token-file alice.token --server-url https://host:8443 \
        --input patients.csv [--output scores.csv] [--output-margin] [--ca-cert ca.pem]

The client app reads rows from CSV (header row of feature names, empty cell or NaN for
missing) or JSON (a list of objects keyed by feature name, or a list of lists; null
for missing), encrypts them, scores them on the server, decrypts, and prints the
predictions or writes them as CSV or JSON (by the output file's extension), owner-only
(0600): scores are the user's private results.  A categorical feature (the key file
records which) is read as category values when the key file holds the model's
category list (text, as written in the training data), else as integer codes.
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np

from ppxgb.errors import ParameterError, PeerFailure
from ppxgb.files import write_atomic
from ppxgb.wire import MSGPACK, check_tls, http_client, read_private_file, read_token, run_service

from .deploy import announce_when_ready, secret_file


def register(subparsers) -> None:
    p = subparsers.add_parser("scoring-server", help="run the encrypted-inference scoring server")
    p.add_argument("--db", default="sqlite:///ppxgb-models.db",
                   help="SQLAlchemy URL of the model store: sqlite:///path.db, or "
                        "postgresql+psycopg://user:password@host:5432/dbname")
    p.add_argument("--admin-token-file", required=True, help="token that authorises model uploads (0600)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--port", type=int, default=8443, help="port to listen on")
    p.add_argument("--tls-cert", help="the server's TLS certificate (PEM; e.g. from ppxgb certs)")
    p.add_argument("--tls-key", help="the server's TLS private key (PEM, 0600)")
    p.add_argument("--insecure-http", action="store_true", help="serve plain HTTP (loopback only)")
    p.add_argument("--workers", type=int, default=1, help="uvicorn worker processes sharing --db")
    p.add_argument("--cache-mb", type=float, default=1024.0,
                   help="memory per worker for compiled models (least recently used dropped first)")
    p.add_argument("--pair-table-mb", type=float, default=512.0,
                   help="memory for leaf-pair product tables, shared by all models; they halve the "
                        "scoring work (about 90 MB per 100-tree model at 2048-bit keys; default 512, 0 = off)")
    p.set_defaults(func=_serve)

    p = subparsers.add_parser("score", help="client app: encrypt rows, score them remotely, decrypt")
    p.add_argument("--keys", required=True, help="your key file from the proxy (0600)")
    p.add_argument("--token-file", required=True, help="your access token (0600)")
    p.add_argument("--server-url", required=True, help="the scoring server (https://host:port)")
    p.add_argument("--input", required=True, help="rows as .csv or .json")
    p.add_argument("--output", help="write .csv or .json here instead of printing")
    p.add_argument("--output-margin", action="store_true", help="margins instead of predictions")
    p.add_argument("--batch-size", type=int, default=1000, help="rows per scoring request")
    p.add_argument("--missing", type=float, default=float("nan"),
                   help="a value that means missing besides empty/NaN (as xgboost.DMatrix(missing=))")
    p.add_argument("--ca-cert", help="CA bundle to verify the server's certificate")
    p.add_argument("--insecure-http", action="store_true", help="allow http:// (loopback testing only)")
    p.set_defaults(func=_score)


def _serve(args) -> int:
    from ppxgb.inference import app as service
    from ppxgb.inference.store import ModelStore

    if args.workers < 1:
        raise ParameterError.bad("--workers", "an integer >= 1", args.workers)
    check_tls(args.host, args.tls_cert, args.tls_key, args.insecure_http)
    read_token(secret_file(args.admin_token_file, "--admin-token-file"))   # fail here, not in every worker
    ModelStore(args.db).engine.dispose()       # the URL works and the table exists
    # each worker process builds its own app from these (uvicorn calls the factory)
    os.environ.update({service.ENV_DB: args.db, service.ENV_ADMIN_TOKEN_FILE: args.admin_token_file,
                       service.ENV_PAIR_TABLE_MB: str(args.pair_table_mb),
                       service.ENV_CACHE_MB: str(args.cache_mb)})
    announce_when_ready("scoring-server", args.host, args.port, not args.insecure_http)
    run_service("ppxgb.inference.app:app_from_env", args.host, args.port, args.tls_cert, args.tls_key,
                args.insecure_http, workers=args.workers)
    return 0


def _reject_constant(name: str):
    """JSON's NaN/Infinity literals are not valid input: missing is written as null."""
    raise ParameterError.bad("--input", "numbers, or null for missing", name)


def read_rows(path: str, feature_names, n_features: int, feature_types=None, categories=None):
    """Rows from CSV or JSON as float64 with NaN for missing; columns by name if named.
    With categorical features (feature_types "c") that have a category list, a
    DataFrame whose categorical columns hold the category values (object dtype)."""
    import pandas as pd

    ext = os.path.splitext(path)[1].lower()
    listed = [j for j, t in enumerate(feature_types or ()) if t == "c" and categories and categories[j] is not None]
    try:
        if ext == ".csv":
            frame = pd.read_csv(path, dtype=str if listed else None, keep_default_na=True)
        elif ext == ".json":
            with open(path) as fh:
                doc = json.load(fh, parse_constant=_reject_constant)
            if not isinstance(doc, list) or not doc:
                raise ParameterError.bad(path, "a non-empty JSON list of rows", type(doc).__name__)
            frame = pd.DataFrame(doc) if isinstance(doc[0], dict) else pd.DataFrame(doc)
        else:
            raise ParameterError.bad("--input", "a .csv or .json file", path)
    except (OSError, ValueError) as exc:
        if isinstance(exc, ParameterError):
            raise
        raise ParameterError.bad(path, "a readable CSV or JSON file of rows", str(exc)[:200]) from None
    if len(frame) == 0:
        raise ParameterError.bad("--input", "at least one row to score", f"{path}: header only")
    if feature_names and all(isinstance(c, str) for c in frame.columns) and set(feature_names) <= set(frame.columns):
        frame = frame[list(feature_names)]
    elif frame.shape[1] != n_features:
        raise ParameterError.bad(path, f"{n_features} feature columns", frame.shape[1])
    numeric = [c for j, c in enumerate(frame.columns) if j not in listed]
    try:
        values = frame[numeric].apply(pd.to_numeric, errors="raise").to_numpy(dtype=np.float64, na_value=np.nan)
    except (ValueError, TypeError):
        raise ParameterError.bad(path, "numeric cells (empty or NaN for missing)", "text") from None
    if np.isinf(values).any():
        raise ParameterError.bad(path, "finite values (empty or NaN for missing)", "inf")
    if not listed:
        return values
    out = frame.astype(object).where(frame.notna(), None)
    out[numeric] = values
    for j in listed:                       # a numeric category list: look values up as numbers
        if not all(isinstance(c, str) for c in categories[j]):
            number = pd.to_numeric(frame.iloc[:, j], errors="coerce")
            if (number.isna() & frame.iloc[:, j].notna()).any():
                raise ParameterError.bad(path, f"numbers in categorical column {frame.columns[j]!r} "
                                         "(its categories are numbers)", "text")
            out.iloc[:, j] = number.astype(object)
    return out


def write_predictions(pred: np.ndarray, path: str | None) -> None:
    rows = pred.reshape(pred.shape[0], -1)
    header = ["prediction"] if rows.shape[1] == 1 else [f"class_{k}" for k in range(rows.shape[1])]
    if path and path.lower().endswith(".json"):
        text = json.dumps(rows[:, 0].tolist() if rows.shape[1] == 1 else rows.tolist())
    else:
        lines = [",".join(header)] + [",".join(repr(float(v)) for v in r) for r in rows]
        text = "\n".join(lines) + "\n"
    if path:
        write_atomic(path, text, mode=0o600)
    else:
        sys.stdout.write(text)


def _score(args) -> int:
    from ppxgb.formats import EncryptedScores, UserKeys

    from ppxgb.inference import Client

    if args.batch_size < 1:
        raise ParameterError.bad("--batch-size", "a positive integer", args.batch_size)
    for flag, path, out in (("--keys", args.keys, "--key-out"), ("--token-file", args.token_file, "--token-out")):
        if not os.path.isfile(path):
            raise ParameterError(f"{flag}: {path!r} does not exist; the proxy issues it: "
                                 f"`ppxgb proxy enroll --user YOU --model ... {out} {path}`")
    keys = UserKeys.from_bytes(read_private_file(args.keys))
    token = read_token(args.token_file)
    client = Client(keys, missing=args.missing)
    X = read_rows(args.input, keys.feature_names, keys.n_features, keys.feature_types, keys.categories)
    rows = X.iloc if hasattr(X, "iloc") else X          # positional row slices either way
    out = []
    with http_client(args.server_url, args.ca_cert, args.insecure_http, token) as http:
        for start in range(0, X.shape[0], args.batch_size):
            queries = client.encrypt(rows[start:start + args.batch_size])
            try:
                r = http.post(f"/v1/models/{keys.model_id}/predict", content=queries.to_bytes(),
                              headers={"content-type": MSGPACK})
            except Exception as exc:
                raise PeerFailure("scoring server", str(exc)) from None
            if r.status_code != 200:
                try:
                    detail = r.json().get("detail")
                except ValueError:
                    detail = r.text[:200]
                raise PeerFailure("scoring server", f"{r.status_code}: {detail}")
            out.append(client.decrypt(EncryptedScores.from_bytes(r.content), output_margin=args.output_margin))
    write_predictions(np.concatenate(out), args.output)
    return 0

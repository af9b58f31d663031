"""`ppxgb proxy ...`: the trusted proxy's commands (over ppxgb.proxy).

    ppxgb proxy new-secret --out FILE            a token or master key, mode 0600
    ppxgb proxy enroll --model model.json --user alice --server-url https://... \
        --server-admin-token-file server.token --key-out alice.key [--token-out alice.token]
    ppxgb proxy enroll --proxy-url https://... --admin-token-file proxy.token \
        --model NAME --user alice --key-out alice.key       (through a running proxy service)
    ppxgb proxy serve --model NAME=model.json --server-url https://... \
        --server-admin-token-file server.token --admin-token-file proxy.token \
        --keystore DIR --master-key-file master.key --tls-cert c.pem --tls-key k.pem [--workers N] [--key-pool N]
"""

from __future__ import annotations

import base64
import os
import sys

from ppxgb.errors import ParameterError, PeerFailure, PPXGBError
from ppxgb.files import write_private_file
from ppxgb.formats import UserKeys
from ppxgb.model import Ensemble
from ppxgb.wire import http_client, new_token, read_token, run_service

from .deploy import announce_when_ready, secret_file


def register(subparsers) -> None:
    proxy = subparsers.add_parser("proxy", help="the trusted proxy: issue keys and encrypted models")
    sub = proxy.add_subparsers(dest="proxy_command", metavar="ACTION")
    sub.required = True

    p = sub.add_parser("new-secret", help="write a fresh access token or master key (mode 0600)")
    p.add_argument("--out", required=True, help="the file to create (mode 0600; must not exist)")
    p.add_argument("--kind", choices=["token", "master-key"], default="token",
                   help="an access token, or a key store's master key")
    p.set_defaults(func=_new_secret)

    p = sub.add_parser("enroll", help="enrol a user: keys to a 0600 file, encrypted model to the server")
    p.add_argument("--user", required=True, help="the user's id (one model per user)")
    p.add_argument("--model", required=True, help="model file (local mode) or model name (--proxy-url)")
    p.add_argument("--key-out", required=True, help="the user's key file (created with mode 0600)")
    p.add_argument("--token-out", help="write the access token here (0600) instead of printing it")
    p.add_argument("--proxy-url", help="enrol through a running proxy service instead of locally")
    p.add_argument("--admin-token-file", help="the proxy service's admin token (with --proxy-url)")
    p.add_argument("--ca-cert", help="CA bundle to verify the proxy service's certificate")
    _server_link_args(p)
    p.add_argument("--key-bits", type=int, default=2048, choices=[2048, 3072], help="Paillier modulus size")
    p.add_argument("--scheme", choices=["ope", "ore"], default="ope",
                   help="threshold comparison: ope (default) or ore (hides values; docs/inference.md)")
    p.add_argument("--keystore", help="also seal the keys into this key store directory")
    p.add_argument("--master-key-file", help="the key store's master key (0600)")
    p.set_defaults(func=_enroll)

    p = sub.add_parser("serve", help="run the proxy's HTTP service")
    p.add_argument("--model", action="append", required=True, metavar="NAME=PATH",
                   help="a model users can be enrolled on (repeatable)")
    _server_link_args(p)
    p.add_argument("--admin-token-file", required=True,
                   help="token that authorises enrolments (0600; create it with ppxgb proxy new-secret)")
    p.add_argument("--keystore", required=True, help="directory of the sealed user keys")
    p.add_argument("--master-key-file", required=True,
                   help="the key store's master key (0600; ppxgb proxy new-secret --kind master-key)")
    p.add_argument("--key-bits", type=int, default=2048, choices=[2048, 3072], help="Paillier modulus size")
    p.add_argument("--scheme", choices=["ope", "ore"], default="ope",
                   help="threshold comparison: ope (default) or ore (hides values; docs/inference.md)")
    _serve_args(p, 8441)
    p.add_argument("--workers", type=int, default=1,
                   help="uvicorn worker processes sharing --keystore (each enrols independently)")
    p.add_argument("--key-pool", type=int, default=4,
                   help="users' Paillier key pairs (with encryption randomness) each worker keeps ready, "
                        "made in the background by a low-priority process; 0 generates every key inline")
    p.set_defaults(func=_serve)


def _server_link_args(p) -> None:
    p.add_argument("--server-url", help="the scoring server (https://host:port)")
    p.add_argument("--server-admin-token-file", help="the scoring server's admin token (0600)")
    p.add_argument("--server-ca", help="CA bundle to verify the scoring server's certificate")
    p.add_argument("--insecure-http", action="store_true", help="allow http:// (loopback testing only)")


def _serve_args(p, port: int) -> None:
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--port", type=int, default=port, help="port to listen on")
    p.add_argument("--tls-cert", help="the service's TLS certificate (PEM; e.g. from ppxgb certs)")
    p.add_argument("--tls-key", help="the service's TLS private key (PEM, 0600)")


def load_model(path: str, flag: str = "--model") -> Ensemble:
    """An XGBoost model file (.json or .ubj); anything else, a pickle included, is refused
    with one line (pickles are never loaded: they run code)."""
    from ppxgb.errors import FormatError

    if not os.path.isfile(path):
        raise ParameterError.bad(flag, "an existing XGBoost model file (.json or .ubj)", path)
    with open(path, "rb") as fh:
        head = fh.read(2)
    if head[:1] == b"\x80":
        raise ParameterError(f"{flag}: {path} looks like a Python pickle, which ppxgb never loads; "
                             "save the model with booster.save_model('model.json')")
    try:
        return Ensemble.load(path)
    except (FormatError, UnicodeDecodeError, ValueError) as exc:
        if isinstance(exc, PPXGBError) and "not an XGBoost model file" not in str(exc):
            raise                                   # a model, but one ppxgb cannot use: its own message
        raise ParameterError(f"{flag}: {path} is not an XGBoost model file; save one with "
                             "booster.save_model('model.json') (or .ubj)") from None


def _link(args):
    from ppxgb.proxy.service import ScoringServerLink

    if not args.server_url or not args.server_admin_token_file:
        raise ParameterError.bad("--server-url/--server-admin-token-file", "both", "missing")
    token = read_token(secret_file(args.server_admin_token_file, "--server-admin-token-file"))
    http_client(args.server_url, args.server_ca, args.insecure_http).close()   # check the URL policy now
    return ScoringServerLink(lambda: http_client(args.server_url, args.server_ca, args.insecure_http, token))


def _keystore(args):
    from ppxgb.proxy.keystore import KeyStore, load_master_key

    if bool(args.keystore) != bool(args.master_key_file):
        raise ParameterError.bad("--keystore/--master-key-file", "both or neither", "only one")
    if not args.keystore:
        return None
    return KeyStore(args.keystore, load_master_key(secret_file(args.master_key_file, "--master-key-file", "master-key")))


def _check_outputs(args) -> None:
    """Refuse unusable --key-out/--token-out before anything is enrolled: an enrollment
    stored on the server whose keys could not be handed out would be lost."""
    outs = [("--key-out", args.key_out)] + ([("--token-out", args.token_out)] if args.token_out else [])
    if args.token_out and os.path.abspath(args.token_out) == os.path.abspath(args.key_out):
        raise ParameterError.bad("--token-out", "a different file than --key-out", args.token_out)
    for flag, path in outs:
        if os.path.lexists(path):
            raise ParameterError.bad(flag, "a file that does not exist yet", path)
        parent = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(parent) or not os.access(parent, os.W_OK | os.X_OK):
            raise ParameterError.bad(flag, "a path in an existing writable directory", path)


def _hand_out(args, keys_bytes: bytes, token: str) -> None:
    UserKeys.from_bytes(keys_bytes)
    write_private_file(args.key_out, keys_bytes)
    if args.token_out:
        try:
            write_private_file(args.token_out, token + "\n")
        except BaseException:
            os.unlink(args.key_out)          # both files or neither
            raise
    else:
        print(token)


def _new_secret(args) -> int:
    import secrets

    write_private_file(args.out, (new_token() if args.kind == "token" else secrets.token_hex(32)) + "\n")
    return 0


def _enroll(args) -> int:
    _check_outputs(args)
    if args.proxy_url:
        if not args.admin_token_file:
            raise ParameterError.bad("--admin-token-file", "the proxy's admin token file", None)
        token = read_token(secret_file(args.admin_token_file, "--admin-token-file"))
        try:
            with http_client(args.proxy_url, args.ca_cert, args.insecure_http, token) as http:
                r = http.post("/v1/enroll", json={"user_id": args.user, "model": args.model})
        except ParameterError:
            raise
        except Exception as exc:
            raise PeerFailure("proxy", str(exc)) from None
        if r.status_code != 200:
            try:
                detail = r.json().get("detail", r.text)
            except ValueError:
                detail = r.text[:200]
            raise PeerFailure("proxy", f"enrolment refused ({r.status_code}): {detail}")
        answer = r.json()
        _hand_out(args, base64.b64decode(answer["keys"]), answer["access_token"])
        print(f"enrolled {args.user}: model {answer['model_id']}, keys in {args.key_out}", file=sys.stderr)
        return 0
    from ppxgb.proxy import Proxy
    from ppxgb.proxy.service import enroll_user

    model = load_model(args.model)              # a bad model file fails before any server is contacted
    link, store = _link(args), _keystore(args)
    enrollment, token = enroll_user(Proxy(args.key_bits, scheme=args.scheme), model, args.user, link, store)
    _hand_out(args, enrollment.keys.to_bytes(), token)
    print(f"enrolled {args.user}: model {enrollment.model.model_id}, keys in {args.key_out}", file=sys.stderr)
    return 0


def _serve(args) -> int:
    from ppxgb.proxy.service import ProxySettings

    if args.workers < 1:
        raise ParameterError.bad("--workers", "an integer >= 1", args.workers)
    if args.key_pool < 0:
        raise ParameterError.bad("--key-pool", "an integer >= 0", args.key_pool)
    models = {}
    for spec in args.model:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise ParameterError.bad("--model", "NAME=PATH", spec)
        load_model(path)                       # a bad model file fails here, once, not in every worker
        models[name] = os.path.abspath(path)
    secret_file(args.admin_token_file, "--admin-token-file")
    secret_file(args.master_key_file, "--master-key-file", "master-key")
    _link(args)                                 # the scoring server's URL policy and token file
    settings = ProxySettings(models=models, server_url=args.server_url,
                             server_admin_token_file=os.path.abspath(args.server_admin_token_file),
                             admin_token_file=os.path.abspath(args.admin_token_file),
                             keystore=os.path.abspath(args.keystore),
                             master_key_file=os.path.abspath(args.master_key_file),
                             server_ca=os.path.abspath(args.server_ca) if args.server_ca else None,
                             insecure_http=args.insecure_http, key_bits=args.key_bits, scheme=args.scheme,
                             key_pool=args.key_pool)
    settings.build()                            # every secret readable and well-formed, the key store usable
    os.environ.update(settings.to_env())        # each worker builds its own app from these (uvicorn's factory)
    announce_when_ready("proxy", args.host, args.port, not args.insecure_http)
    run_service("ppxgb.proxy.service:app_from_env", args.host, args.port, args.tls_cert, args.tls_key,
                args.insecure_http, workers=args.workers)
    return 0

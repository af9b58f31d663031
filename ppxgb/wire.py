"""Plumbing shared by the HTTP services of both roles: secret files, TLS policy, the
HTTP client, the uvicorn runner, and the error for a missing install extra.  No
protocol logic lives here.

Policy (safe by default, explicit to opt out): a service serves HTTPS unless it is
given `insecure_http=True`, and then only on a loopback address; a client refuses an
http:// URL unless it too is told `insecure_http=True`.  Secret files (key files,
tokens, master keys) are created with mode 0600 (by ppxgb.files, atomically) and refused
when others can read them.

The web stack (fastapi, uvicorn, sqlalchemy) is the `serve` extra and matplotlib the
`report` extra, so a training party installs neither; code that needs one imports it
where it is used and turns its absence into `MissingExtra`, naming the pip command.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import ssl
import stat

from .errors import ParameterError, PPXGBError

MSGPACK = "application/msgpack"
#: Upper bounds on request bodies (bytes): a model upload and a batch of queries.
MAX_MODEL_BYTES = 256 * 2**20
MAX_QUERY_BYTES = 64 * 2**20


def read_private_file(path: str) -> bytes:
    """Read a secret file, refusing one that group or others may read."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise ParameterError.bad("path", "an existing secret file", path) from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ParameterError.bad(path, "permissions 0600 (owner only)", oct(mode & 0o777))
    with open(path, "rb") as fh:
        return fh.read()


def read_token(path: str) -> str:
    token = read_private_file(path).decode().strip()
    if len(token) < 16:
        raise ParameterError.bad(path, "a token of at least 16 characters", f"{len(token)} characters")
    return token


def new_token() -> str:
    return secrets.token_urlsafe(32)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_tls(host: str, tls_cert: str | None, tls_key: str | None, insecure_http: bool) -> None:
    """Refuse to serve plaintext HTTP unless explicitly asked, and never off loopback."""
    if tls_cert and tls_key:
        for p in (tls_cert, tls_key):
            if not os.path.isfile(p):
                raise ParameterError.bad("tls", "existing certificate and key files", p)
        return
    if tls_cert or tls_key:
        raise ParameterError.bad("tls", "both --tls-cert and --tls-key", "only one of them")
    if not insecure_http:
        raise ParameterError.bad("tls", "--tls-cert and --tls-key (or --insecure-http on loopback)",
                                 "no certificate")
    if not is_loopback(host):
        raise ParameterError.bad("host", "a loopback address when serving without TLS", host)


def http_client(base_url: str, ca_cert: str | None = None, insecure_http: bool = False,
                token: str | None = None, timeout: float = 120.0):
    """An httpx client that speaks HTTPS (verified) unless plaintext is explicitly allowed."""
    import httpx

    if base_url.startswith("http://"):
        if not insecure_http:
            raise ParameterError.bad("url", "an https:// URL (or --insecure-http)", base_url)
    elif not base_url.startswith("https://"):
        raise ParameterError.bad("url", "an https:// URL", base_url)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if ca_cert and not os.path.isfile(ca_cert):
        raise ParameterError.bad("ca_cert", "an existing CA bundle file", ca_cert)
    verify = ssl.create_default_context(cafile=ca_cert) if ca_cert else True
    return httpx.Client(base_url=base_url, verify=verify, headers=headers,
                        timeout=timeout)


def bearer_token(header: str | None) -> str | None:
    if not header or not header.startswith("Bearer "):
        return None
    token = header[len("Bearer "):].strip()
    return token or None


class MissingExtra(PPXGBError, ImportError):
    """An optional dependency group of ppxgb is not installed."""


def missing_extra(exc: ImportError, extra: str, purpose: str) -> MissingExtra:
    """The error to raise (``from None``) when importing an extra's module failed."""
    name = getattr(exc, "name", None) or str(exc)
    return MissingExtra(f"{purpose} needs {name!r}, which is not installed: "
                        f"pip install 'ppxgb[{extra}]'")


def run_service(app, host: str, port: int, tls_cert: str | None, tls_key: str | None,
                insecure_http: bool, workers: int = 1) -> None:
    try:
        import uvicorn
    except ImportError as exc:
        raise missing_extra(exc, "serve", "serving HTTP") from None

    check_tls(host, tls_cert, tls_key, insecure_http)
    uvicorn.run(app, host=host, port=port, ssl_certfile=tls_cert, ssl_keyfile=tls_key,
                log_level="warning", workers=workers)

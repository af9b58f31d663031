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

import asyncio
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
#: Seconds a client may take to send a request's headers (slow-header attacks) and
#: between the chunks of a body; idle keep-alive connections close after KEEP_ALIVE.
#: (PPXGB_HEADER_TIMEOUT overrides it, e.g. for tests.)
HEADER_TIMEOUT = float(os.environ.get("PPXGB_HEADER_TIMEOUT", "10"))
KEEP_ALIVE = 5
#: Largest request head (request line and headers) accepted, in bytes.
MAX_HEAD_BYTES = 64 * 2**10


class BodyTooLarge(PPXGBError):
    """A request body exceeded its limit (counted while it streamed in)."""

    def __init__(self, limit: int, got: int):
        super().__init__(f"body: expected at most {limit} bytes, got {got} or more")
        self.limit, self.got = limit, got


class BodyTimeout(PPXGBError):
    """A client stopped sending its request body."""


async def read_limited(request, limit: int) -> bytes:
    """A Starlette request's body, refused once more than `limit` bytes arrived.

    The declared Content-Length is checked first, then the bytes are counted as they
    stream in (a chunked upload declares nothing), so at most `limit` bytes plus one
    chunk are ever held.
    """
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(limit, int(declared))
    parts, size = [], 0
    stream = request.stream().__aiter__()
    while True:
        try:     # a client that stalls mid-body holds a connection: HEADER_TIMEOUT per chunk
            chunk = await asyncio.wait_for(stream.__anext__(), HEADER_TIMEOUT)
        except StopAsyncIteration:
            break
        except asyncio.TimeoutError:
            raise BodyTimeout(f"body: no data for {HEADER_TIMEOUT:g} s after {size} bytes") from None
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(limit, size)
        parts.append(chunk)
    return b"".join(parts)


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


_ERRORS = {400: "malformed input", 401: "missing or invalid bearer token",
           403: "the token is not allowed this action", 404: "no such resource for this token",
           408: "the request body stalled", 409: "already stored (write-once)", 413: "request body too large",
           422: "well-formed input with invalid values", 502: "the scoring server failed"}


def error_responses(*codes: int) -> dict:
    """OpenAPI `responses` for the error answers of an endpoint: {"detail": text}."""
    schema = {"type": "object", "properties": {"detail": {"type": "string"}}, "required": ["detail"]}
    return {c: {"description": _ERRORS[c], "content": {"application/json": {"schema": schema}}} for c in codes}


def declare_bearer(app, public: tuple[str, ...] = ("/v1/health",)) -> None:
    """Publish the bearer-token security scheme in `app`'s OpenAPI schema, required by
    every path except `public` ones."""
    from fastapi.openapi.utils import get_openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            doc = get_openapi(title=app.title, version=app.version, description=app.description,
                              routes=app.routes)
            doc.setdefault("components", {})["securitySchemes"] = {
                "bearerAuth": {"type": "http", "scheme": "bearer",
                               "description": "access token (users) or admin token (uploads, enrolment)"}}
            for path, ops in doc.get("paths", {}).items():
                if path not in public:
                    for op in ops.values():
                        op["security"] = [{"bearerAuth": []}]
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = openapi


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


def _header_timeout_protocol():
    """uvicorn's h11 protocol, closing a connection whose request head is not complete
    within HEADER_TIMEOUT seconds.  uvicorn's own timeout_keep_alive only runs between
    requests, so a client sending half a header would otherwise hold a connection
    (and its buffer) forever."""
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class HeaderTimeoutH11Protocol(H11Protocol):
        _head_timer = None

        def _arm(self) -> None:
            self._disarm()
            self._head_timer = self.loop.call_later(HEADER_TIMEOUT, self._head_timeout)

        def _disarm(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _head_timeout(self) -> None:
            self._head_timer = None
            if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
                self.transport.close()      # headers never completed: drop the connection

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self._arm()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self.conn.their_state is not h11.IDLE:
                self._disarm()              # a full request head arrived

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._arm()

        def connection_lost(self, exc) -> None:
            self._disarm()
            super().connection_lost(exc)

    return HeaderTimeoutH11Protocol


_protocols: dict = {}


def __getattr__(name: str):
    """`ppxgb.wire:HeaderTimeoutH11Protocol`, built on first use (uvicorn is an extra);
    uvicorn imports it by this name in every worker process."""
    if name == "HeaderTimeoutH11Protocol":
        if name not in _protocols:
            _protocols[name] = _header_timeout_protocol()
        return _protocols[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def run_service(app, host: str, port: int, tls_cert: str | None, tls_key: str | None,
                insecure_http: bool, workers: int = 1) -> None:
    """Serve `app` with uvicorn.  With workers > 1, `app` must be an import string of an
    app factory ("module:function"), since each worker process builds its own app."""
    try:
        import uvicorn
    except ImportError as exc:
        raise missing_extra(exc, "serve", "serving HTTP") from None

    check_tls(host, tls_cert, tls_key, insecure_http)
    if workers < 1:
        raise ParameterError.bad("workers", "an integer >= 1", workers)
    if workers > 1 and not isinstance(app, str):
        raise ParameterError.bad("app", "an import string of an app factory (workers > 1)", type(app).__name__)
    uvicorn.run(app, host=host, port=port, ssl_certfile=tls_cert, ssl_keyfile=tls_key,
                log_level="warning", workers=workers, factory=isinstance(app, str),
                http="ppxgb.wire:HeaderTimeoutH11Protocol", timeout_keep_alive=KEEP_ALIVE,
                h11_max_incomplete_event_size=MAX_HEAD_BYTES)

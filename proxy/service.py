"""The proxy as a service: enrol a user end to end, and its HTTP app (FastAPI).

Enrolling = fresh keys and encrypted model (Proxy.enroll), a fresh access token, the
encrypted model uploaded to the scoring server together with the token's SHA-256, the
keys sealed into the key store; the caller gets the key file bytes and the token.

    POST /v1/enroll   admin token; JSON {"user_id", "model"} ->
                      {"user_id", "model_id", "access_token", "keys"} (keys: base64 key file)
    GET  /v1/health   {"status": "ok"} only (no model names without a token)

The admin token is checked before a byte of the body is read, and the body (at most
MAX_ENROLL_BYTES, counted as it streams in, chunked or not; over it is a 413) is then
parsed and validated: a bad body is a 422 only for a caller with the token.

Several worker processes (`ppxgb proxy serve --workers N`) share one key store: a
worker keeps no state of its own (models are read-only, and each enrolment's keys go to
a fresh model id's file, written atomically and never replaced), so any number of them
can enrol at once.  Each worker builds its app with `app_from_env` from the settings in
PPXGB_PROXY_SETTINGS (file paths and public values only; the secrets stay in their 0600
files and every worker reads them itself).

Each worker keeps its own key pool (`ProxySettings.key_pool` users' Paillier key pairs
with their encryption randomness, made by a low-priority helper process; see
proxy/keypool.py), started and stopped with the app's lifespan.

Enrolling needs only the base install (the upload goes through httpx); the HTTP app
needs the `serve` extra, so fastapi and pydantic are imported inside `create_app`.
(No `from __future__ import annotations` here: FastAPI reads the endpoint's parameter
types from the function, and they are classes local to `create_app`.)
"""

import base64
import contextlib
import hashlib
import hmac
import json
import os
from dataclasses import dataclass

from ppxgb.errors import FormatError, ParameterError, PeerFailure
from ppxgb.model import Ensemble
from ppxgb.wire import (MSGPACK, BodyTimeout, BodyTooLarge, bearer_token, declare_bearer, error_responses, missing_extra,
                        new_token, read_limited)

from .enroll import Enrollment, Proxy
from .keystore import KeyStore


#: Environment of an app built by `app_from_env`: a JSON object of ProxySettings' fields.
ENV_SETTINGS = "PPXGB_PROXY_SETTINGS"
#: The largest enrolment request body (a JSON object of two short ids).
MAX_ENROLL_BYTES = 16 * 2**10
#: Ids: letters, digits and _.@- (pydantic's patterns match the whole string; no newline).
ID_PATTERN = r"^[A-Za-z0-9_.@-]{1,128}$"


@dataclass
class ScoringServerLink:
    """Where and how the proxy uploads encrypted models (an httpx client factory)."""

    make_client: object    # () -> httpx.Client with base_url and the server admin token

    def upload(self, enrollment: Enrollment, access_token: str) -> None:
        digest = hashlib.sha256(access_token.encode()).hexdigest()
        try:
            with self.make_client() as http:
                r = http.put(f"/v1/models/{enrollment.model.model_id}", content=enrollment.model.to_bytes(),
                             headers={"content-type": MSGPACK, "x-ppxgb-token-sha256": digest})
        except Exception as exc:  # network errors of any kind
            raise PeerFailure("scoring server", f"upload failed: {exc}") from None
        if r.status_code != 201:
            raise PeerFailure("scoring server", f"upload refused ({r.status_code}): {r.text[:200]}")


def enroll_user(proxy: Proxy, model, user_id: str, link: ScoringServerLink,
                keystore: KeyStore | None) -> tuple[Enrollment, str]:
    """Enrol one user completely, or not at all; returns the enrollment and the user's
    access token.  The keys are sealed first and removed again if the upload fails, so
    the scoring server never holds a model whose keys the proxy lost (its rows are
    write-once, an upload cannot be taken back)."""
    enrollment = proxy.enroll(model, user_id=user_id)
    token = new_token()
    if keystore is not None:
        keystore.put(enrollment.keys)
    try:
        link.upload(enrollment, token)
    except BaseException:
        if keystore is not None:
            try:
                os.unlink(keystore._path(enrollment.model.model_id))
            except FileNotFoundError:
                pass
        raise
    return enrollment, token


@dataclass(frozen=True)
class ProxySettings:
    """What a proxy worker needs to build its app: paths of the model and secret files,
    and public values.  It crosses into worker processes as JSON in ENV_SETTINGS."""

    models: dict            # name -> XGBoost model file
    server_url: str
    server_admin_token_file: str
    admin_token_file: str
    keystore: str
    master_key_file: str
    server_ca: str | None = None
    insecure_http: bool = False
    key_bits: int = 2048
    scheme: str = "ope"
    key_pool: int = 4

    def to_env(self) -> dict[str, str]:
        return {ENV_SETTINGS: json.dumps(self.__dict__)}

    @classmethod
    def from_env(cls) -> "ProxySettings":
        raw = os.environ.get(ENV_SETTINGS)
        if not raw:
            raise ParameterError.bad(ENV_SETTINGS, "the proxy's settings as JSON (set by ppxgb proxy serve)", None)
        return cls(**json.loads(raw))

    def build(self):
        """The app these settings describe (models loaded, secrets read from their files)."""
        from ppxgb.wire import http_client, read_token

        from .keystore import load_master_key

        server_token = read_token(self.server_admin_token_file)
        link = ScoringServerLink(lambda: http_client(self.server_url, self.server_ca, self.insecure_http,
                                                     server_token))
        models = {name: Ensemble.load(path) for name, path in self.models.items()}
        return create_app(Proxy(self.key_bits, scheme=self.scheme, key_pool=self.key_pool), models, link,
                          KeyStore(self.keystore, load_master_key(self.master_key_file)),
                          read_token(self.admin_token_file))


def app_from_env():
    """The app factory uvicorn calls in each worker process."""
    return ProxySettings.from_env().build()


def create_app(proxy: Proxy, models: dict[str, Ensemble], link: ScoringServerLink,
               keystore: KeyStore, admin_token: str):
    """The proxy's FastAPI app: admin-authorised enrolment of users for `models`.
    The app's lifespan runs the proxy's key pool (sized for the largest model)."""
    if not admin_token or len(admin_token) < 16:
        raise ParameterError.bad("admin_token", "a token of at least 16 characters", "a short token")
    try:
        from fastapi import FastAPI, Request
        from fastapi.concurrency import run_in_threadpool
        from fastapi.responses import JSONResponse
        from pydantic import BaseModel, Field, ValidationError
    except ImportError as exc:
        raise missing_extra(exc, "serve", "the proxy service") from None

    class EnrollRequest(BaseModel):
        user_id: str = Field(pattern=ID_PATTERN)
        model: str = Field(pattern=ID_PATTERN, description="name of a model the proxy serves")

    class EnrollAnswer(BaseModel):
        user_id: str
        model_id: str
        access_token: str
        keys: str = Field(description="the user's key file (ppxgb.keys v1), base64")

    @contextlib.asynccontextmanager
    async def lifespan(app):
        proxy.prepare(*models.values())
        try:
            yield
        finally:
            proxy.close()

    app = FastAPI(title="ppxgb proxy", version="1", lifespan=lifespan,
                  description="Issues per-user keys and encrypted models for encrypted XGBoost inference.")
    declare_bearer(app)

    @app.exception_handler(BodyTooLarge)
    async def _too_large(request, exc):
        return JSONResponse({"detail": str(exc)}, status_code=413, headers={"connection": "close"})

    @app.exception_handler(BodyTimeout)
    async def _stalled(request, exc):
        return JSONResponse({"detail": str(exc)}, status_code=408, headers={"connection": "close"})

    @app.exception_handler(ParameterError)
    async def _param(request, exc):
        return JSONResponse({"detail": str(exc)}, status_code=422)

    @app.exception_handler(FormatError)
    async def _format(request, exc):
        return JSONResponse({"detail": f"malformed input: {exc}"}, status_code=400)

    @app.exception_handler(PeerFailure)
    async def _peer(request, exc):
        return JSONResponse({"detail": str(exc)}, status_code=502)

    @app.get("/v1/health")
    def health() -> dict:
        return {"status": "ok"}

    body_schema = {"requestBody": {"required": True, "content": {"application/json": {
        "schema": EnrollRequest.model_json_schema()}}}}

    @app.post("/v1/enroll", response_model=EnrollAnswer, responses=error_responses(401, 404, 408, 413, 422, 502),
              openapi_extra=body_schema)
    async def enroll(request: Request):
        token = bearer_token(request.headers.get("authorization"))
        if token is None or not hmac.compare_digest(token.encode(), admin_token.encode()):
            return JSONResponse({"detail": "authorization: enrolment needs the proxy's admin token"},
                                status_code=401)
        raw = await read_limited(request, MAX_ENROLL_BYTES)
        try:
            body = EnrollRequest.model_validate(json.loads(raw))
        except (ValueError, RecursionError, ValidationError) as exc:   # bad JSON, UTF-8, nesting
            errors = exc.errors(include_url=False, include_input=False) if isinstance(exc, ValidationError) \
                else f"body: expected a JSON object {{user_id, model}}, got invalid JSON ({exc})"
            return JSONResponse({"detail": errors}, status_code=422)
        if body.model not in models:
            return JSONResponse({"detail": f"model: no model {body.model!r} on this proxy"}, status_code=404)
        enrollment, access = await run_in_threadpool(enroll_user, proxy, models[body.model],
                                                     body.user_id, link, keystore)
        return EnrollAnswer(user_id=body.user_id, model_id=enrollment.model.model_id, access_token=access,
                            keys=base64.b64encode(enrollment.keys.to_bytes()).decode())

    return app

"""The scoring server as an HTTP service (FastAPI).

    PUT  /v1/models/{model_id}           admin token; body: EncryptedModel (msgpack);
                                         header X-PPXGB-Token-SHA256: owner's token digest
    POST /v1/models/{model_id}/predict   user token; body: EncryptedQueries (msgpack);
                                         answer: EncryptedScores (msgpack)
    GET  /v1/health

Every scoring request is authenticated with the user's bearer token, and a token only
opens the models enrolled for its user; a model that is not the token's gets the same
404 as one that does not exist, so a token holder cannot probe for model ids.  Tokens
are checked before any body byte is read, and bodies are counted as they stream in
(chunked uploads too): over the limit is a 413.  Bad input gets a 4xx JSON answer
{"detail": ...}; nothing stored changes.  Workers keep only a cache of compiled models
(rows are write-once), so any number of them can serve one database.
"""

from __future__ import annotations

import hmac
import os
import re

from ppxgb.errors import FormatError, ParameterError
from ppxgb.formats import EncryptedModel, EncryptedQueries
from ppxgb.wire import (MAX_MODEL_BYTES, MAX_QUERY_BYTES, MSGPACK, BodyTimeout, BodyTooLarge, bearer_token,
                        declare_bearer, error_responses, missing_extra, read_limited, read_token)

try:  # the `serve` extra; ppxgb.inference's Server and Client do not need it
    from fastapi import FastAPI, Request
    from fastapi.concurrency import run_in_threadpool
    from fastapi.responses import JSONResponse, Response
except ImportError as exc:
    raise missing_extra(exc, "serve", "the scoring service") from None

from .server import Server, UnknownModel
from .store import ModelExists, ModelStore

_HEX64 = re.compile(r"[0-9a-f]{64}")
#: Environment of an app built by `app_from_env` (one per uvicorn worker process).
ENV_DB, ENV_ADMIN_TOKEN_FILE = "PPXGB_SCORING_DB", "PPXGB_SCORING_ADMIN_TOKEN_FILE"
ENV_PAIR_TABLE_MB, ENV_CACHE_MB = "PPXGB_SCORING_PAIR_TABLE_MB", "PPXGB_SCORING_CACHE_MB"


class HTTPProblem(Exception):
    def __init__(self, status: int, detail: str):
        self.status, self.detail = status, detail


def _binary_body(description: str) -> dict:
    return {"requestBody": {"required": True, "description": description,
                            "content": {MSGPACK: {"schema": {"type": "string", "format": "binary"}}}}}


def _msgpack_answer(description: str) -> dict:
    return {200: {"description": description,
                  "content": {MSGPACK: {"schema": {"type": "string", "format": "binary"}}}}}


async def _read_body(request: Request, limit: int) -> bytes:
    body = await read_limited(request, limit)
    if not body:
        raise HTTPProblem(400, "body: expected a msgpack document, got an empty body")
    return body


def app_from_env() -> FastAPI:
    """The app factory uvicorn calls in each worker process (`--workers N`): the store
    URL, admin token file and memory budgets come from the PPXGB_SCORING_* variables."""
    return create_app(ModelStore(os.environ.get(ENV_DB, "sqlite:///ppxgb-models.db")),
                      read_token(os.environ[ENV_ADMIN_TOKEN_FILE]),
                      float(os.environ.get(ENV_PAIR_TABLE_MB, "0")),
                      float(os.environ.get(ENV_CACHE_MB, "1024")))


def create_app(store: ModelStore, admin_token: str, pair_table_mb: float = 0.0,
               cache_mb: float = 1024.0) -> FastAPI:
    """The scoring service over `store`; `admin_token` authorises model uploads.

    pair_table_mb: memory of this worker for leaf-pair product tables, shared by all
    models (see Server); cache_mb: memory for compiled models (least recently used
    ones are dropped and recompiled from the store when needed again).
    """
    if not admin_token or len(admin_token) < 16:
        raise ParameterError.bad("admin_token", "a token of at least 16 characters", "a short token")
    app = FastAPI(title="ppxgb scoring server", version="1",
                  description="Scores OPE/Paillier-encrypted queries against encrypted XGBoost models.")
    cache = Server(pair_table_mb=pair_table_mb, cache_mb=cache_mb)
    declare_bearer(app)

    @app.exception_handler(BodyTooLarge)
    async def _too_large(request, exc: BodyTooLarge):
        return JSONResponse({"detail": str(exc)}, status_code=413, headers={"connection": "close"})

    @app.exception_handler(BodyTimeout)
    async def _stalled(request, exc: BodyTimeout):
        return JSONResponse({"detail": str(exc)}, status_code=408, headers={"connection": "close"})

    @app.exception_handler(HTTPProblem)
    async def _problem(request, exc: HTTPProblem):
        return JSONResponse({"detail": exc.detail}, status_code=exc.status)

    @app.exception_handler(FormatError)
    async def _format(request, exc: FormatError):
        return JSONResponse({"detail": f"malformed input: {exc}"}, status_code=400)

    @app.exception_handler(ParameterError)
    async def _param(request, exc: ParameterError):
        return JSONResponse({"detail": str(exc)}, status_code=422)

    def authorise(request: Request, model_id: str) -> None:
        token = bearer_token(request.headers.get("authorization"))
        if token is None:
            raise HTTPProblem(401, "authorization: expected 'Bearer <access token>'")
        user = store.user_for_token(token)
        if user is None:
            raise HTTPProblem(401, "authorization: the access token is not valid")
        owner = store.owner(model_id)
        if owner is None or not hmac.compare_digest(owner[0].encode(), user.encode()):
            # one answer for "not yours" and "does not exist": ids cannot be probed
            raise HTTPProblem(404, f"model_id: no model {model_id!r} that this token may score")

    @app.get("/v1/health")
    def health() -> dict:
        return {"status": "ok"}

    @app.put("/v1/models/{model_id}", status_code=201, responses=error_responses(400, 401, 408, 409, 413, 422),
             openapi_extra=_binary_body("EncryptedModel, ppxgb.encrypted_model v1 (msgpack)"))
    async def upload(model_id: str, request: Request) -> dict:
        token = bearer_token(request.headers.get("authorization"))
        if token is None or not hmac.compare_digest(token.encode(), admin_token.encode()):
            raise HTTPProblem(401, "authorization: model uploads need the server's admin token")
        digest = request.headers.get("x-ppxgb-token-sha256", "").lower()
        if not _HEX64.fullmatch(digest):
            raise HTTPProblem(400, "x-ppxgb-token-sha256: expected 64 hex digits")
        body = await _read_body(request, MAX_MODEL_BYTES)
        model = await run_in_threadpool(EncryptedModel.from_bytes, body)
        if model.model_id != model_id:
            raise HTTPProblem(400, f"model_id: the URL says {model_id!r}, the model says {model.model_id!r}")
        try:
            await run_in_threadpool(store.put, model_id, model.user_id, digest, body)
        except ModelExists as exc:
            raise HTTPProblem(409, str(exc)) from None
        return {"model_id": model_id, "user_id": model.user_id}

    @app.post("/v1/models/{model_id}/predict",
              responses={**_msgpack_answer("EncryptedScores (msgpack)"),
                         **error_responses(400, 401, 404, 408, 413, 422)},
              response_class=Response,
              openapi_extra=_binary_body("EncryptedQueries, ppxgb.encrypted_queries v1 (msgpack)"))
    async def predict(model_id: str, request: Request) -> Response:
        await run_in_threadpool(authorise, request, model_id)
        body = await _read_body(request, MAX_QUERY_BYTES)

        def score() -> bytes:
            queries = EncryptedQueries.from_bytes(body)
            for _ in range(3):                  # the cache may drop the model in between
                if model_id not in cache:
                    blob = store.blob(model_id)
                    if blob is None:
                        raise HTTPProblem(404, f"model_id: no model {model_id!r} that this token may score")
                    cache.add(blob)
                try:
                    return cache.predict(model_id, queries).to_bytes()
                except UnknownModel:
                    continue
            raise HTTPProblem(503, "model cache: too busy to hold this model, retry")

        return Response(await run_in_threadpool(score), media_type=MSGPACK)

    return app

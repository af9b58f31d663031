"""The proxy as a service: enrol a user end to end, and its HTTP app (FastAPI).

Enrolling = fresh keys and encrypted model (Proxy.enroll), a fresh access token, the
encrypted model uploaded to the scoring server together with the token's SHA-256, the
keys sealed into the key store; the caller gets the key file bytes and the token.

    POST /v1/enroll   admin token; JSON {"user_id", "model"} ->
                      {"user_id", "model_id", "access_token", "keys"} (keys: base64 key file)
    GET  /v1/health

Enrolling needs only the base install (the upload goes through httpx); the HTTP app
needs the `serve` extra, so fastapi and pydantic are imported inside `create_app`.
(No `from __future__ import annotations` here: FastAPI reads the endpoint's parameter
types from the function, and they are classes local to `create_app`.)
"""

import base64
import hashlib
import hmac
from dataclasses import dataclass

from ppxgb.errors import FormatError, ParameterError, PeerFailure
from ppxgb.model import Ensemble
from ppxgb.wire import MSGPACK, bearer_token, missing_extra, new_token

from .enroll import Enrollment, Proxy
from .keystore import KeyStore


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
    """Enrol one user completely; returns the enrollment and the user's access token."""
    enrollment = proxy.enroll(model, user_id=user_id)
    token = new_token()
    link.upload(enrollment, token)
    if keystore is not None:
        keystore.put(enrollment.keys)
    return enrollment, token


def create_app(proxy: Proxy, models: dict[str, Ensemble], link: ScoringServerLink,
               keystore: KeyStore, admin_token: str):
    """The proxy's FastAPI app: admin-authorised enrolment of users for `models`."""
    if not admin_token or len(admin_token) < 16:
        raise ParameterError.bad("admin_token", "a token of at least 16 characters", "a short token")
    try:
        from fastapi import FastAPI, Request
        from fastapi.concurrency import run_in_threadpool
        from fastapi.responses import JSONResponse
        from pydantic import BaseModel, Field
    except ImportError as exc:
        raise missing_extra(exc, "serve", "the proxy service") from None

    class EnrollRequest(BaseModel):
        user_id: str = Field(pattern=r"^[A-Za-z0-9_.@-]{1,128}$")
        model: str = Field(pattern=r"^[A-Za-z0-9_.@-]{1,128}$", description="name of a model the proxy serves")

    class EnrollAnswer(BaseModel):
        user_id: str
        model_id: str
        access_token: str
        keys: str = Field(description="the user's key file (ppxgb.keys v1), base64")

    app = FastAPI(title="ppxgb proxy", version="1",
                  description="Issues per-user keys and encrypted models for encrypted XGBoost inference.")

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
        return {"status": "ok", "models": sorted(models)}

    @app.post("/v1/enroll", response_model=EnrollAnswer)
    async def enroll(body: EnrollRequest, request: Request):
        token = bearer_token(request.headers.get("authorization"))
        if token is None or not hmac.compare_digest(token.encode(), admin_token.encode()):
            return JSONResponse({"detail": "authorization: enrolment needs the proxy's admin token"},
                                status_code=401)
        if body.model not in models:
            return JSONResponse({"detail": f"model: expected one of {sorted(models)}, got {body.model!r}"},
                                status_code=404)
        enrollment, access = await run_in_threadpool(enroll_user, proxy, models[body.model],
                                                     body.user_id, link, keystore)
        return EnrollAnswer(user_id=body.user_id, model_id=enrollment.model.model_id, access_token=access,
                            keys=base64.b64encode(enrollment.keys.to_bytes()).decode())

    return app

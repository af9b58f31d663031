"""Persistent storage of encrypted models for the scoring service (SQLAlchemy).

SQLite by default (sqlite:///path.db: the file is created 0600, in WAL mode with a busy
timeout, so several worker processes share it); any SQLAlchemy URL for deployment, e.g.
postgresql+psycopg://user:password@host:5432/dbname (the `psycopg` driver installed).
A row holds the model's serialized bytes, its owner and the SHA-256 of the owner's
access token (the token itself is never stored).  Rows are write-once: uploading an
existing model id is refused, so a stored model never changes under a worker.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time

from ppxgb.errors import ParameterError
from ppxgb.wire import missing_extra

try:  # the `serve` extra
    from sqlalchemy import Column, LargeBinary, MetaData, String, Table, create_engine, event, insert, select
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError
except ImportError as exc:
    raise missing_extra(exc, "serve", "the model store of the scoring service") from None

_meta = MetaData()
models = Table(
    "ppxgb_models", _meta,
    Column("model_id", String(128), primary_key=True),
    Column("user_id", String(128), nullable=False, index=True),
    Column("token_sha256", String(64), nullable=False),
    Column("blob", LargeBinary, nullable=False),
)


class ModelExists(ParameterError):
    """A model with this id is already stored (rows are write-once)."""


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


#: Seconds a writer waits for SQLite's lock before giving up.
SQLITE_BUSY_SECONDS = 30


def _sqlite_file(url) -> str | None:
    db = url.database
    return db if db and db != ":memory:" and not db.startswith("file:") else None


class ModelStore:
    def __init__(self, url: str = "sqlite:///ppxgb-models.db"):
        try:
            parsed = make_url(url)
        except Exception:
            raise ParameterError.bad("--db", "an SQLAlchemy URL (sqlite:///path.db or "
                                     "postgresql+psycopg://user:password@host:port/db)", url) from None
        if parsed.get_backend_name() == "sqlite":
            path = _sqlite_file(parsed)
            if path:                    # create it owner-only before SQLite does (0644)
                os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))
            self.engine = create_engine(url, connect_args={"check_same_thread": False,
                                                           "timeout": SQLITE_BUSY_SECONDS})

            @event.listens_for(self.engine, "connect")
            def _pragmas(dbapi_conn, _record):
                cur = dbapi_conn.cursor()
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_SECONDS * 1000}")
                cur.close()
        else:
            self.engine = create_engine(url, pool_pre_ping=True)
        for attempt in range(5):    # workers starting together race to create the table
            try:
                _meta.create_all(self.engine)
                break
            except (IntegrityError, OperationalError, ProgrammingError):
                if attempt == 4:
                    raise
                time.sleep(0.2 * (attempt + 1))

    def put(self, model_id: str, user_id: str, token_sha256: str, blob: bytes) -> None:
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(models).values(model_id=model_id, user_id=user_id,
                                                   token_sha256=token_sha256, blob=blob))
        except IntegrityError:
            raise ModelExists(f"model_id: {model_id!r} is already stored") from None

    def owner(self, model_id: str) -> tuple[str, str] | None:
        """(user_id, token_sha256) of a stored model, or None."""
        with self.engine.connect() as conn:
            row = conn.execute(select(models.c.user_id, models.c.token_sha256)
                               .where(models.c.model_id == model_id)).first()
        return (row[0], row[1]) if row else None

    def user_for_token(self, token: str) -> str | None:
        """The user whose access token this is (constant-time compare on the digest)."""
        digest = token_digest(token)
        with self.engine.connect() as conn:
            rows = conn.execute(select(models.c.user_id, models.c.token_sha256)
                                .where(models.c.token_sha256 == digest)).all()
        for user, stored in rows:
            if hmac.compare_digest(stored, digest):
                return user
        return None

    def blob(self, model_id: str) -> bytes | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(models.c.blob).where(models.c.model_id == model_id)).first()
        return bytes(row[0]) if row else None

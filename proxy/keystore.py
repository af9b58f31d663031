"""The proxy's key store, encrypted at rest.

Every user's key file is sealed with AES-256-GCM under the store's master key (a
32-byte secret read from a 0600 file; there is no unencrypted mode).  The model id and
user id are bound as associated data, so a sealed record cannot be swapped for
another's.  Records live one per file, mode 0600, in the store directory.
"""

from __future__ import annotations

import os
import re

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ppxgb.errors import FormatError, ParameterError
from ppxgb.formats import UserKeys
from ppxgb.files import write_private_file
from ppxgb.wire import read_private_file

_MAGIC = b"PPXGBKS1"
_ID = re.compile(r"^[A-Za-z0-9_.@-]{1,128}$")


def load_master_key(path: str) -> bytes:
    """A master key file: 64 hex characters (32 bytes), mode 0600."""
    text = read_private_file(path).decode(errors="replace").strip()
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) != 32:
        raise ParameterError.bad(path, "a master key of 64 hex characters", f"{len(text)} characters")
    return key


class KeyStore:
    def __init__(self, directory: str, master_key: bytes):
        if not isinstance(master_key, bytes) or len(master_key) != 32:
            raise ParameterError.bad("master_key", "32 bytes", type(master_key).__name__)
        os.makedirs(directory, mode=0o700, exist_ok=True)
        self.directory = directory
        self._aead = AESGCM(master_key)

    def _path(self, model_id: str) -> str:
        if not _ID.match(model_id):
            raise ParameterError.bad("model_id", "1-128 characters of [A-Za-z0-9_.@-]", model_id)
        return os.path.join(self.directory, f"{model_id}.keys.sealed")

    def put(self, keys: UserKeys) -> None:
        nonce = os.urandom(12)
        aad = f"{keys.user_id}|{keys.model_id}".encode()
        sealed = _MAGIC + nonce + self._aead.encrypt(nonce, keys.to_bytes(), aad)
        write_private_file(self._path(keys.model_id), sealed)

    def get(self, model_id: str, user_id: str) -> UserKeys:
        path = self._path(model_id)
        if not os.path.exists(path):
            raise ParameterError.bad("model_id", "a model enrolled in this key store", model_id)
        blob = read_private_file(path)
        if not blob.startswith(_MAGIC) or len(blob) < len(_MAGIC) + 28:
            raise FormatError("key store record: bad header")
        nonce, body = blob[len(_MAGIC):len(_MAGIC) + 12], blob[len(_MAGIC) + 12:]
        try:
            plain = self._aead.decrypt(nonce, body, f"{user_id}|{model_id}".encode())
        except InvalidTag:
            raise FormatError("key store record: authentication failed") from None
        return UserKeys.from_bytes(plain)

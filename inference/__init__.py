"""ppxgb.inference: the scoring server and the client app of encrypted inference."""

from ppxgb.formats import EncryptedModel, EncryptedQueries, EncryptedScores, UserKeys

from .client import Client
from .server import Server, UnknownModel

__all__ = ["Server", "Client", "EncryptedQueries", "EncryptedScores", "EncryptedModel",
           "UserKeys", "UnknownModel"]

"""ppxgb.inference: the scoring server and the client app of encrypted inference.

`Server` and `Client` need only the base install.  The HTTP service (`app.py`, with
its SQLAlchemy model store `store.py`) needs the `serve` extra and is imported only
by whoever runs it (`ppxgb scoring-server`), never from here.
"""

from ppxgb.formats import EncryptedModel, EncryptedQueries, EncryptedScores, UserKeys

from .client import Client
from .server import Server, UnknownModel

__all__ = ["Server", "Client", "EncryptedQueries", "EncryptedScores", "EncryptedModel",
           "UserKeys", "UnknownModel"]

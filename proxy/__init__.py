"""ppxgb.proxy: the trusted proxy that issues per-user keys and encrypted models.

`Proxy` needs only the base install; the proxy's HTTP app (`service.create_app`)
needs the `serve` extra and imports it when called.
"""

from .enroll import Enrollment, Proxy, encrypt_for_user

__all__ = ["Proxy", "Enrollment", "encrypt_for_user"]

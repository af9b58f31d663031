"""ppxgb.proxy: the trusted proxy that issues per-user keys and encrypted models."""

from .enroll import Enrollment, Proxy, encrypt_for_user

__all__ = ["Proxy", "Enrollment", "encrypt_for_user"]

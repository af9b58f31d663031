"""End-to-end channels between two roles whose frames a relay forwards.

A relay sees every frame, so what two roles send each other is sealed before it leaves
them, and the relay holds no key:

1. Each role makes a fresh X25519 key pair per peer and sends a *hello*: its role
   certificate, the X25519 public key, and an ECDSA signature (with the certificate's
   key) over ``[ppxgb-e2e-1, session, sender, receiver, public key]`` (msgpack, so no
   two name lists give the same text).
2. The receiver checks that the CA signed the certificate, that it is valid now, that
   its common name is exactly the sender's role name, and the signature.  A relay
   cannot forge a hello (it has no role key) nor move one to another session or pair.
   A hello it recorded earlier and replays opens nothing (its X25519 secret is gone),
   but the receiver cannot tell it is stale: the run then fails on the first frame
   (or on the real hello), an abort, not a leak.
3. Both derive two ChaCha20-Poly1305 keys (one per direction) with HKDF-SHA256 from the
   X25519 secret, bound to the session, both names and both public keys.
4. Every later frame is ``counter (8 bytes) | AEAD(kind | body)``, the nonce being the
   counter and the associated data ``[ppxgb-e2e-1, session, sender, receiver]``.  The
   receiver expects the counters 0, 1, 2, ... in order, so a dropped, replayed,
   reordered or altered frame fails to open, and the link is dropped naming its sender.

With `insecure=True` (tests, and deployments that accepted plaintext explicitly) the
channel is a pass-through with the same framing and counters but no secrecy.
"""

from __future__ import annotations

import datetime as _dt
import struct
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.x509.oid import NameOID

import msgpack

from .errors import ParameterError
from .tls import TLSConfig

LABEL = b"ppxgb-e2e-1"
_COUNTER = struct.Struct(">Q")


class ChannelError(Exception):
    """A frame or hello that fails to verify; the caller drops the link."""


def certificate_role(cert: x509.Certificate) -> str | None:
    """The role a certificate is for: its one common name (its DNS names, which also
    carry "localhost", are for TLS host checks, not identities)."""
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if len(names) == 1 else None


def _signed_text(session: str, src: str, dst: str, public: bytes) -> bytes:
    return msgpack.packb([LABEL, session, src, dst, public])


class Identity:
    """One role's certificate, private key and trusted CA, loaded once."""

    def __init__(self, name: str, tls: TLSConfig):
        tls.check()
        try:
            self.cert_pem = Path(tls.cert).read_bytes()
            self.cert = x509.load_pem_x509_certificate(self.cert_pem)
            self.key = serialization.load_pem_private_key(Path(tls.key).read_bytes(), password=None)
            self.ca = x509.load_pem_x509_certificate(Path(tls.ca).read_bytes())
        except (ValueError, TypeError, OSError) as exc:
            raise ParameterError(f"tls: cannot load certificate material for {name}: {exc}") from None
        if not isinstance(self.key, ec.EllipticCurvePrivateKey):
            raise ParameterError.bad("tls.key", "an elliptic-curve private key (as `ppxgb certs` makes)",
                                     type(self.key).__name__)
        if certificate_role(self.cert) != name:
            raise ParameterError.bad("tls.cert", f"a certificate whose common name is {name!r}",
                                     certificate_role(self.cert))
        self.name = name

    def verify_peer(self, pem: bytes, peer: str) -> x509.Certificate:
        """The peer's certificate, if this CA signed it, it is valid now and names `peer`."""
        try:
            cert = x509.load_pem_x509_certificate(pem)
            cert.verify_directly_issued_by(self.ca)
        except (ValueError, TypeError, InvalidSignature) as exc:
            raise ChannelError(f"certificate not signed by the federation's CA ({exc.__class__.__name__})") from None
        now = _dt.datetime.now(_dt.timezone.utc)
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            raise ChannelError("certificate is not valid now")
        if certificate_role(cert) != peer:
            raise ChannelError(f"certificate is for {certificate_role(cert)!r}, not {peer!r}")
        return cert


class Channel:
    """Sealing and opening frames between `me` and one `peer` (see the module docstring)."""

    def __init__(self, me: str, peer: str, identity: Identity | None, session: str = ""):
        self.me, self.peer, self.session = me, peer, session
        self.identity = identity
        self._secret = X25519PrivateKey.generate() if identity is not None else None
        self._public = (self._secret.public_key().public_bytes(serialization.Encoding.Raw,
                                                               serialization.PublicFormat.Raw)
                        if self._secret is not None else b"")
        self._seal_key: ChaCha20Poly1305 | None = None
        self._open_key: ChaCha20Poly1305 | None = None
        self._sent = 0
        self._received = 0
        self.ready = identity is None   # a plaintext channel needs no hello answered

    # ----------------------------------------------------------------- hello

    def hello(self) -> bytes:
        """This side's hello for the peer (an empty certificate in plaintext mode)."""
        if self.identity is None:
            return msgpack.packb({"cert": b"", "public": b"", "sig": b""})
        sig = self.identity.key.sign(_signed_text(self.session, self.me, self.peer, self._public),
                                     ec.ECDSA(hashes.SHA256()))
        return msgpack.packb({"cert": self.identity.cert_pem, "public": self._public, "sig": sig})

    def accept_hello(self, blob: bytes) -> None:
        """Check the peer's hello and derive the keys; ChannelError if it does not verify."""
        try:
            doc = msgpack.unpackb(blob)
            pem, public, sig = bytes(doc["cert"]), bytes(doc["public"]), bytes(doc["sig"])
        except Exception:   # any malformed hello is the same failure
            raise ChannelError("malformed hello") from None
        if self.identity is None:
            if pem or public:
                raise ChannelError("the peer uses end-to-end encryption but this role runs --insecure")
            self.ready = True
            return
        if self.ready:
            raise ChannelError("a second hello on an established channel")
        cert = self.identity.verify_peer(pem, self.peer)
        try:
            cert.public_key().verify(sig, _signed_text(self.session, self.peer, self.me, public),
                                     ec.ECDSA(hashes.SHA256()))
            shared = self._secret.exchange(X25519PublicKey.from_public_bytes(public))
        except (InvalidSignature, ValueError, TypeError, AttributeError):
            raise ChannelError("hello signature or key does not verify") from None
        low, high = sorted([(self.me, self._public), (self.peer, public)])
        info = msgpack.packb([LABEL, self.session, low[0], high[0], low[1], high[1]])
        keys = HKDF(algorithm=hashes.SHA256(), length=64, salt=None, info=info).derive(shared)
        first, second = ChaCha20Poly1305(keys[:32]), ChaCha20Poly1305(keys[32:])
        self._seal_key, self._open_key = (first, second) if self.me == low[0] else (second, first)
        self.ready = True

    # ------------------------------------------------------------ frames

    def seal(self, kind: int, body=b"") -> bytes:
        """One frame: counter and the sealed `kind | body` (callers serialise per peer)."""
        counter = self._sent
        self._sent += 1
        head = _COUNTER.pack(counter)
        plain = bytes([kind]) + bytes(body)
        if self._seal_key is None:
            return head + plain
        nonce = b"\0\0\0\0" + head
        return head + self._seal_key.encrypt(nonce, plain, self._aad(self.session, self.me, self.peer))

    def open(self, frame: bytes) -> tuple[int, bytes]:
        """(kind, body) of the peer's next frame; ChannelError if it is not exactly that."""
        if len(frame) < _COUNTER.size + 1:
            raise ChannelError("frame too short")
        (counter,) = _COUNTER.unpack_from(frame)
        if counter != self._received:
            raise ChannelError(f"frame {counter} arrived where frame {self._received} was due")
        if self._open_key is None:
            plain = frame[_COUNTER.size:]
        else:
            try:
                plain = self._open_key.decrypt(b"\0\0\0\0" + frame[:_COUNTER.size], frame[_COUNTER.size:],
                                               self._aad(self.session, self.peer, self.me))
            except InvalidTag:
                raise ChannelError(f"frame {counter} fails authentication") from None
        self._received += 1
        return plain[0], plain[1:]

    @staticmethod
    def _aad(session: str, src: str, dst: str) -> bytes:
        return msgpack.packb([LABEL, session, src, dst])

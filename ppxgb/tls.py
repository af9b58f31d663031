"""TLS material for the network transport: mutual TLS between named roles.

Every role (party-0, server-1, coordinator, ...) holds a certificate whose subject CN
and a DNS subjectAltName carry its role name, signed by a CA that every role trusts.
A connection is accepted only when both ends present such a certificate, and the name a
peer claims must be the name in its certificate, so one role cannot impersonate another.

`make_test_pki` writes a throw-away CA and per-role certificates (ECDSA P-256, SAN
127.0.0.1 and localhost) for tests and for `ppxgb federation` on loopback. Private keys
are written with 0600 permissions, atomically (ppxgb.files). Missing material is an
error, never a fallback to plaintext.
"""

from __future__ import annotations

import datetime as _dt
import ipaddress
import os
import ssl
import stat
from dataclasses import dataclass
from pathlib import Path

from .errors import ParameterError
from .files import write_atomic, write_private_file

#: How long test certificates stay valid.
TEST_CERT_DAYS = 30


@dataclass(frozen=True)
class TLSConfig:
    """Paths to one role's certificate chain, its private key and the trusted CA."""

    cert: str
    key: str
    ca: str

    def check(self) -> None:
        """Raise ParameterError naming the first missing file, or a private key that
        group or others may read (like every other secret, see ppxgb.wire)."""
        for field_name in ("cert", "key", "ca"):
            path = getattr(self, field_name)
            if not path or not os.path.isfile(path):
                raise ParameterError.bad(f"tls.{field_name}", "an existing PEM file", str(path))
        mode = os.stat(self.key).st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ParameterError.bad("tls.key", "a private key with permissions 0600 (owner only)",
                                     f"{self.key} with {oct(mode & 0o777)}")

    def _context(self, purpose: int) -> ssl.SSLContext:
        self.check()
        ctx = ssl.SSLContext(purpose)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        ctx.verify_mode = ssl.CERT_REQUIRED
        try:
            ctx.load_verify_locations(cafile=self.ca)
            ctx.load_cert_chain(self.cert, self.key)
        except (ssl.SSLError, OSError) as exc:
            raise ParameterError(f"tls: cannot load certificate material: {exc}") from None
        return ctx

    def server_context(self) -> ssl.SSLContext:
        """Context for accepting connections; the client must present a certificate."""
        ctx = self._context(ssl.PROTOCOL_TLS_SERVER)
        ctx.num_tickets = 0  # connections are long-lived; no session resumption needed
        return ctx

    def client_context(self) -> ssl.SSLContext:
        """Context for dialing a peer; the peer's certificate must name the role dialed."""
        ctx = self._context(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = True
        return ctx

    def to_json(self) -> dict[str, str]:
        return {"cert": str(self.cert), "key": str(self.key), "ca": str(self.ca)}


def cert_names(peercert: dict) -> set[str]:
    """Role names a verified peer certificate (from `getpeercert()`) vouches for."""
    names = {value for kind, value in peercert.get("subjectAltName", ()) if kind == "DNS"}
    for rdn in peercert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                names.add(value)
    return names


def make_test_pki(directory: str | os.PathLike, names: list[str] | tuple[str, ...],
                  days: int = TEST_CERT_DAYS) -> dict[str, TLSConfig]:
    """Create a CA and one certificate per role name in `directory`; for tests and loopback.

    Returns name -> TLSConfig. Files: ca.pem, ca.key, <name>.pem, <name>.key (keys 0600).
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    for name in names:
        if not name or "/" in name or name.startswith("."):
            raise ParameterError.bad("names", "role names usable as file names", name)
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    now = _dt.datetime.now(_dt.timezone.utc)
    start, end = now - _dt.timedelta(hours=1), now + _dt.timedelta(days=days)
    no_enc = serialization.NoEncryption()

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ppxgb test CA")])
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start).not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=False, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
            encipher_only=False, decipher_only=False), critical=True)
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_path = out / "ca.pem"
    write_atomic(ca_path, ca_cert.public_bytes(serialization.Encoding.PEM))
    write_private_file(out / "ca.key", ca_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, no_enc), overwrite=True)

    configs: dict[str, TLSConfig] = {}
    for name in names:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=True, key_cert_sign=False,
                crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName(name), x509.DNSName("localhost"),
                x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
                           critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        cert_path, key_path = out / f"{name}.pem", out / f"{name}.key"
        write_atomic(cert_path, cert.public_bytes(serialization.Encoding.PEM))
        write_private_file(key_path, key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, no_enc), overwrite=True)
        configs[name] = TLSConfig(str(cert_path), str(key_path), str(ca_path))
    return configs

"""The lab's certificate authority and per-host WinRM HTTPS certificates (like a WinRM HTTPS listener's)."""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import os
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_VALIDITY = datetime.timedelta(days=825)


@dataclass(frozen=True)
class HostCertificate:
    """A host's certificate files and what NTLM channel binding hashes."""

    cert_path: Path
    key_path: Path
    der: bytes

    @property
    def sha256(self) -> str:
        """The certificate's SHA-256 fingerprint (hex), as a client sees it."""
        return hashlib.sha256(self.der).hexdigest()

    @property
    def channel_binding_data(self) -> bytes:
        """RFC 5929 tls-server-end-point for a SHA-256-signed certificate."""
        return b"tls-server-end-point:" + hashlib.sha256(self.der).digest()

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self.cert_path, self.key_path)
        return context


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


class LabAuthority:
    """A CA kept in the lab folder (ca.pem, ca-key.pem): reused across restarts so clients keep trusting it."""

    def __init__(self, lab_dir: Path) -> None:
        self.lab_dir = lab_dir
        self.ca_path = lab_dir / "ca.pem"
        key_path = lab_dir / "ca-key.pem"
        if self.ca_path.exists() and key_path.exists():
            self._cert = x509.load_pem_x509_certificate(self.ca_path.read_bytes())
            key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
            if not isinstance(key, ec.EllipticCurvePrivateKey):
                raise ValueError(f"{key_path} is not an EC key")
            self._key = key
            return
        self._key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "winlab lab CA")])
        now = datetime.datetime.now(datetime.UTC)
        self._cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self._key.public_key()), critical=False)
            .sign(self._key, hashes.SHA256())
        )
        _write_private(
            key_path,
            self._key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            ),
        )
        self.ca_path.write_bytes(self._cert.public_bytes(serialization.Encoding.PEM))

    def issue(
        self,
        host_name: str,
        address: str | None,
        *,
        dns_names: Sequence[str] | None = None,
        not_before: datetime.datetime | None = None,
        not_after: datetime.datetime | None = None,
        file_stem: str | None = None,
    ) -> HostCertificate:
        """A server certificate for one host, subject CN=`host_name`.

        SAN = `address` (None: no IP entry) and `dns_names` (default: the host's name, plain and lower-case).
        Valid from an hour ago for 825 days unless `not_before`/`not_after` say otherwise (the SMTP model
        issues expired and soon-expiring ones too). Files: certs/<file_stem or host_name>[-key].pem.
        """
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        dns = sorted({host_name, host_name.lower()}) if dns_names is None else list(dict.fromkeys(dns_names))
        ips = [x509.IPAddress(ipaddress.ip_address(address))] if address is not None else []
        san = x509.SubjectAlternativeName([*ips, *(x509.DNSName(n) for n in dns)])
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host_name)]))
            .issuer_name(self._cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before or now - datetime.timedelta(hours=1))
            .not_valid_after(not_after or now + _VALIDITY)
            .add_extension(san, critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()), critical=False)
            .sign(self._key, hashes.SHA256())
        )
        folder = self.lab_dir / "certs"
        stem = file_stem or host_name
        cert_path = folder / f"{stem}.pem"
        key_path = folder / f"{stem}-key.pem"
        _write_private(
            key_path,
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            ),
        )
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return HostCertificate(cert_path, key_path, cert.public_bytes(serialization.Encoding.DER))

"""A private certificate authority and the broker's TLS identity, for the secured profile.

Generated on the machine that runs the broker (never shipped): a CA certificate that
clients trust (``ca.pem``) and a broker key and certificate, for 127.0.0.1 and
localhost, in a PKCS#12 keystore with a generated password.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID


@dataclass(frozen=True, slots=True)
class BrokerTls:
    ca_file: Path
    keystore: Path
    keystore_password: str


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "gun-hub local"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def make_broker_tls(folder: Path, host: str, password: str) -> BrokerTls:
    """Create (once) the CA and the broker keystore in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    tls = BrokerTls(folder / "ca.pem", folder / "broker.p12", password)
    if tls.ca_file.exists() and tls.keystore.exists():
        return tls
    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("gun-hub local CA"))
        .issuer_name(_name("gun-hub local CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=825))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    broker_key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [x509.DNSName("localhost")]
    try:
        names.append(x509.IPAddress(ipaddress.ip_address(host)))
    except ValueError:
        names.append(x509.DNSName(host))
    broker_cert = (
        x509.CertificateBuilder()
        .subject_name(_name(host))
        .issuer_name(ca_cert.subject)
        .public_key(broker_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=397))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    tls.ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    keystore = pkcs12.serialize_key_and_certificates(
        b"broker",
        broker_key,
        broker_cert,
        [ca_cert],
        serialization.BestAvailableEncryption(password.encode()),
    )
    descriptor = os.open(tls.keystore, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(keystore)
    return tls

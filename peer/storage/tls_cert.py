"""The node's TLS certificate: self-signed, kept in the data dir (``tls.pem``).

The certificate is not the node's identity and nobody trusts it by itself: a peer
takes it as the node's only because the node signs the certificate's SHA-256 in
its ``Hello`` proof (``peer.core.handshake``), over the connection that presented it.
So its key is a fresh ECDSA P-256 key of its own (fast TLS handshakes, supported by
every TLS 1.3 stack), never the node's Ed25519 key: the node key signs only
messages of this protocol, and a TLS key that leaks reveals no node key.

``tls.pem`` holds the private key and then the certificate, mode 0600, written
under a temporary name, fsynced and renamed into place, as ``node.key`` is made.
A file that is missing, damaged, or whose key does not match its certificate is
replaced by a new one (with a WARNING): unlike ``node.key`` nothing depends on it
across restarts, since every handshake binds the certificate anew.

``cryptography`` makes the certificate, in a short-lived child process
(``python -m peer.storage.tls_cert``, first start only): imported into the node it
would stay in its memory for good (about 8 MiB of a 45 MiB idle node). Loading a
certificate needs only the standard ``ssl`` module.
"""

from __future__ import annotations

import datetime
import hashlib
import logging
import ssl
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from peer.storage.durable_file import write_durably
from peer.storage.key_file import IdentityError

__all__ = ["CERTIFICATE_FILE", "TlsCertificate", "TlsCertificateError", "binding_of",
           "load_or_create"]

log = logging.getLogger(__name__)

CERTIFICATE_FILE: Final = "tls.pem"
_MAX_FILE_BYTES: Final = 16 * 1024
# A child that imports cryptography and makes one P-256 key: well under a second.
_MAKE_TIMEOUT: Final = 60.0
_BEGIN: Final = "-----BEGIN CERTIFICATE-----"
_END: Final = "-----END CERTIFICATE-----"


class TlsCertificateError(IdentityError):
    """The certificate file cannot be made (the message names it): the data dir
    cannot be used, as with a node key that cannot be written."""


@dataclass(frozen=True)
class TlsCertificate:
    """A certificate file ready for ``ssl.SSLContext.load_cert_chain``."""

    path: Path
    der: bytes  # the certificate, DER-encoded: what a peer sees in the TLS handshake

    @property
    def binding(self) -> bytes:
        """What the node signs in its Hello proofs: SHA-256 of the certificate."""
        return binding_of(self.der)


def binding_of(der: bytes) -> bytes:
    """The 32 bytes a certificate is bound by (``peer.core.handshake``)."""
    return hashlib.sha256(der).digest()


def load_or_create(data_dir: Path) -> TlsCertificate:
    """The data dir's certificate, made (or remade, when unusable) as needed.

    Raises:
        TlsCertificateError: A new one cannot be written.
    """
    path = data_dir / CERTIFICATE_FILE
    if path.exists() or path.is_symlink():
        try:
            return _load(path)
        except (OSError, ValueError, ssl.SSLError) as exc:
            log.warning("%s is unusable (%s): making a new TLS certificate", path, exc)
    try:
        _create(path)
        return _load(path)
    except (OSError, ValueError, ssl.SSLError) as exc:
        raise TlsCertificateError(f"{path}: cannot make the TLS certificate: {exc}") from exc


def _load(path: Path) -> TlsCertificate:
    with path.open("rb") as f:
        raw = f.read(_MAX_FILE_BYTES + 1)
    if len(raw) > _MAX_FILE_BYTES:
        raise ValueError("larger than a key and a certificate")
    text = raw.decode("ascii")
    start, end = text.find(_BEGIN), text.find(_END)
    if start < 0 or end < start:
        raise ValueError("no certificate in it")
    der = ssl.PEM_cert_to_DER_cert(text[start:end + len(_END)])
    # Key and certificate must parse and match: what the server context will need.
    ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(path)
    return TlsCertificate(path, der)


def _new_pem() -> bytes:
    """A new key and certificate, made by a child process (see the module's doc)."""
    try:
        made = subprocess.run([sys.executable, "-m", "peer.storage.tls_cert"],
                              capture_output=True, timeout=_MAKE_TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        raise ValueError(f"making a key took more than {_MAKE_TIMEOUT:.0f} s") from None
    if made.returncode != 0 or _BEGIN.encode() not in made.stdout:
        why = made.stderr.decode(errors="replace").strip().splitlines()
        raise ValueError(f"the certificate maker failed (exit {made.returncode}): "
                         f"{why[-1] if why else 'no output'}")
    return made.stdout


def make_pem() -> bytes:
    """A fresh ECDSA P-256 key and its self-signed certificate, as PEM."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "auction-peer node")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        # Nobody checks the dates (peers check the binding, not a chain); RFC 5280's
        # "no well-defined expiration" keeps strict TLS stacks from refusing it.
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(datetime.datetime(9999, 12, 31, 23, 59, 59, tzinfo=datetime.UTC))
        .sign(key, hashes.SHA256())
    )
    return (key.private_bytes(serialization.Encoding.PEM,
                              serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption())
            + certificate.public_bytes(serialization.Encoding.PEM))


def _create(path: Path) -> None:
    write_durably(path, _new_pem())


if __name__ == "__main__":
    sys.stdout.buffer.write(make_pem())

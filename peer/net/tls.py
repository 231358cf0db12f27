"""TLS on the public port, bound to the node ids by the Hello handshake.

Both sides speak TLS 1.3 with ALPN ``h2``. The server presents the node's
self-signed certificate (``peer.storage.tls_cert``); the client accepts any certificate at
the TLS layer (there is no CA to check it against) and instead requires the node to
sign the SHA-256 of the certificate it was shown, in its Hello proof
(``peer.core.handshake``). A node in the middle with a certificate of its own therefore
fails the handshake: the real node's proof names the real node's certificate, and
the man in the middle cannot make a proof for the certificate it presents without
the real node's key.

Clients present no certificate. Python's ``ssl`` can ask a client for one, but then
checks it against CAs and has no callback to accept a self-signed one by its hash
instead, so the caller's side is bound differently: its ``Prove`` travels inside the
TLS connection whose server certificate it checked and signs that certificate's
hash too, so nobody else can read it, replay it on another connection or ride a
connection it vouched for.

Everything sent on a channel after its Hello must reach the same node: a grpclib
channel reconnects by itself, so ``peer.net.h2_guard.GuardedChannel`` pins the
certificate of the channel's first connection and refuses any later connection that
presents another one.
"""

from __future__ import annotations

import functools
import ssl
from typing import Any, Final

from peer.storage.tls_cert import TlsCertificate, binding_of

__all__ = ["ALPN", "CertificateChanged", "client_context", "describe_tls_failure", "is_tls",
           "peer_binding", "server_context"]

ALPN: Final = "h2"


class CertificateChanged(ConnectionError):
    """A reconnection presented another certificate than the channel's first connection."""


def server_context(certificate: TlsCertificate) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.load_cert_chain(certificate.path)
    context.set_alpn_protocols([ALPN])
    return context


@functools.cache
def client_context() -> ssl.SSLContext:
    """One context for every outgoing connection (it holds no per-peer state)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    # No CA and no host name: the node proves the certificate is its own in Hello.
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols([ALPN])
    return context


def peer_binding(transport: Any) -> bytes:
    """SHA-256 of the certificate the other end of ``transport`` presented; empty
    for a plain connection (or one without a certificate)."""
    ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
    if ssl_object is None:
        return b""
    der = ssl_object.getpeercert(binary_form=True)
    return binding_of(der) if der else b""


def is_tls(transport: Any) -> bool:
    return transport is not None and transport.get_extra_info("ssl_object") is not None


def describe_tls_failure(exc: BaseException, tls: bool) -> str | None:
    """The words for a failed TLS connection (``tls``: we dialed with TLS), else None.

    A TLS node dialing a plain one fails in the TLS handshake (the other side
    answers HTTP/2 bytes); the plain node logs that a TLS caller reached it
    (``peer.net.h2_guard``). A plain node dialing a TLS one only sees its connection
    closed, which says nothing certain, so nothing is claimed for that direction.
    """
    if tls and isinstance(exc, ssl.SSLError):
        return (f"TLS handshake failed ({_short(exc)}): the node there may run "
                "with --no-tls; every node of a network must use the same setting")
    return None


def _short(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return str(exc.reason).lower().replace("_", " ")
    return str(exc) or type(exc).__name__

"""Records returned by :class:`grape_client.GrapeClient`."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["GrapeRecord"]


@dataclass(frozen=True, slots=True)
class GrapeRecord:
    """A value found by :meth:`GrapeClient.get <grape_client.GrapeClient.get>`.

    The fields are the keys of Grape's get reply (grape-http-api.md §5).

    Attributes:
        id: DHT node id (40 hex digits) of the node that answered; random per
            grape process, so never compare it across runs.
        token: write token of a remote answer (40 hex digits), or None when the
            grape asked held the value itself.
        v: the stored value. Grape always returns it as a string (a number put
            as ``5`` comes back as ``"5"``).
        seq: sequence number of a mutable (BEP44) value; None for immutable ones.
        salt: salt of a mutable value, if the reply carries one.
        k: public key (hex) of a mutable value.
        sig: signature (hex) of a mutable value.
    """

    id: str
    token: str | None
    v: str
    seq: int | None = None
    salt: str | None = None
    k: str | None = None
    sig: str | None = None

"""The protobuf codec for every gRPC channel and server: size-capped, never crashing.

grpclib 0.4.9 has no message size limit, and a decode error inside a handler
surfaces as ``UNKNOWN`` with a traceback in the log. This codec turns both into
clear refusals on the wire (DESIGN.md section 7): too large is
``RESOURCE_EXHAUSTED``, undecodable is ``INVALID_ARGUMENT``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from grpclib import GRPCError
from grpclib.const import Status
from grpclib.encoding.proto import ProtoCodec

from peer.core.envelopes import decode_push, decode_sync_reply, encode_push, encode_sync_reply
from peer.core.fast_encode import FAST_ENCODERS
from peer.core.proto_check import check_types
from peer.gen.auction.v1 import PushRequest, SyncReply

__all__ = ["MAX_MESSAGE_BYTES", "LimitedCodec"]

#: The same default as grpc-core's max receive size: far above any page or push
#: the node sends (pages are capped by event count), far below a memory problem.
MAX_MESSAGE_BYTES: Final = 4 * 1024 * 1024


# The envelopes that carry events in bulk get a hand-written codec: betterproto2
# costs more per event than the signature check (peer/core/envelopes.py).
# So do the replies a node encodes once per bid (peer/core/fast_encode.py).
_FAST_ENCODE: Final[dict[type, Callable[[Any], bytes]]] = {
    SyncReply: encode_sync_reply,
    PushRequest: encode_push,
    **FAST_ENCODERS,
}
_FAST_DECODE: Final[dict[type, Callable[[bytes], Any]]] = {
    SyncReply: decode_sync_reply,
    PushRequest: decode_push,
}


class LimitedCodec(ProtoCodec):
    """``ProtoCodec`` that refuses oversized and malformed messages with a gRPC status."""

    def __init__(self, max_bytes: int = MAX_MESSAGE_BYTES) -> None:
        self.max_bytes = max_bytes

    def encode(self, message: Any, message_type: Any) -> bytes:
        fast = _FAST_ENCODE.get(message_type)
        if fast is not None and type(message) is message_type:
            return fast(message)
        encoded: bytes = super().encode(message, message_type)
        return encoded

    def decode(self, data: bytes, message_type: Any) -> Any:
        if len(data) > self.max_bytes:
            raise GRPCError(Status.RESOURCE_EXHAUSTED,
                            f"message of {len(data)} bytes exceeds the limit of "
                            f"{self.max_bytes}")
        try:
            fast = _FAST_DECODE.get(message_type)
            if fast is not None:
                return fast(data)
            message = message_type.FromString(data)
            check_types(message)  # betterproto2 does not check wire types
            return message
        except Exception as exc:  # any decode failure is the sender's fault
            raise GRPCError(Status.INVALID_ARGUMENT,
                            f"malformed {getattr(message_type, '__name__', 'message')}: "
                            f"{exc}") from None

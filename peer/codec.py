"""The protobuf codec for every gRPC channel and server: size-capped, never crashing.

grpclib 0.4.9 has no message size limit, and a decode error inside a handler
surfaces as ``UNKNOWN`` with a traceback in the log. This codec turns both into
clear refusals on the wire (DESIGN.md section 7): too large is
``RESOURCE_EXHAUSTED``, undecodable is ``INVALID_ARGUMENT``.
"""

from __future__ import annotations

from typing import Any, Final

from grpclib import GRPCError
from grpclib.const import Status
from grpclib.encoding.proto import ProtoCodec

__all__ = ["MAX_MESSAGE_BYTES", "LimitedCodec"]

#: The same default as grpc-core's max receive size: far above any page or push
#: the node sends (pages are capped by event count), far below a memory problem.
MAX_MESSAGE_BYTES: Final = 4 * 1024 * 1024


class LimitedCodec(ProtoCodec):
    """``ProtoCodec`` that refuses oversized and malformed messages with a gRPC status."""

    def __init__(self, max_bytes: int = MAX_MESSAGE_BYTES) -> None:
        self.max_bytes = max_bytes

    def decode(self, data: bytes, message_type: Any) -> Any:
        if len(data) > self.max_bytes:
            raise GRPCError(Status.RESOURCE_EXHAUSTED,
                            f"message of {len(data)} bytes exceeds the limit of "
                            f"{self.max_bytes}")
        try:
            return message_type.FromString(data)
        except Exception as exc:  # any decode failure is the sender's fault
            raise GRPCError(Status.INVALID_ARGUMENT,
                            f"malformed {getattr(message_type, '__name__', 'message')}: "
                            f"{exc}") from None

"""Refuse decoded messages whose fields hold the wrong Python type.

betterproto2 0.10 does not check wire types: ``SignedBid.FromString(b"\\x08\\x01")``
(field 1 as a varint) returns ``SignedBid(bid=1)``, an ``int`` in a ``bytes`` field,
and ``SyncRequest`` from the same bytes holds ``heads=[1]``. Handlers then fail with
``TypeError`` or ``AttributeError`` deep inside, which grpclib reports as
``UNKNOWN``. ``check_types`` walks a decoded message against its field metadata so
the codec can refuse such input as ``INVALID_ARGUMENT`` before any handler runs.
"""

from __future__ import annotations

from typing import Any, Final

import betterproto2

__all__ = ["check_types"]

_INTEGER_TYPES: Final = frozenset({
    "int32", "int64", "uint32", "uint64", "sint32", "sint64", "fixed32", "sfixed32",
    "fixed64", "sfixed64", "enum"})
_FLOAT_TYPES: Final = frozenset({"float", "double"})


def check_types(message: betterproto2.Message, path: str = "") -> None:
    """Raise ``ValueError`` naming the first field whose value has the wrong type."""
    # betterproto2's per-class field metadata (typed too loosely for mypy to follow).
    meta: Any = getattr(type(message), "_betterproto")  # noqa: B009
    for name, field in meta.meta_by_field_name.items():
        value = getattr(message, name, None)
        if value is None:
            # Unset: fine for a message, an optional or a oneof member; betterproto2
            # also leaves None behind for a wire type it skips (a group), which a
            # plain scalar never is.
            if field.proto_type == "message" or field.optional or field.group:
                continue
            raise ValueError(f"field {path}{name}: expected {field.proto_type}, got nothing")
        where = f"{path}{name}"
        if field.map_meta is not None or field.proto_type == "map":
            if not isinstance(value, dict):
                raise ValueError(f"field {where}: expected a map")
            continue
        if field.repeated:
            if not isinstance(value, list):
                raise ValueError(f"field {where}: expected a repeated field")
            for index, item in enumerate(value):
                _check_one(meta, name, field.proto_type, item, f"{where}[{index}]")
        else:
            _check_one(meta, name, field.proto_type, value, where)


def _check_one(meta: Any, name: str, proto_type: str, value: object, where: str) -> None:
    if proto_type == "bytes":
        ok = isinstance(value, bytes)
    elif proto_type == "string":
        ok = isinstance(value, str)
    elif proto_type == "bool":
        ok = isinstance(value, bool)
    elif proto_type in _INTEGER_TYPES:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif proto_type in _FLOAT_TYPES:
        ok = isinstance(value, float)
    elif proto_type == "message":
        ok = isinstance(value, meta.cls_by_field[name])
        if ok:
            assert isinstance(value, betterproto2.Message)
            check_types(value, f"{where}.")
    else:  # a type this schema does not use: nothing to compare against
        ok = True
    if not ok:
        raise ValueError(f"field {where}: expected {proto_type}, got {type(value).__name__}")

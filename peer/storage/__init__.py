"""What a node keeps on disk: the event log, its data dir, and the order commits finish in.

The event store (SQLite, group-committed and fsync'd), the paths and lock of a data
dir, the identity a data dir holds, remembered ports and names, and the bookkeeping of
events applied but not yet durable. Storage knows the core's types and nothing of the
network or the faces above it (tests/unit/test_layers.py)."""

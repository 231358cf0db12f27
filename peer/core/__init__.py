"""The auction protocol with no I/O: auctions, rules, signed events, the ledger, the wire.

Nothing here opens a file or a socket, sleeps or spawns: it takes bytes and state and
gives back bytes, state and decisions, so it is tested without a network or a disk.
It imports nothing from the other layers of `peer` (tests/unit/test_layers.py)."""

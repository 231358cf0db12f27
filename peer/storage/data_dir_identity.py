"""A data dir's identity at start: never replaced silently, never half made.

The key and the event log belong together: the node's own events in the log are
signed with that key, and only that key can close its auctions. So a log with
events but no key refuses to start (a new key would be a stranger to its own
log), and a start that fails on a data dir that had no key yet takes back the
key it made, with the database it began, so a later start does not pair that
key with a log restored from a backup or with events it never authored.
"""

from __future__ import annotations

from pathlib import Path

from peer.core.identity import Identity
from peer.storage import paths
from peer.storage.key_file import IdentityError, load_or_create
from peer.storage.store import EventStore

__all__ = ["StartIdentity"]


class StartIdentity:
    """The identity a node starts with, and whether this start created it."""

    def __init__(self, identity: Identity, data_dir: Path, created: bool) -> None:
        self.identity = identity
        self.data_dir = data_dir
        self.created = created

    @classmethod
    def open(cls, data_dir: Path, name: str, store: EventStore) -> StartIdentity:
        """Load the data dir's key, or create one if the data dir has no events yet.

        Call with the data dir locked and ``store`` (its database) open.

        Raises:
            IdentityError: The key is missing but the database holds events, or the
                key file is damaged or cannot be written.
        """
        key_path = paths.key_path(data_dir)
        created = not key_path.exists() and not key_path.is_symlink()
        if created:
            events = store.count()
            if events:
                raise IdentityError(
                    f"{store.path} holds {events} event(s) but the node key {key_path} is "
                    f"missing: a new key could not close this node's auctions, so none was "
                    f"made. Restore {key_path.name} from a backup; or, to start over as a "
                    f"new node, move {store.path.name} (and its -wal file) out of "
                    f"{data_dir}")
        return cls(load_or_create(key_path, name), data_dir, created)

    def abandon(self) -> None:
        """Undo a failed first start: remove the key it made and the database it began.

        Call only after the store is closed, and only when the node authored nothing:
        the database then holds at most events it copied from peers, which any later
        start syncs again. Does nothing if this start did not create the key.
        """
        if not self.created:
            return
        database = paths.database_path(self.data_dir)
        # The log before the database: a database missing while its log is not
        # would make the next start refuse (the store protects that log).
        for path in (database.with_name(database.name + "-wal"),
                     database.with_name(database.name + "-shm"),
                     database, paths.key_path(self.data_dir)):
            path.unlink(missing_ok=True)

"""A seller whose data dir fills up (a real, small tmpfs): refused, not crashed, not lost.

Needs root to mount the tmpfs (CI runs as root); skips with the reason otherwise.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

import pytest

from tests.e2e.harness import CliResult, NodeProc
from tests.support import running_grapes

TMPFS_SIZE = "4m"
MAX_BIDS_TO_FILL = 400  # a few WAL frames each; the WAL must grow long before this


@contextmanager
def _small_tmpfs(where: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (CI runs as root)")
    where.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE},mode=0700",
                              "tmpfs", str(where)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def _fill(disk: Path) -> Path:
    """Take every free byte of ``disk``; remove the returned file to give them back."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        for size in (65536, 4096, 512):  # big chunks, then what is left of a page
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError:
                pass
    finally:
        os.close(fd)
    return filler


def _seqs_on_disk(db: Path) -> dict[bytes, list[int]]:
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        rows = conn.execute("SELECT author, seq FROM events ORDER BY author, seq").fetchall()
    seqs: dict[bytes, list[int]] = {}
    for author, seq in rows:
        seqs.setdefault(author, []).append(seq)
    return seqs


def _refused_for_storage(result: CliResult) -> bool:
    return result.code == 1 and "STORAGE_UNAVAILABLE" in result.stderr


def test_a_full_disk_refuses_bids_with_the_reason_and_takes_them_again_once_freed(
        tmp_path: Path) -> None:
    with _small_tmpfs(tmp_path / "disk") as disk, \
            running_grapes([sys.executable, "-m", "localgrape"], count=1) as grapes:
        urls = [grapes[0].url]
        seller = NodeProc("Client#1", disk / "Client1", urls).start()
        bidder = NodeProc("Client#2", tmp_path / "Client2", urls).start()
        try:
            seller.wait_peers(1)
            bidder.wait_peers(1)
            assert seller.cli("open", "Pic#1", "1").code == 0
            bidder.wait_text("opened Pic#1")
            filler = _fill(disk)

            accepted: list[int] = []
            refused: CliResult | None = None
            for amount in range(1, MAX_BIDS_TO_FILL + 1):
                result = bidder.cli("bid", "Client#1->Pic#1", str(amount))
                if result.code == 0:
                    accepted.append(amount)
                    continue
                assert _refused_for_storage(result), result
                refused = result
                break
            assert refused is not None, f"{len(accepted)} bids fit on a full {TMPFS_SIZE} disk"
            # The bidder is told the seller's disk is the problem, in the OS's words.
            assert "full" in refused.stderr, refused.stderr
            assert "Traceback" not in refused.stderr

            # Still refused while full; the seller's own writes too, with the reason.
            again = bidder.cli("bid", "Client#1->Pic#1", str(amount + 1))
            assert _refused_for_storage(again), again
            opened = seller.cli("open", "Pic#2", "1")
            assert _refused_for_storage(opened) and "full" in opened.stderr, opened
            # Reads go on: what was acknowledged is shown, nothing refused is.
            shown = seller.cli("show", "Client#1->Pic#1", "--json", "--oldest-first",
                               "--limit", "1000")
            assert shown.code == 0, shown
            assert [b["amount"] for b in shown.json()["bids"]] == [str(a) for a in accepted]

            errors = [line for line in seller.stderr_lines if " ERROR " in line]
            assert len(errors) == 1 and "cannot write the event log" in errors[0], errors

            filler.unlink()  # space is back: no restart needed
            result = bidder.cli("bid", "Client#1->Pic#1", str(amount + 2))
            assert result.code == 0, result
            accepted.append(amount + 2)
            assert sum("writable again" in line for line in seller.stderr_lines) == 1
            assert not [line for line in seller.stderr_lines if "Traceback" in line]
        finally:
            seller.stop()
            bidder.stop()

        # Nothing acknowledged is lost across a restart, and the log has no hole.
        seqs = _seqs_on_disk(disk / "Client1" / "events.sqlite3")
        assert all(s == list(range(1, len(s) + 1)) for s in seqs.values()), seqs
        seller.start()
        try:
            shown = seller.cli("show", "Client#1->Pic#1", "--json", "--oldest-first",
                               "--limit", "1000")
            assert [b["amount"] for b in shown.json()["bids"]] == [str(a) for a in accepted]
        finally:
            seller.stop()

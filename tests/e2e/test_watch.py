"""`watch` streams a node's notifications; the control socket is private to its user."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

from tests.e2e.harness import child_env, nodes
from tests.support import ROOT, running_grapes


def test_watch_streams_notifications_and_socket_is_0600(tmp_path: Path) -> None:
    with running_grapes([sys.executable, "-m", "localgrape"], count=1) as grapes, \
            nodes(tmp_path, [grapes[0].url], ["Client#1", "Client#2"]) as (c1, c2):
        socket_path = Path(c1.ready["control_socket"])
        assert stat.S_IMODE(os.stat(socket_path).st_mode) == 0o600
        c1.wait_peers(1)

        watch = subprocess.Popen(
            [sys.executable, "-m", "peer", "watch", "--json", "--data-dir", str(c2.data_dir)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env(), cwd=ROOT)
        lines: list[dict[str, object]] = []
        first, closed_seen = threading.Event(), threading.Event()

        def read() -> None:
            assert watch.stdout is not None
            for line in watch.stdout:
                lines.append(json.loads(line))
                first.set()
                if lines[-1].get("event") == "closed":
                    closed_seen.set()

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        try:
            # The watcher subscribes asynchronously: open auctions until it shows one.
            for attempt in range(50):
                assert c1.cli("open", f"Warmup#{attempt}", "1").code == 0
                if first.wait(timeout=0.5):
                    break
            assert first.is_set(), "watch printed nothing"
            assert c1.cli("open", "Pic#1", "75").code == 0
            assert c2.cli("bid", "Client#1->Pic#1", "80").code == 0
            assert c1.cli("close", "Client#1->Pic#1").code == 0
            assert closed_seen.wait(timeout=15), lines
        finally:
            watch.terminate()
            watch.wait(timeout=10)
            reader.join(timeout=10)
            for pipe in (watch.stdout, watch.stderr):
                if pipe is not None:
                    pipe.close()
        closed = [r for r in lines if r.get("event") == "closed"]
        assert closed[0]["winner"] == "Client#2" and closed[0]["amount"] == "80"
        assert any(r.get("event") == "bid" and r.get("bidder") == "Client#2" for r in lines)

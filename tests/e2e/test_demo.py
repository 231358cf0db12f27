"""`python -m peer demo`, the project's front door, plays the scenario and exits 0."""

from __future__ import annotations

import subprocess
import sys

from tests.support import ROOT


def test_demo_plays_the_reference_scenario() -> None:
    proc = subprocess.run([sys.executable, "-m", "peer", "demo"], capture_output=True,
                          text=True, timeout=90, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    for name in ("Client#1", "Client#2", "Client#3"):
        assert f"[{name}] " in out
        # Each node printed the winner line itself.
        assert any(line.startswith(f"    [{name}]") and "Client#2 -> 80 USDt" in line
                   for line in out.splitlines()), out
    assert "Traceback" not in proc.stderr

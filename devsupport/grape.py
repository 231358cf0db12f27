"""The real grenache-grape (pinned in package.json), and whether a grape answers."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
# Where `make grape` (npm ci) installs the real grape.
NPM_GRAPE = ROOT / "node_modules" / ".bin" / "grape"


def grape_bin() -> str | None:
    """The real grenache-grape executable, or None when Node or the package is absent.

    ``GRAPE_BIN`` names it explicitly; otherwise ``node_modules/.bin/grape`` when
    ``node`` is on PATH.
    """
    explicit = os.environ.get("GRAPE_BIN")
    if explicit:
        return explicit
    if NPM_GRAPE.exists() and shutil.which("node"):
        return str(NPM_GRAPE)
    return None


def grape_answers(url: str) -> bool:
    """Whether the grape HTTP API at ``url`` answers a lookup (any HTTP answer counts)."""
    try:
        httpx.post(f"{url}/lookup", json={"data": "probe"}, timeout=1.0)
    except httpx.HTTPError:
        return False
    return True

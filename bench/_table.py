"""A readable table of the headline figures in a ``python -m bench`` result."""

from __future__ import annotations

import os
import platform
from collections.abc import Iterator
from typing import Any

# Leaves whose key mentions one of these are headline figures; the rest (sample
# counts, windows, raw lists) stay in the JSON file.
_HEADLINE = ("ratio", "per_s", "rps", "p50", "p99", "max_ms", "goal", "rss", "_s", "seconds",
             "incomplete")
_SKIP = ("window_s", "generate_s", "latency_p50")


def _leaves(node: Any, path: str) -> Iterator[tuple[str, Any]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _leaves(value, f"{path}.{key}" if path else str(key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _leaves(value, f"{path}[{index}]")
    elif isinstance(node, (int, float, bool)) or node is None:
        yield path, node


def machine() -> str:
    """One line describing the machine the figures come from."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return (f"{os.cpu_count()} cores ({cpu}), Python {platform.python_version()}, "
            f"{platform.system()} {platform.release()}")


def table(results: dict[str, Any]) -> str:
    """Rows of ``module  figure  value`` for every headline leaf."""
    rows = []
    for module, result in results.items():
        for path, value in _leaves(result, ""):
            last = path.rsplit(".", 1)[-1]
            if any(word in last for word in _HEADLINE) and not any(
                    skip in last for skip in _SKIP):
                text = f"{value:.3f}" if isinstance(value, float) else str(value)
                rows.append((module, path, text))
    width_m = max((len(r[0]) for r in rows), default=6)
    width_p = max((len(r[1]) for r in rows), default=6)
    lines = [f"machine: {machine()}", ""]
    lines += [f"{m:<{width_m}}  {p:<{width_p}}  {v}" for m, p, v in rows]
    return "\n".join(lines)

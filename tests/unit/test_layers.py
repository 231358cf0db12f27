"""The layers of `peer` import one way: core < storage < net < node < cli.

Every import of every module under peer/ (function-level ones too) is read from
the source, so a new arrow pointing up fails here before a reader has to find it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PEER = Path(__file__).resolve().parents[2] / "peer"

#: Rank of each layer: a module may import from its own rank or below.
RANKS = {"core": 0, "storage": 1, "net": 2, "node": 3, "cli": 4}

#: What the I/O-free core may not import: sockets, files of its own, threads, loops.
IO_MODULES = frozenset({"asyncio", "grpclib", "h2", "httpx", "pathlib", "shutil", "socket",
                        "sqlite3", "subprocess", "threading", "trio", "trio_asyncio"})


def layer_of(module: str) -> str | None:
    """The layer of a dotted module name under ``peer``; None for generated code."""
    parts = module.split(".")
    assert parts[0] == "peer", module
    if len(parts) == 1 or parts[1] == "gen":
        return None  # the package itself and the generated messages: below every layer
    if parts[1] in ("core", "storage", "net", "cli"):
        return parts[1]
    if parts[1] in ("__main__", "_protogen"):
        return "cli"  # entry points: the outermost face
    return "node"  # the top-level modules that wire the layers together


def module_name(path: Path) -> str:
    rel = path.relative_to(PEER.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(module: str, source: str, *, is_package: bool = False) -> list[tuple[int, str]]:
    """(line, absolute module) of every import in ``source``, the text of ``module``."""
    package = module if is_package else module.rpartition(".")[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            # `from peer.storage import paths` imports the module peer.storage.paths.
            found.extend((node.lineno, f"{target}.{alias.name}") for alias in node.names)
    return found


def upward(module: str, source: str, *, is_package: bool = False) -> list[str]:
    """The imports of ``module`` that reach a layer above its own."""
    here = layer_of(module)
    if here is None:
        return []
    return [f"line {line}: {here} imports {target} ({there})"
            for line, target in imports(module, source, is_package=is_package)
            if target.startswith("peer.") and (there := layer_of(target)) is not None
            and RANKS[there] > RANKS[here]]


def io_imports(module: str, source: str) -> list[str]:
    return [f"line {line}: {target}" for line, target in imports(module, source)
            if target.split(".")[0] in IO_MODULES]


def sources() -> list[Path]:
    return sorted(p for p in PEER.rglob("*.py") if "gen" not in p.relative_to(PEER).parts)


def test_every_module_has_a_layer() -> None:
    assert {layer_of(module_name(p)) for p in sources()} - {None} == set(RANKS)


@pytest.mark.parametrize("path", sources(), ids=lambda p: str(p.relative_to(PEER)))
def test_imports_point_down(path: Path) -> None:
    found = upward(module_name(path), path.read_text(encoding="utf-8"),
                   is_package=path.name == "__init__.py")
    assert not found, "\n".join(found)


@pytest.mark.parametrize("path", [p for p in sources() if layer_of(module_name(p)) == "core"],
                         ids=lambda p: str(p.relative_to(PEER)))
def test_core_does_no_io(path: Path) -> None:
    found = io_imports(module_name(path), path.read_text(encoding="utf-8"))
    assert not found, "\n".join(found)


def test_the_walk_finds_arrows_up_and_io() -> None:
    """The checks themselves: absolute, relative, from-package and nested imports."""
    source = ("from peer.node import Node\n"
              "from ..net import mesh\n"
              "from peer import reports\n"
              "def f() -> None:\n"
              "    import trio\n"
              "    from peer.cli.output import Output\n")
    found = upward("peer.storage.fake", source)
    assert len(found) == 4, found  # node, net.mesh, reports (node layer), cli.output
    assert io_imports("peer.core.fake", source) == ["line 5: trio"]
    assert upward("peer.cli.fake", source) == []
    assert upward("peer.core.fake", "from peer.gen.auction.v1 import Bid\n") == []


def test_readme_layout_table_names_every_module() -> None:
    """The README's layout table and the tree say the same thing."""
    readme = (PEER.parent / "README.md").read_text(encoding="utf-8")
    rows = {line.split("|")[1].strip().strip("`"): line for line in readme.splitlines()
            if line.startswith("| `peer/") and line.count("|") >= 4}
    assert set(rows) == {f"peer/{layer}/" for layer in RANKS}, sorted(rows)
    missing = []
    for path in sources():
        module = module_name(path)
        layer = layer_of(module)
        stem = path.stem if path.name != "__init__.py" else None
        if layer is None or stem is None or module in ("peer.__main__", "peer._protogen"):
            continue
        if f"`{stem}`" not in rows[f"peer/{layer}/"]:
            missing.append(f"{module} is not in the README row of peer/{layer}/")
    assert not missing, "\n".join(missing)

"""What `pip install .` promises: every runtime import is a declared dependency.

The dev venv holds far more than the runtime needs (grpcio-tools alone brings
protobuf), so a missing declaration would never show in the other tests. These
tests read the imports and pyproject instead of trusting the venv; `.ci/wheel-check`
proves the same thing for real in a bare venv.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.support import ROOT

PACKAGES = ("peer", "grape_client", "localgrape")
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def _declared() -> dict[str, Requirement]:
    reqs = (Requirement(r) for r in PYPROJECT["project"]["dependencies"])
    return {canonicalize_name(r.name): r for r in reqs}


def _distributions_of(modules: set[str]) -> set[str]:
    """Top-level module names -> the distributions that provide them."""
    provided = metadata.packages_distributions()
    dists: set[str] = set()
    for module in modules:
        assert module in provided, f"{module} is imported but no installed distribution has it"
        dists.update(canonicalize_name(d) for d in provided[module])
    return dists


def _third_party(modules: set[str]) -> set[str]:
    return {m for m in modules if m not in sys.stdlib_module_names and m not in PACKAGES}


def _imported_modules(source: Path) -> set[str]:
    """Top-level names of every absolute import in ``source``, wherever it sits."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source.read_text(), str(source))):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def _requires_closure(roots: set[str]) -> set[str]:
    """``roots`` and everything they require, without extras (what pip installs)."""
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for text in metadata.requires(name) or []:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(canonicalize_name(req.name))
    return seen


def test_every_direct_import_is_declared() -> None:
    imported: set[str] = set()
    for package in PACKAGES:
        for source in (ROOT / package).rglob("*.py"):
            imported |= _imported_modules(source)
    missing = _distributions_of(_third_party(imported)) - set(_declared())
    assert not missing, f"imported but not in [project.dependencies]: {sorted(missing)}"


def test_every_module_loaded_at_run_time_comes_with_the_declared_dependencies() -> None:
    # Catches what the AST cannot see: a dependency importing a package it only
    # declares as an extra (grpclib.health -> google.protobuf).
    script = (
        "import importlib, json, pkgutil, sys\n"
        f"for name in {PACKAGES!r}:\n"
        "    package = importlib.import_module(name)\n"
        "    for info in pkgutil.walk_packages(package.__path__, name + '.'):\n"
        # __main__ runs a CLI; _protogen is dev-only (it drives the proto compiler).
        "        if not info.name.endswith(('.__main__', '._protogen')):\n"
        "            importlib.import_module(info.name)\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))\n"
    )
    # Not under coverage (`make test` measures subprocesses): it would add its own modules.
    env = {k: v for k, v in os.environ.items() if not k.startswith("COVERAGE_")}
    loaded = json.loads(subprocess.run([sys.executable, "-c", script], cwd=ROOT, check=True,
                                       capture_output=True, text=True, timeout=60,
                                       env=env).stdout)
    dists = _distributions_of({m for m in _third_party(set(loaded)) if not m.startswith("_")})
    missing = dists - _requires_closure(set(_declared()))
    assert not missing, f"loaded at run time but installed by nothing declared: {sorted(missing)}"


def _pins(lock: Path) -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in lock.read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"{lock.name}: {line!r} is not pinned"
            pins[canonicalize_name(name)] = version
    return pins


def test_runtime_lock_pins_every_declared_dependency_within_its_range() -> None:
    pins = _pins(ROOT / "requirements.lock")
    for name, req in _declared().items():
        assert name in pins, f"requirements.lock lacks {name}"
        assert req.specifier.contains(pins[name]), f"{name}=={pins[name]} is outside {req}"


def test_runtime_lock_holds_only_what_the_runtime_needs_at_the_dev_versions() -> None:
    runtime, dev = _pins(ROOT / "requirements.lock"), _pins(ROOT / "requirements-dev.lock")
    assert set(runtime) == _requires_closure(set(_declared()))
    assert {n: dev.get(n) for n in runtime} == runtime


def test_dev_lock_pins_the_test_and_dev_extras_exactly() -> None:
    dev = _pins(ROOT / "requirements-dev.lock")
    for group in ("test", "dev"):
        for text in PYPROJECT["project"]["optional-dependencies"][group]:
            req = Requirement(text)
            assert req.specifier.contains(dev[canonicalize_name(req.name)]), text


def test_build_metadata_is_current() -> None:
    # A license table makes setuptools >= 77 print a deprecation warning per build
    # step; the SPDX string needs setuptools >= 77, so the build must ask for it.
    assert PYPROJECT["project"]["license"] == "MIT"
    (setuptools,) = [Requirement(r) for r in PYPROJECT["build-system"]["requires"]
                     if Requirement(r).name == "setuptools"]
    assert not setuptools.specifier.contains("76.9"), setuptools
    assert setuptools.specifier.contains("77.0.0"), setuptools


def test_every_package_is_marked_typed() -> None:
    for package in PACKAGES:
        assert (ROOT / package / "py.typed").is_file(), package


def test_ci_checks_the_wheel_in_a_bare_venv() -> None:
    run = (ROOT / ".ci" / "run").read_text()
    check = (ROOT / ".ci" / "wheel-check").read_text()
    assert re.search(r"^\.ci/wheel-check$", run, re.MULTILINE)
    assert "pip wheel" in check and "auction-peer\" demo" in check and "timeout" in check

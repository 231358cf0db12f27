"""Generate ``peer/gen`` from ``proto/`` with betterproto2-compiler.

``python -m peer._protogen`` (or ``make proto``) rewrites ``peer/gen``;
``generate(dest)`` writes the same files elsewhere, which is how the test suite
checks that the committed code is not stale.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"
GEN_DIR = Path(__file__).resolve().parent / "gen"
PLUGIN_OPTS = "client_generation=async,server_generation=async"


def proto_files() -> list[Path]:
    return sorted(PROTO_DIR.rglob("*.proto"))


def generate(dest: Path) -> None:
    """Run protoc with the betterproto2 plugin, writing the package into ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    # The plugin is found on PATH; it lives beside this interpreter in the venv.
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    cmd = [
        sys.executable,
        "-m",
        "grpc_tools.protoc",
        f"-I{PROTO_DIR}",
        f"--python_betterproto2_out={dest}",
        f"--python_betterproto2_opt={PLUGIN_OPTS}",
        *(str(p) for p in proto_files()),
    ]
    subprocess.run(cmd, check=True, env=env, capture_output=True)


def generated_files(root: Path) -> dict[str, bytes]:
    """Relative path -> contents for every generated file under ``root``."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts
    }


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "gen"
        generate(out)
        if GEN_DIR.exists():
            shutil.rmtree(GEN_DIR)
        shutil.copytree(out, GEN_DIR)
    print(f"wrote {GEN_DIR.relative_to(ROOT)} from {len(proto_files())} proto file(s)")


if __name__ == "__main__":
    main()

"""The README's "Three terminals" walkthrough, pasted line by line into a shell.

Its ``sh`` blocks are read from the README itself, so the README cannot drift from
what the CLI does: each line runs through ``bash -c`` as typed (quoting, ``#`` and
``->`` included), with localgrape for ``node_modules/.bin/grape`` (same flags) and
free ports for the README's fixed ones.
"""

from __future__ import annotations

import re
import shlex
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest

from devsupport.ports import free_port, free_tcp_udp_port
from tests.e2e.harness import child_env
from tests.support import ROOT, wait_until

SECTION = "## Three terminals with the real grape"
WINNER_LINE = "Client#1->Pic#1 closed: Client#2 -> 80 USDt"


def _sh_blocks() -> list[list[str]]:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index(SECTION):]
    section = section[:section.index("\n## ", len(SECTION))]
    blocks = re.findall(r"```sh\n(.*?)```", section, re.S)
    return [[line for line in block.splitlines() if line.strip()] for block in blocks]


def _localize(line: str, ports: dict[str, str]) -> str:
    """The line as typed, on free ports, with this interpreter and localgrape."""
    for fixed, free in ports.items():
        line = line.replace(fixed, free)
    python = shlex.quote(sys.executable)
    line = line.replace("node_modules/.bin/grape", f"{python} -m localgrape")
    return re.sub(r"^python ", f"{python} ", line)


@contextmanager
def _background(line: str, env: dict[str, str], out: Path) -> Iterator[subprocess.Popen[bytes]]:
    with out.open("wb") as sink:
        proc = subprocess.Popen(["bash", "-c", f"exec {line.rstrip(' &')}"], stdout=sink,
                                stderr=subprocess.STDOUT, env=env, cwd=out.parent)
    try:
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_walkthrough_as_written(tmp_path: Path) -> None:
    grapes, seller, bidders, commands = _sh_blocks()
    ports = {"20001": str(free_tcp_udp_port()), "20002": str(free_tcp_udp_port()),
             "30001": str(free_port()), "40001": str(free_port())}
    env = child_env() | {"AUCTION_PEER_HOME": str(tmp_path / "home"),
                         "AUCTION_PEER_LOOKUP_INTERVAL": "0.3",
                         "AUCTION_PEER_ANNOUNCE_INTERVAL": "1.0"}
    shell_dir = tmp_path / "shell"  # where the user types: must stay empty
    shell_dir.mkdir()
    with ExitStack() as stack:
        for i, line in enumerate(grapes):
            stack.enter_context(_background(_localize(line, ports), env, tmp_path / f"g{i}"))
        terminals: dict[str, Path] = {}
        for line in seller + bidders:
            name = re.search(r"--name (\S+)", line)
            assert name is not None, line
            out = tmp_path / f"{name.group(1).replace('#', '')}.out"
            stack.enter_context(_background(_localize(line, ports), env, out))
            terminals[name.group(1)] = out
        for out in terminals.values():
            wait_until(lambda out=out: " ready on port " in out.read_text(), timeout=60,
                       what=f"ready in {out.name}")
        for out in terminals.values():
            wait_until(lambda out=out: out.read_text().count("peer up: ") >= 2, timeout=60,
                       what=f"both peers up in {out.name}")

        for line in commands:
            expect = re.search(r"# exit (\d+): (\w+)", line)
            result = subprocess.run(["bash", "-c", _localize(line, ports)], capture_output=True,
                                    text=True, env=env, cwd=shell_dir, timeout=60)
            if expect is None:
                assert result.returncode == 0, (line, result.stdout, result.stderr)
            else:
                assert result.returncode == int(expect.group(1)), (line, result.stderr)
                assert expect.group(2) in result.stderr, (line, result.stderr)
            # "Every terminal prints each open and bid as it happens."
            said = re.match(r"python -m peer (open|bid) (\S+) (\S+)", line)
            if said is not None and expect is None:
                kind, what, amount = said.groups()
                text = (f"opened {what} at {amount}" if kind == "open"
                        else f"bid {amount} USDt on Client#1->Pic#1")
                for out in terminals.values():
                    wait_until(lambda out=out, text=text: text in out.read_text(),
                               timeout=15, what=f"{text!r} in {out.name}")
        for out in terminals.values():
            wait_until(lambda out=out: WINNER_LINE in out.read_text(), timeout=15,
                       what=f"the winner in {out.name}")
    assert not list(shell_dir.iterdir()), "a line redirected output into a file"


@pytest.mark.parametrize("line", [line for block in _sh_blocks() for line in block])
def test_walkthrough_lines_quote_what_the_shell_would_eat(line: str) -> None:
    # Unquoted '>' redirects and a word starting with '#' is a comment: the README
    # must quote SELLER->ITEM (the walkthrough test would catch it, slowly; this says why).
    code = line.split("  #")[0].split(" # ")[0]
    assert ">" not in re.sub(r"'[^']*'", "", code.rstrip(" &")), line

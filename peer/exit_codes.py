"""The exit codes of `python -m peer`, shared by the CLI and `serve`.

The README's table and the CLI's ``--help`` list the same codes.
"""

from __future__ import annotations

from typing import Final

OK: Final = 0
#: The node refused: a rule of the auction, or an input it cannot use (code and
#: reason on stderr, e.g. ``refused: BID_TOO_LOW ...``).
REFUSED: Final = 1
#: Bad usage or bad input caught before any node is asked (a price of ``abc``).
USAGE: Final = 2
#: No node answers on that control socket (not running, or another data dir).
UNREACHABLE: Final = 3
#: `serve` only: the data dir cannot be used (key or database unreadable or
#: damaged, no permission, or another node already runs on it).
DATA_DIR: Final = 4
#: `serve` only: the node cannot listen (port in use, --host not an address of
#: this machine, control socket cannot be created).
CANNOT_LISTEN: Final = 5
#: Stopped by Ctrl-C before it was done (128 + SIGINT, as shells report it).
INTERRUPTED: Final = 130

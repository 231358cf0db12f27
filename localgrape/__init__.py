"""A pure-Python Grenache Grape: the Grape HTTP API on trio and h11.

``python -m localgrape --dp 20001 --aph 30001 --bn ''`` answers like a real
grenache-grape 1.0.0 started with the same flags and no reachable peers (see
``grape-http-api.md``). Embedded use::

    bound = await nursery.start(localgrape.serve, localgrape.GrapeConfig())
    bound.url  # "http://127.0.0.1:<port>"
"""

from ._dispatch import Response as Response
from ._dispatch import dispatch as dispatch
from ._grape import BoundGrape as BoundGrape
from ._grape import GrapeBindError as GrapeBindError
from ._grape import GrapeConfig as GrapeConfig
from ._grape import serve as serve
from ._server import Timeouts as Timeouts
from ._store import Dht as Dht
from ._store import LocalDht as LocalDht

__all__ = [
    "BoundGrape",
    "Dht",
    "GrapeBindError",
    "GrapeConfig",
    "LocalDht",
    "Response",
    "Timeouts",
    "dispatch",
    "serve",
]

"""A pure-Python Grenache Grape: the Grape HTTP API on trio and h11.

``python -m localgrape --dp 20001 --aph 30001 --bn 127.0.0.1:20002 -b 127.0.0.1``
answers like a real grenache-grape 1.0.0 started with the same flags (see
``grape-http-api.md``): its DHT node (:mod:`localgrape.krpc`) joins other
localgrapes and real grapes; with ``--bn ''`` it is a lone grape. Embedded use::

    first = await nursery.start(localgrape.serve, localgrape.GrapeConfig())
    second = await nursery.start(localgrape.serve, localgrape.GrapeConfig(
        bootstrap=(f"127.0.0.1:{first.dht_port}",)))
    first.url  # "http://127.0.0.1:<port>"
"""

from ._dispatch import Response as Response
from ._dispatch import dispatch as dispatch
from ._grape import BoundGrape as BoundGrape
from ._grape import GrapeBindError as GrapeBindError
from ._grape import GrapeConfig as GrapeConfig
from ._grape import serve as serve
from ._network import NetworkDht as NetworkDht
from ._server import Timeouts as Timeouts
from ._store import Dht as Dht
from ._store import LocalDht as LocalDht

__all__ = [
    "BoundGrape",
    "Dht",
    "GrapeBindError",
    "GrapeConfig",
    "LocalDht",
    "NetworkDht",
    "Response",
    "Timeouts",
    "dispatch",
    "serve",
]

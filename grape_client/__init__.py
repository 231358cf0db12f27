"""Async client for the Grenache Grape HTTP API, for trio and asyncio.

Grape is the discovery service of the auction network: nodes announce
``(service name, port)`` and look each other up. This package talks to one or
more grapes over HTTP (see ``grape-http-api.md`` for the protocol), built on
httpx, and maps every failure to :class:`GrapeClientError`.

Example::

    import trio
    from grape_client import GrapeClient, announce_forever

    async def main() -> None:
        async with GrapeClient(["http://127.0.0.1:30001", "http://127.0.0.1:40001"]) as grape:
            async with trio.open_nursery() as nursery:
                await nursery.start(announce_forever, grape, "auction", 5001)
                print(await grape.lookup("auction"))      # ['127.0.0.1:5001']
                digest = await grape.put("hello")
                print(await grape.get(digest))            # GrapeRecord(..., v='hello')
                nursery.cancel_scope.cancel()

    trio.run(main)

:class:`GrapeClient` works the same under ``asyncio.run``; only
:func:`announce_forever` is trio-specific.
"""

from ._announcer import announce_forever
from ._client import GrapeClient
from ._errors import GrapeClientError, GrapeError, GrapeUnavailable
from ._models import GrapeRecord

__all__ = [
    "GrapeClient",
    "GrapeClientError",
    "GrapeError",
    "GrapeRecord",
    "GrapeUnavailable",
    "announce_forever",
]

# Show the public names as grape_client.X in reprs and tracebacks, as httpx does.
for _name in __all__:
    globals()[_name].__module__ = "grape_client"
del _name

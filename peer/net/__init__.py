"""The network edge: the mesh of peers, sync, the gRPC services and their guards.

grpclib channels and servers run on asyncio inside trio (aio.py is the bridge); the
mesh discovers, proves and keeps links; sync and push move signed events; the codec,
HTTP/2 guard, rate limits and address book bound what any one peer may cost. The
Control service's views are built here, at the edge, from the core's state. The
network imports the core and storage's paths, never the node or the CLI
(tests/unit/test_layers.py)."""

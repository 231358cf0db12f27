"""The faces of a node: the command line, its Control client, and how results are shown.

`python -m peer` parses commands here, talks to a running node over its Control
socket, and renders replies and notifications as text or JSON lines. `serve` and
`demo` start nodes and print what they report; the node itself never imports this
package (tests/unit/test_layers.py)."""

"""A running node: its lifecycle and its parts (see :mod:`peer.node.node`)."""

from peer.node.node import Node, ReadyInfo

__all__ = ["Node", "ReadyInfo"]

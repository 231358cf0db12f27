"""Helpers shared by the tests and the benchmarks: free ports, the real grape.

Not part of the installed package; importable from the repository root (where
``pytest`` and ``python -m bench`` run). Nothing here depends on pytest.
"""

"""grape_client.__all__ is honest (after httpx's tests/test_exported_members.py)."""

from __future__ import annotations

import inspect

import grape_client


def test_all_public_names_are_exported() -> None:
    public = {name for name in vars(grape_client) if not name.startswith("_")}
    assert set(grape_client.__all__) == public
    assert len(grape_client.__all__) == len(set(grape_client.__all__))


def test_exports_are_documented_and_claim_the_package() -> None:
    for name in grape_client.__all__:
        member = getattr(grape_client, name)
        assert member.__module__ == "grape_client", name
        assert inspect.getdoc(member), f"{name} has no docstring"


def test_error_hierarchy() -> None:
    assert issubclass(grape_client.GrapeError, grape_client.GrapeClientError)
    assert issubclass(grape_client.GrapeUnavailable, grape_client.GrapeClientError)
    assert issubclass(grape_client.GrapeClientError, Exception)

"""Async client for the Grenache Grape HTTP API."""

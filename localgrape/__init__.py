"""A pure-Python Grenache Grape."""

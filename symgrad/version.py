"""symgrad's version: what generated modules and reports name, and `symgrad --version`
prints (pyproject.toml holds the same; tests/test_api.py checks they agree)."""

__version__ = "0.1.0"

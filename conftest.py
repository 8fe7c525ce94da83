"""pytest set-up shared by tests/ and the doctests of kmcodec/ (both in testpaths)."""

from __future__ import annotations

# Importing it runs the CLI.
collect_ignore = ["kmcodec/__main__.py"]

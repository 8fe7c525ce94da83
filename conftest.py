"""pytest set-up shared by tests/ and the doctests of kmcodec/ (both in testpaths)."""

from __future__ import annotations

import importlib.util

import pytest

# Importing it runs the CLI.
collect_ignore = ["kmcodec/__main__.py"]

#: Modules whose doctests need modules that may be missing: matplotlib (the
#: optional report extra), and kmcodec.metrics until that module is merged.
DOCTESTS_NEEDING = {
    "kmcodec/compare.py": ("kmcodec.metrics",),
    "kmcodec/report.py": ("kmcodec.metrics", "matplotlib"),
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip the doctests of a module whose needed modules are not installed, saying which."""
    for path, modules in DOCTESTS_NEEDING.items():
        missing = [m for m in modules if importlib.util.find_spec(m) is None]
        if missing:
            skip = pytest.mark.skip(reason=f"not installed: {', '.join(missing)}")
            for item in items:
                if item.nodeid.startswith(path):
                    item.add_marker(skip)

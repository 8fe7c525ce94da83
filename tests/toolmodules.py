"""The scripts in tools/ as modules, for the tests that check them (tools/ is not a package)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

TOOLS = Path(__file__).resolve().parent.parent / "tools"


def load_tool(name: str) -> ModuleType:
    """Import tools/<name>.py as module ``kmc_tools_<name>``.

    tools/ is on sys.path while it loads, so its imports of siblings
    (benchlib) resolve; the module is registered in sys.modules first,
    because dataclasses look their module up there.
    """
    spec = importlib.util.spec_from_file_location(f"kmc_tools_{name}", TOOLS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    sys.path.insert(0, str(TOOLS))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(TOOLS))
    return module

"""What ``import kmcodec`` and ``kmc --version`` load: start-up stays cheap, the codec loads on first use."""

from __future__ import annotations

import ast
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import kmcodec
from kmcodec import format as fmt
from kmcodec import pillow_plugin

#: Modules that cost tens of milliseconds to import and that registering the Pillow plugin does not need.
HEAVY = ("numpy", "construct", "kmcodec.codec", "kmcodec._kernels")


def _loaded_after(code: str) -> set[str]:
    """The modules of HEAVY that a fresh interpreter has loaded after running *code*."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True).stdout
    loaded = json.loads(out.splitlines()[-1])
    return {name for name in HEAVY if name in loaded}


def test_import_loads_no_codec() -> None:
    assert _loaded_after("import kmcodec") == set()


def test_version_loads_no_codec() -> None:
    code = "import sys\nfrom kmcodec.cli import main\ntry:\n    main(['--version'])\nexcept SystemExit:\n    pass"
    assert _loaded_after(code) == set()


def test_lazy_names_resolve() -> None:
    for name in kmcodec.__all__:
        assert getattr(kmcodec, name) is not None
    assert set(kmcodec.__all__) <= set(dir(kmcodec))
    assert kmcodec.encode.__module__ == "kmcodec.codec"


def test_plugin_signature_is_the_formats() -> None:
    assert pillow_plugin.SIGNATURE == fmt.SIGNATURE


def test_modules_under_the_command_line_never_import_the_package() -> None:
    """Imports point down: only __init__ and the command line above it use the package's own namespace.

    A module that read ``kmcodec.X`` (``from . import X`` of a name that is
    not a module, or ``sys.modules[__package__]``) would depend on the top
    of the package that imports it.
    """
    folder = Path(kmcodec.__file__).parent
    modules = {module.name for module in pkgutil.iter_modules([str(folder)])}
    found = []
    for path in sorted(folder.glob("*.py")):
        if path.name in ("__init__.py", "__main__.py", "cli.py"):
            continue
        text = path.read_text(encoding="utf-8")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module is None:
                found += [f"{path.name}: from . import {a.name}" for a in node.names if a.name not in modules]
            elif isinstance(node, ast.Import) or (isinstance(node, ast.ImportFrom) and node.level == 0):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
                found += [f"{path.name}: imports {name}" for name in names if name.split(".")[0] == "kmcodec"]
        if "sys.modules[__package__]" in text:
            found.append(f"{path.name}: sys.modules[__package__]")
    assert not found


def test_ctrl_c_while_the_command_line_loads_is_one_line() -> None:
    """The console script's entry (kmcodec._entry) catches a Ctrl-C raised while kmcodec.cli imports."""
    code = (
        "import sys\n"
        "class Interrupt:\n"
        "    def find_spec(self, name, path, target=None):\n"
        "        if name == 'click':\n"
        "            raise KeyboardInterrupt\n"
        "sys.meta_path.insert(0, Interrupt())\n"
        "from kmcodec._entry import main\n"
        "main()\n"
    )
    done = subprocess.run([sys.executable, "-c", code, "--version"], capture_output=True, text=True)
    assert (done.returncode, done.stderr, done.stdout) == (130, "kmc: error: interrupted\n", "")

"""What ``import kmcodec`` and ``kmc --version`` load: start-up stays cheap, the codec loads on first use."""

from __future__ import annotations

import json
import subprocess
import sys

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

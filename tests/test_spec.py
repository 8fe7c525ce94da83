"""The spec's annotated hex dump (§10) is the real encoder's output, not a stale copy."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BEGIN = "<!-- BEGIN output of tools/spec_hexdump.py -->\n"
END = "<!-- END output of tools/spec_hexdump.py -->"


def test_hex_dump_in_spec_matches_the_encoder():
    spec = (ROOT / "spec" / "kmc-format.md").read_text(encoding="utf-8")
    pasted = spec[spec.index(BEGIN) + len(BEGIN) : spec.index(END)]
    made = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "spec_hexdump.py")], capture_output=True, text=True, check=True
    ).stdout
    assert pasted.strip() == made.strip()

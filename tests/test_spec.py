"""The spec's annotated hex dump (§10) is the real encoder's output, not a stale copy."""

from __future__ import annotations

import math
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


def _appendix_a() -> str:
    """Appendix A of the spec, its lines joined: a phrase may wrap anywhere."""
    spec = (ROOT / "spec" / "kmc-format.md").read_text(encoding="utf-8")
    return " ".join(spec[spec.index("## Appendix A.") :].split())


def _power(base: int, exponent: int) -> str:
    """base**exponent as the spec writes it: 2¹⁵, 10⁻⁴."""
    return str(base) + str(exponent).translate(str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹"))


def _log(base: int, value: float) -> int:
    exponent = round(math.log(value, base))
    assert base**exponent == value, f"{value} is not a power of {base}"
    return exponent


def test_appendix_a_states_the_encoders_parameters():
    """Each number Appendix A gives for the encoder is the constant the code uses (as the hex dump is its output)."""
    from kmcodec import defaults, labels, masking, quantize, rdo
    from kmcodec.format import Method

    efforts = labels.EFFORT_METHODS
    effort_1 = " and ".join(method.name.lower() for method in efforts[1])
    # Effort 2's set is worded by what the probe does with it, effort 3's as a count.
    assert efforts[2] == (Method.STORED, Method.CM, Method.CMM, Method.CM2D, Method.CMX)
    assert set(efforts[3]) == set(Method)
    count = {4: "four", 5: "five", 6: "six", 7: "seven"}[len(efforts[3])]
    (slow, charge), *others = labels.SLOW_METHOD_CHARGE.items()
    assert not others
    phrases = [
        # Palette (quantize.py)
        f"Lloyd iterations (at most {quantize.MAX_ITERATIONS})",
        f"at most {_power(10, _log(10, quantize.TOLERANCE))} × the data's weighted variance",
        f"above {_power(2, _log(2, quantize.COARSE_ABOVE))} distinct colours",
        f"with {', then '.join(map(str, quantize.COARSE_BITS))} bits per channel",
        f"at least {quantize.CELLS_PER_CENTRE}k cells",
        f"bits per channel × C are at most {quantize.BITMAP_KEY_BITS}",
        f"running at most {quantize.LEVEL_ITERATIONS} Lloyd iterations",
        f"at most {quantize.REFINE_ITERATIONS} Lloyd iterations on the exact colours",
        f"fitted from {quantize.STARTS} k-means++ starts",
        # Masking weights (masking.py)
        f"1 + ⌊{masking.SPAN * masking.SCALE} / ({masking.SCALE} + A)⌋",
        f"over the {2 * (masking.HALO - 1) + 1} × {2 * (masking.HALO - 1) + 1} pixels around it",
        # RDO (rdo.py)
        f"plus {rdo.LOOKAHEAD_BITS:g} bits for each of the next pixel",
        # Strips and methods (labels.py); the probe's first row, 2, is the kernel's
        f"max(1, ⌊{_power(2, _log(2, labels.STRIP_LABELS))} / W⌋)",
        f"1 is {effort_1}; {defaults.DEFAULT_EFFORT} (the default) is stored and cm or cmm or both,",
        "with cm2d and cmx beside cmm where repeats",
        f"along rows 2, {2 + labels.MATCH_PROBE_ROW_STEP}, {2 + 2 * labels.MATCH_PROBE_ROW_STEP}, ...",
        f"at least {labels.MATCH_PROBE_MIN * 100:g} % of the non-flat pixels",
        f"below {labels.PROBE_MARGIN:g} times the best so far",
        f"fewer than {_power(2, _log(2, labels.MATCH_PROBE_ALWAYS))} labels tries both cm and cmm",
        "the strip tries cm and cmm",
        f"where it is at least {labels.MATCH_PROBE_MIN_2D * 100:g} % cmm, cm2d and cmx instead",
        f"least {labels.MATCH_PROBE_MIN * 100:g} % on a strip of fewer than "
        f"{_power(2, _log(2, labels.MATCH_PROBE_SMALL))} labels all four",
        f"{max(efforts)} tries all {count} on every strip",
        f"{slow.name.lower()}, which decodes",
        f"counts its size {charge} per mille",
        f"(⌊size × {1000 + charge} / 1000⌋)",
    ]
    text = _appendix_a()
    missing = [phrase for phrase in phrases if phrase not in text]
    assert not missing, f"Appendix A does not say: {missing}"

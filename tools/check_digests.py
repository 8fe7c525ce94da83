"""The output-bytes manifest: SHA-256 of the .kmc files of the corpus photos under a fixed set of options.

The manifest (``tools/corpus_digests.json``) was recorded with the numba
kernels before the compiled C core replaced them; any later build must write
the same bytes.  Each photo of ``shared/corpus/photos`` is encoded at
k = 16, 64 and 256 with each of these option sets (the CLI's flags, given to
:func:`kmcodec.encode` in process)::

    --effort 1 | --effort 2 | --effort 3 | --dither | --rdo 5 | --colorspace oklab | --target-psnr 36

The effort and rdo sets use the default fit, which changed on purpose twice:
masking (2026-12-05) and then Oklab (2026-12-05, issue 18) re-recorded them.
The dither set was re-recorded when it came to pass on 0.85 of the error
(2026-12-05) and when it came to fit as the default does and diffuse Oklab
error (2026-12-06); the rdo set when it came to price error in the fit's
space (2026-12-06).  The effort and oklab sets at k = 64 and 256 were
re-recorded when the default came to be ``rdo=5`` from 48 colours up
(2026-12-06): effort 2 and oklab now give the rdo set's bytes there.  With
method cmx (format 1.4, 2026-12-06) one effort 3 digest changed, wiki043 at
k = 64: its 190-row last strip is 5 % smaller in cmx, enough to pay its toll
(labels.SLOW_METHOD_CHARGE); every other digest kept its bytes.  When
effort 2's probe came to try cm beside cmm on strips with few repeats
(2026-12-07) 19 digests changed, every file smaller: the dither set at
k = 16 of 8 photos (4.0-6.1 %: dithered photos score 1-3 % on the probe,
where cmm had been chosen alone; all cm now, but wiki011's last strip,
under 2^18 labels, where cmx pays its toll) and wiki045's effort 2, rdo,
oklab and psnr36 sets (0.4-0.5 %, its 83-row last strip, now cm).  When the
fit for the eye came to be Oklab with L_r ("oklrab", 2026-12-07) the effort
1 / 2 / 3, dither and rdo5 sets were re-recorded at every k; the oklab set
(the previous default) and psnr36 kept their bytes.

Where k colours miss 36 dB, encode raises TargetError; the digest is then the
plain encode at k, the same bytes the search returned before that was an error.

Usage::

    python tools/check_digests.py                 # check against the manifest; exit 1 on any difference
    python tools/check_digests.py --record        # write the manifest (only when the format changes on purpose)
    python tools/check_digests.py --jobs 2 --photos 5   # the first 5 photos only, two processes

The corpus is not part of the test suite (its README: benchmarks and tools
may read it, tests must not need it), so this is a tool, not a test.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT.parent / "shared" / "corpus" / "photos"
MANIFEST = Path(__file__).resolve().parent / "corpus_digests.json"
KS = (16, 64, 256)
#: Option sets: name -> keyword arguments of kmcodec.encode (``--dither`` alone is strength 1).
OPTIONS = {
    "effort1": {"effort": 1},
    "effort2": {"effort": 2},
    "effort3": {"effort": 3},
    "dither": {"dither": 1.0},
    "rdo5": {"rdo": 5.0},
    "oklab": {"colorspace": "oklab"},
    "psnr36": {"target_psnr": 36.0},
}


def _digests(path: str) -> dict[str, str]:
    """{'k/option': sha256 hex} for one photo."""
    import kmcodec

    out = {}
    for k in KS:
        for name, options in OPTIONS.items():
            try:
                data = kmcodec.encode(path, colors=k, **options)
            except kmcodec.TargetError:  # --target-psnr out of reach: the file of the cap, as recorded before it failed
                cap = {o: v for o, v in options.items() if o != "target_psnr"}
                data = kmcodec.encode(path, colors=k, colorspace="srgb", **cap)  # fitted PSNR-first, as the target's
            out[f"{k}/{name}"] = hashlib.sha256(data).hexdigest()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--record", action="store_true", help="write the manifest instead of checking it")
    parser.add_argument("--corpus", type=Path, default=CORPUS, help="folder of photos (default: %(default)s)")
    parser.add_argument("--manifest", type=Path, default=MANIFEST, help="manifest file (default: %(default)s)")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument("--photos", type=int, default=None, help="only the first N photos")
    args = parser.parse_args(argv)

    photos = sorted(args.corpus.glob("*.png"))[: args.photos]
    if not photos:
        print(f"check_digests: no photos in {args.corpus}", file=sys.stderr)
        return 1
    start = time.perf_counter()
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        found = dict(zip((p.name for p in photos), pool.map(_digests, map(str, photos)), strict=True))
    seconds = time.perf_counter() - start
    count = sum(len(d) for d in found.values())

    if args.record:
        args.manifest.write_text(json.dumps(found, indent=1, sort_keys=True) + "\n")
        print(f"recorded {count} digests of {len(photos)} photos in {seconds:.0f} s to {args.manifest}")
        return 0
    expected = json.loads(args.manifest.read_text())
    bad = [
        f"{photo} {key}"
        for photo, digests in found.items()
        for key, digest in digests.items()
        if expected.get(photo, {}).get(key) != digest
    ]
    for line in bad:
        print(f"DIFFERS: {line}")
    print(f"{count - len(bad)} of {count} digests match ({len(photos)} photos, {seconds:.0f} s)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

"""Label decode time of cm2d against cm and cmm, per image and palette size (thread CPU time, best of rounds).

Each image is quantized as ``tools/bench_labels.py`` does and cut into the
encoder's strips; every strip is coded with cm, cmm and cm2d, and each
coding decoded ``--repeat`` times (one thread).  Prints ns per label and the
ratios cm2d / cmm and cm2d / cm, with medians.

    python tools/bench_cm2d_decode.py /tmp/kmc-imageset/graphics --repeat 5
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
from benchlib import encoder_strips
from PIL import Image

from kmcodec import cm
from kmcodec.quantize import quantize

MODELS = {"cm": {}, "cmm": {"match": True}, "cm2d": {"twod": True}}


def decode_ns(strips: list[np.ndarray], k: int, kw: dict, repeat: int) -> float:
    """Best-of-*repeat* thread CPU ns per label to decode *strips* coded with the model *kw*."""
    coded = [cm.encode_labels(s, k, **kw) for s in strips]
    best = float("inf")
    for _ in range(repeat):
        t0 = time.thread_time_ns()
        for s, data in zip(strips, coded, strict=True):
            cm.decode_labels(data, *s.shape, k, **kw)
        best = min(best, time.thread_time_ns() - t0)
    return best / sum(s.size for s in strips)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="folder of PNG images")
    parser.add_argument("--k", default="16,64,256", help="palette sizes")
    parser.add_argument("--repeat", type=int, default=5, help="decodes per coding (the best counts)")
    args = parser.parse_args()
    ratios: dict[int, list[tuple[float, float]]] = {}
    for path in sorted(args.folder.glob("*.png")):
        rgb = np.asarray(Image.open(path).convert("RGB"))
        for k in (int(x) for x in args.k.split(",")):
            q = quantize(rgb, k, has_alpha=False, seed=0)
            colors = max(2, len(q.palette))
            strips = encoder_strips(q.labels)
            ns = {name: decode_ns(strips, colors, kw, args.repeat) for name, kw in MODELS.items()}
            ratios.setdefault(k, []).append((ns["cm2d"] / ns["cmm"], ns["cm2d"] / ns["cm"]))
            print(
                f"{path.name} k={k}: ns/label cm {ns['cm']:.1f} cmm {ns['cmm']:.1f} cm2d {ns['cm2d']:.1f}; "
                f"cm2d / cmm {ns['cm2d'] / ns['cmm']:.2f}, cm2d / cm {ns['cm2d'] / ns['cm']:.2f}",
                flush=True,
            )
    for k, r in ratios.items():
        a, b = zip(*r, strict=True)
        print(
            f"k={k}: cm2d / cmm median {statistics.median(a):.2f} (max {max(a):.2f}), "
            f"cm2d / cm median {statistics.median(b):.2f} (max {max(b):.2f})"
        )


if __name__ == "__main__":
    main()

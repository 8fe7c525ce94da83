"""Label bytes, decode and encode time of cmx against cm2d (or cm), per image and palette size (thread CPU time).

Each image is quantized once per palette size as ``tools/bench_labels.py``
does (``kmcodec.quantize``, seed 0) and cut into the encoder's strips
(about a million labels each).  Every strip is coded with cm2d (``--base cm``:
cm, what photos use) and with cmx,
then decoded ``--repeat`` times by each, alternating, and the best time of
each strip kept; the kernels are called directly, so only the decoding is
timed.  Encoding is timed the same way, best of ``--encode-repeat``.  Prints
per image and k the label bytes cmx / cm2d, decode time cmx / cm2d and
encode time cmx / cm2d (each image's strips summed), then per k the median
and the worst of each ratio.  Run it on an otherwise idle machine, one
process at a time.

    python tools/make_imageset.py && python tools/bench_cmx_decode.py /tmp/kmc-imageset/graphics
    python tools/bench_cmx_decode.py /tmp/kmc-imageset/photos --base cm
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
from benchlib import encoder_strips
from PIL import Image

from kmcodec import _kernels, cm
from kmcodec.quantize import quantize

#: The models a run may compare, as kmcodec.cm's keywords and as the kernels' model numbers.
MODEL_KW = {"cm": {}, "cm2d": {"twod": True}, "cmx": {"mix": True}}
KERNEL_MODEL = {"cm": _kernels.CM_MODEL_CM, "cm2d": _kernels.CM_MODEL_CM2D, "cmx": _kernels.CM_MODEL_CMX}


def padded(labels: np.ndarray) -> np.ndarray:
    """The kernels' padded (h + 2, w + 3) uint16 copy of a strip."""
    h, w = labels.shape
    out = np.zeros((h + 2, w + 3), np.uint16)
    out[2:, 2 : w + 2] = labels
    return out


def measure(
    strip: np.ndarray, k: int, repeat: int, encode_repeat: int, names: tuple[str, str]
) -> dict[str, list[float]]:
    """{model: [bytes, best decode s, best encode s]} of one strip, the two models *names* timed alternately."""
    result = {name: [0.0, float("inf"), float("inf")] for name in names}
    coded = {}
    for _ in range(encode_repeat):
        for name in names:
            t0 = time.thread_time()
            coded[name] = cm.encode_labels(strip, k, **MODEL_KW[name])
            result[name][2] = min(result[name][2], time.thread_time() - t0)
    work = padded(strip)
    for _ in range(repeat):
        for name in names:
            data = np.frombuffer(coded[name], np.uint8)
            t0 = time.thread_time()
            used, code = _kernels.cm_decode(work, k, data, KERNEL_MODEL[name])
            result[name][1] = min(result[name][1], time.thread_time() - t0)
            if used != len(data) or code != 0 or not np.array_equal(work[2:, 2:-1], strip):
                msg = f"{name} did not decode its strip exactly"
                raise SystemExit(msg)
    for name in names:
        result[name][0] = len(coded[name])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="folder of PNG images")
    parser.add_argument("--k", default="16,64,256", help="palette sizes (default 16,64,256)")
    parser.add_argument("--repeat", type=int, default=7, help="decodes per strip and model, the best kept (default 7)")
    parser.add_argument("--encode-repeat", type=int, default=3, help="encodes per strip and model (default 3)")
    parser.add_argument("--base", choices=("cm2d", "cm"), default="cm2d", help="what cmx is compared with")
    args = parser.parse_args()
    base = args.base
    names = (base, "cmx")
    ratios: dict[int, list[tuple[float, float, float]]] = {}
    print(f"{'image':24} {'k':>4} {'labels':>9} {base + ' bytes':>10} {'bytes':>6} {'decode':>6} {'encode':>6}")
    for path in sorted(args.folder.glob("*.png")):
        rgb = np.asarray(Image.open(path).convert("RGB"))
        for k in (int(x) for x in args.k.split(",")):
            q = quantize(rgb, k, has_alpha=False, seed=0)
            colors = max(2, len(q.palette))
            strips = encoder_strips(q.labels)
            total = {name: np.zeros(3) for name in names}
            for strip in strips:
                for name, values in measure(strip, colors, args.repeat, args.encode_repeat, names).items():
                    total[name] += values
            r = tuple(float(total["cmx"][i] / total[base][i]) for i in range(3))
            ratios.setdefault(k, []).append(r)
            size = int(total[base][0])
            print(f"{path.name:24} {k:4} {q.labels.size:9} {size:10} {r[0]:6.3f} {r[1]:6.2f} {r[2]:6.2f}", flush=True)
    print(f"cmx / {base}, median (worst) over the images:")
    for k, rs in ratios.items():
        cells = []
        for i, name in enumerate(("bytes", "decode", "encode")):
            column = [r[i] for r in rs]
            cells.append(f"{name} {statistics.median(column):.3f} ({max(column):.3f})")
        print(f"k={k:3}: " + ", ".join(cells))


if __name__ == "__main__":
    main()

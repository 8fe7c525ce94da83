"""What the benchmarks in tools/ share: finding the images to run on, and their classes; cutting labels into the
encoder's strips; the labs' projections."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from pathlib import Path

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pnm"}


def find_images(folder: Path, limit: int | None) -> list[Path]:
    """The images in *folder* (or *folder* itself if it is a file), sorted by name, at most *limit*."""
    if folder.is_file():
        return [folder]
    if not folder.is_dir():
        msg = f"not a folder or an image: {folder}"
        raise SystemExit(msg)
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        msg = f"no images in {folder}"
        raise SystemExit(msg)
    return paths[:limit]


def find_classes(folder: Path, limit: int | None) -> list[tuple[str, Path]]:
    """(class, image) pairs: each subfolder of *folder* holding images is a class named after it.

    Images directly in *folder* (or *folder* itself, if it is an image) form
    the class named after *folder*.  At most *limit* images per class, sorted
    by name within it; classes in name order.
    """
    if folder.is_dir():
        subfolders = sorted(p for p in folder.iterdir() if p.is_dir() and _has_images(p))
        if subfolders:
            pairs = [(sub.name, path) for sub in subfolders for path in find_images(sub, limit)]
            if _has_images(folder):
                pairs += [(folder.name, path) for path in find_images(folder, limit)]
            return pairs
    name = folder.parent.name if folder.is_file() else folder.name
    return [(name, path) for path in find_images(folder, limit)]


def _has_images(folder: Path) -> bool:
    return any(p.suffix.lower() in IMAGE_SUFFIXES for p in folder.iterdir())


def encoder_strips(labels):
    """An (h, w) label map cut into the strips ``kmcodec.encode`` codes (its :func:`kmcodec.labels.strip_height`)."""
    import numpy as np

    from kmcodec.labels import strip_height

    rows = strip_height(labels.shape[1], labels.shape[0], None)
    return [np.ascontiguousarray(labels[top : top + rows]) for top in range(0, labels.shape[0], rows)]


def projected_ratios(records: list[dict], bench: dict, shown: list[str], saved: Callable[[dict, str], float]) -> str:
    """Tables of bench_labels.py's ratios ours / peer (JPEG XL, WebP) if each of *shown* were a method beside today's.

    *records* are a lab's, one per image and k with its "class", "image" and
    "k"; *bench* is a ``bench_labels.py --json`` output; ``saved(record,
    variant)`` is the label bytes the variant saves on that image ("today":
    none).  Each image's "ours" (labels, strip framing and palette) loses
    them; the peers' sizes stay.  Per class and k: median (worst).
    """
    peers = {(r["class"], r["image"], r["k"]): r for r in bench["records"]}
    lines = []
    for peer in ("jxl", "webp"):
        lines += ["", f"Projected ours / {peer}, median (worst):", ""]
        lines += ["| class | k | n | " + " | ".join(shown) + " |", "|---|---|---|" + "---|" * len(shown)]
        for cls, k in sorted({(r["class"], r["k"]) for r in records}):
            rows = [(r, peers.get((cls, r["image"], k))) for r in records if r["class"] == cls and r["k"] == k]
            rows = [(r, b) for r, b in rows if b and "bytes" in b.get(peer, {})]
            if not rows:
                continue
            cells = []
            for v in shown:
                ratios = [(b["ours"]["bytes"] - saved(r, v)) / b[peer]["bytes"] for r, b in rows]
                cells.append(f"{statistics.median(ratios):.3f} ({max(ratios):.3f})")
            lines.append(f"| {cls} | {k} | {len(rows)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)

"""What the benchmarks in tools/ share: finding the images to run on, and their classes."""

from __future__ import annotations

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

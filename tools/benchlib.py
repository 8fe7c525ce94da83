"""What the benchmarks in tools/ share: finding the images to run on."""

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

#!/usr/bin/env python3
"""Rebuild the label-coding benchmark's image set: natural photos plus graphics and screenshots.

    python tools/make_imageset.py                     # -> /tmp/kmc-imageset/{photos,graphics}
    python tools/make_imageset.py OUT --photos DIR --photo-size 1024x683
    python tools/bench_labels.py /tmp/kmc-imageset    # then benchmark it (photos/ and graphics/ classes)

``photos/``
    every image of *--photos* (default ``../shared/corpus/photos``, 25
    natural photographs; its README allows benchmarks to read them),
    centre-cropped to the aspect ratio of *--photo-size* and resized to it
    with Pillow's LANCZOS filter.  Same input files, same output.
``graphics/``
    synthetic graphics and screenshots drawn here from fixed formulas and a
    seeded Mersenne Twister (Python's :mod:`random`, whose ``random()``
    stream is stable across versions), so nothing big is committed:

    - ``text.png``: an antialiased text page (a document screenshot), dark
      grey on white, in DejaVu Sans if the machine has it, else Pillow's own
      scalable font;
    - ``code.png``: a syntax-coloured code editor, monospace on dark, with a
      line-number gutter;
    - ``ui.png``: an application window: title bar, sidebar, flat panels,
      buttons, a text field, check boxes, labels;
    - ``chart.png``: a line and bar chart with axes, grid and tick labels,
      drawn at 4x and downsampled (antialiased like a plotting library's);
    - ``logo.png``: flat-colour vector shapes (circles, polygons, stripes)
      antialiased by the same 4x downsampling, on white;
    - ``sprites.png``: a pixel-art sprite sheet: 64 mirror-symmetric 16 x 16
      sprites of 4 colours each, scaled 4x with nearest neighbour;
    - ``diagram.png``: boxes, arrows and labels joined by lines (a flow
      chart), hard-edged;
    - ``web.png``: a web-page screenshot: header bar, text columns, a
      coloured banner with a gradient, link colours;
    - ``screen-*.png``: real screenshots, pages this repository generates
      (its README and docs, its source highlighted, a terminal, the
      ``kmc compare`` report) rendered by headless Chromium; see
      ``tools/make_screens.py`` (``--no-screens`` leaves them out).

Fonts matter to the exact pixels: the same machine always gives the same
files, another machine with other fonts gives similar ones.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
from make_screens import make_screens
from PIL import Image, ImageDraw, ImageFont

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = Path("/tmp/kmc-imageset")
DEFAULT_PHOTOS = ROOT.parent / "shared" / "corpus" / "photos"
FONT_DIRS = (Path("/usr/share/fonts/truetype/dejavu"), Path("/usr/share/fonts/TTF"), Path("/Library/Fonts"))
#: Supersampling factor of the antialiased drawings.
SS = 4

_WORD_TEXT = (
    "the of and to in is that for it as with was on be by at this from or an are which not have but "
    "image palette colour pixel label context model coder range probability neighbour strip decode "
    "encode format file byte table counter escape candidate rank order photo graphic screenshot text "
    "window button panel chart sprite diagram arrow node edge value count width height offset length "
    "quantize cluster centre median ratio benchmark method version header chunk signature"
)
WORDS = tuple(_WORD_TEXT.split())


def _font(size: int, mono: bool = False, bold: bool = False) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    name = "DejaVuSansMono" if mono else "DejaVuSans"
    name += "-Bold" if bold else ""
    for folder in FONT_DIRS:
        path = folder / f"{name}.ttf"
        if path.exists():
            return ImageFont.truetype(str(path), size)
    return ImageFont.load_default(size)


def _sentence(rng: random.Random, words: int) -> str:
    out = [WORDS[int(rng.random() * len(WORDS))] for _ in range(words)]
    return " ".join(out).capitalize() + "."


def _wrap(draw: ImageDraw.ImageDraw, text: str, font: ImageFont.ImageFont, width: int) -> list[str]:
    lines, line = [], ""
    for word in text.split():
        trial = f"{line} {word}".strip()
        if line and draw.textlength(trial, font=font) > width:
            lines.append(line)
            line = word
        else:
            line = trial
    return [*lines, line] if line else lines


def _downsample(image: Image.Image) -> Image.Image:
    return image.resize((image.width // SS, image.height // SS), Image.Resampling.BOX)


# ---------------------------------------------------------------------------
# Graphics
# ---------------------------------------------------------------------------
def text_page(rng: random.Random) -> Image.Image:
    image = Image.new("RGB", (1024, 768), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    draw.text((48, 28), "Context-modelled label coding", font=_font(30, bold=True), fill=(20, 20, 20))
    body = _font(15)
    y = 86
    while y < 730:
        paragraph = " ".join(_sentence(rng, 6 + int(rng.random() * 12)) for _ in range(2 + int(rng.random() * 4)))
        for line in _wrap(draw, paragraph, body, 928):
            if y > 730:
                break
            draw.text((48, y), line, font=body, fill=(34, 34, 34))
            y += 21
        y += 14
    return image


def code_editor(rng: random.Random) -> Image.Image:
    image = Image.new("RGB", (1024, 768), (30, 30, 36))
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, 52, 768), fill=(37, 37, 44))
    font = _font(14, mono=True)
    colours = {
        "kw": (198, 120, 221),
        "name": (97, 175, 239),
        "str": (152, 195, 121),
        "num": (209, 154, 102),
        "com": (106, 115, 125),
        "txt": (220, 223, 228),
    }
    keywords = ("def", "return", "if", "for", "in", "while", "import", "class", "else", "elif")
    indent = 0
    for row in range(40):
        y = 6 + row * 19
        draw.text((8, y), f"{row + 1:4d}", font=font, fill=(90, 95, 105))
        x = 64 + 34 * indent
        if rng.random() < 0.12:
            draw.text((x, y), "# " + _sentence(rng, 5).lower(), font=font, fill=colours["com"])
        else:
            for _ in range(2 + int(rng.random() * 5)):
                roll = rng.random()
                if roll < 0.25:
                    token, kind = keywords[int(rng.random() * len(keywords))], "kw"
                elif roll < 0.55:
                    token, kind = WORDS[int(rng.random() * len(WORDS))] + "()", "name"
                elif roll < 0.7:
                    token, kind = repr(WORDS[int(rng.random() * len(WORDS))]), "str"
                elif roll < 0.8:
                    token, kind = str(int(rng.random() * 4096)), "num"
                else:
                    token, kind = "=", "txt"
                draw.text((x, y), token, font=font, fill=colours[kind])
                x += int(draw.textlength(token + " ", font=font))
        indent = max(0, min(4, indent + (1 if rng.random() < 0.3 else -1 if rng.random() < 0.3 else 0)))
    draw.rectangle((0, 748, 1024, 768), fill=(0, 122, 204))
    draw.text((10, 750), "main.py  UTF-8  LF  Python 3", font=_font(12), fill=(255, 255, 255))
    return image


def ui_window(rng: random.Random) -> Image.Image:
    image = Image.new("RGB", (1024, 768), (236, 238, 241))
    draw = ImageDraw.Draw(image)
    font, small, bold = _font(14), _font(12), _font(14, bold=True)
    draw.rectangle((0, 0, 1024, 34), fill=(52, 58, 70))
    draw.text((14, 9), "kmcodec  -  Settings", font=bold, fill=(240, 240, 240))
    for i, colour in enumerate(((237, 94, 85), (245, 190, 80), (98, 197, 84))):
        draw.ellipse((1024 - 80 + 22 * i, 11, 1024 - 68 + 22 * i, 23), fill=colour)
    draw.rectangle((0, 34, 220, 768), fill=(246, 247, 249))
    draw.line((220, 34, 220, 768), fill=(205, 208, 214))
    for i, name in enumerate(("General", "Encoding", "Palette", "Strips", "Metadata", "Advanced", "About")):
        top = 50 + 36 * i
        if i == 1:
            draw.rounded_rectangle((8, top - 4, 212, top + 26), 5, fill=(214, 228, 250))
        draw.text((24, top + 2), name, font=font, fill=(40, 44, 52))
    for p in range(3):
        left, top = 244, 54 + 228 * p
        draw.rounded_rectangle((left, top, 1000, top + 210), 8, fill=(255, 255, 255), outline=(214, 217, 222))
        draw.text((left + 18, top + 14), _sentence(rng, 3)[:-1], font=bold, fill=(30, 34, 40))
        for row in range(4):
            y = top + 50 + 38 * row
            draw.text((left + 18, y + 6), _sentence(rng, 2)[:-1], font=font, fill=(60, 64, 72))
            kind = (p + row) % 3
            if kind == 0:
                draw.rounded_rectangle(
                    (left + 300, y, left + 560, y + 28), 4, fill=(255, 255, 255), outline=(180, 185, 192)
                )
                draw.text((left + 310, y + 6), str(int(rng.random() * 1000)), font=font, fill=(30, 30, 30))
            elif kind == 1:
                checked = rng.random() < 0.5
                draw.rounded_rectangle(
                    (left + 300, y + 5, left + 318, y + 23),
                    3,
                    fill=(43, 118, 229) if checked else (255, 255, 255),
                    outline=(43, 118, 229) if checked else (160, 165, 172),
                )
                if checked:
                    draw.line(
                        (left + 304, y + 14, left + 308, y + 19, left + 315, y + 9), fill=(255, 255, 255), width=2
                    )
                draw.text((left + 328, y + 6), _sentence(rng, 2)[:-1], font=small, fill=(90, 95, 105))
            else:
                draw.rounded_rectangle((left + 300, y, left + 420, y + 28), 5, fill=(43, 118, 229))
                draw.text((left + 322, y + 6), "Apply", font=bold, fill=(255, 255, 255))
                draw.rounded_rectangle(
                    (left + 430, y, left + 550, y + 28), 5, fill=(240, 241, 243), outline=(190, 194, 200)
                )
                draw.text((left + 450, y + 6), "Cancel", font=font, fill=(40, 44, 52))
    return image


def chart(rng: random.Random) -> Image.Image:
    w, h = 1024, 640
    image = Image.new("RGB", (w * SS, h * SS), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    left, top, right, bottom = 90 * SS, 40 * SS, (w - 30) * SS, (h - 70) * SS
    for i in range(6):
        y = bottom - (bottom - top) * i // 5
        draw.line((left, y, right, y), fill=(225, 225, 225), width=SS)
        draw.text((left - 60 * SS, y - 9 * SS), f"{i * 20:3d}", font=_font(14 * SS), fill=(70, 70, 70))
    draw.line((left, top, left, bottom), fill=(40, 40, 40), width=2 * SS)
    draw.line((left, bottom, right, bottom), fill=(40, 40, 40), width=2 * SS)
    n = 24
    step = (right - left) / n
    for i in range(n):
        value = 20 + 40 * (1 + math.sin(i / 3.0)) / 2 + 20 * rng.random()
        x0 = left + step * i + step * 0.2
        draw.rectangle((x0, bottom - (bottom - top) * value / 100, x0 + step * 0.6, bottom), fill=(158, 202, 225))
        if i % 3 == 0:
            draw.text((x0, bottom + 12 * SS), f"W{i + 1}", font=_font(13 * SS), fill=(70, 70, 70))
    for colour, phase in (((214, 39, 40), 0.0), ((44, 160, 44), 1.7), ((255, 127, 14), 3.1)):
        points = []
        for i in range(200):
            x = left + (right - left) * i / 199
            value = 50 + 30 * math.sin(i / 23 + phase) + 12 * math.sin(i / 7 + 2 * phase) + 6 * (rng.random() - 0.5)
            points.append((x, bottom - (bottom - top) * value / 100))
        draw.line(points, fill=colour, width=3 * SS, joint="curve")
    draw.text((left, 8 * SS), "Label bits per pixel by week", font=_font(18 * SS, bold=True), fill=(20, 20, 20))
    return _downsample(image)


def logo(rng: random.Random) -> Image.Image:
    w, h = 800, 800
    image = Image.new("RGB", (w * SS, h * SS), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    c = 400 * SS
    for i, colour in enumerate(((0, 87, 183), (255, 215, 0), (220, 36, 31), (0, 150, 57))):
        r = (330 - 60 * i) * SS
        draw.ellipse((c - r, c - r, c + r, c + r), fill=colour)
    for i in range(12):
        a = 2 * math.pi * i / 12
        pts = [(c, c)] + [(c + 250 * SS * math.cos(a + d), c + 250 * SS * math.sin(a + d)) for d in (-0.12, 0.12)]
        draw.polygon(pts, fill=(255, 255, 255) if i % 2 else (30, 30, 30))
    draw.regular_polygon((c, c, 90 * SS), 6, rotation=15, fill=(250, 250, 250))
    draw.text((c - 70 * SS, c - 30 * SS), "KMC", font=_font(50 * SS, bold=True), fill=(0, 87, 183))
    for i in range(6):
        x = (40 + 30 * i) * SS
        draw.rectangle((x, 700 * SS, x + 18 * SS, 780 * SS), fill=((40 * i) % 256, 120, 200 - 30 * i))
    return _downsample(image)


def sprites(rng: random.Random) -> Image.Image:
    sheet = np.zeros((8 * 18, 8 * 18, 3), np.uint8)
    sheet[:] = (48, 44, 64)
    base = [(int(rng.random() * 256), int(rng.random() * 256), int(rng.random() * 256)) for _ in range(12)]
    for s in range(64):
        colours = [base[int(rng.random() * len(base))] for _ in range(3)]
        sprite = np.zeros((16, 8), np.int64)
        for y in range(16):
            for x in range(8):
                inside = (x - 8) ** 2 / 64 + (y - 8) ** 2 / 64 < 1
                sprite[y, x] = 1 + int(rng.random() * 3) if inside and rng.random() < 0.75 else 0
        full = np.concatenate([sprite, sprite[:, ::-1]], axis=1)
        top, left = 1 + (s // 8) * 18, 1 + (s % 8) * 18
        for value, colour in enumerate(colours, start=1):
            region = sheet[top : top + 16, left : left + 16]
            region[full == value] = colour
    return Image.fromarray(sheet.repeat(4, 0).repeat(4, 1))


def diagram(rng: random.Random) -> Image.Image:
    image = Image.new("RGB", (1024, 768), (250, 250, 250))
    draw = ImageDraw.Draw(image)
    font = _font(14)
    boxes = []
    for row in range(4):
        for col in range(4):
            if rng.random() < 0.2:
                continue
            x, y = 60 + 240 * col, 60 + 180 * row
            boxes.append((x, y))
            fill = ((255, 243, 205), (209, 236, 241), (212, 237, 218), (248, 215, 218))[(row + col) % 4]
            if (row + col) % 3 == 0:
                draw.ellipse((x, y, x + 170, y + 70), fill=fill, outline=(60, 60, 60), width=2)
            else:
                draw.rectangle((x, y, x + 170, y + 70), fill=fill, outline=(60, 60, 60), width=2)
            draw.text((x + 16, y + 26), _sentence(rng, 2)[:-1], font=font, fill=(30, 30, 30))
    for _ in range(len(boxes) + 4):
        (x0, y0), (x1, y1) = boxes[int(rng.random() * len(boxes))], boxes[int(rng.random() * len(boxes))]
        if (x0, y0) == (x1, y1):
            continue
        a, b = (x0 + 170, y0 + 35), (x1, y1 + 35)
        mid = (a[0] + b[0]) // 2
        draw.line((a, (mid, a[1]), (mid, b[1]), b), fill=(80, 80, 80), width=2)
        draw.polygon(((b[0], b[1]), (b[0] - 10, b[1] - 6), (b[0] - 10, b[1] + 6)), fill=(80, 80, 80))
    return image


def web_page(rng: random.Random) -> Image.Image:
    w, h = 1024, 900
    image = Image.new("RGB", (w, h), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, w, 56), fill=(33, 37, 41))
    draw.text((24, 16), "kmcodec", font=_font(22, bold=True), fill=(255, 255, 255))
    for i, name in enumerate(("Docs", "Format", "Benchmarks", "Download")):
        draw.text((560 + 110 * i, 20), name, font=_font(15), fill=(200, 205, 210))
    ys = np.linspace(0, 1, 180)[:, None, None]
    xs = np.linspace(0, 1, w)[None, :, None]
    banner = (np.array([37, 99, 235]) * (1 - xs) + np.array([147, 51, 234]) * xs) * (1 - 0.25 * ys)
    image.paste(Image.fromarray(banner.astype(np.uint8)), (0, 56))
    draw.text((48, 110), "Smaller palette images", font=_font(34, bold=True), fill=(255, 255, 255))
    body, link = _font(14), (37, 99, 235)
    for col in range(3):
        x = 40 + 325 * col
        y = 270
        draw.text((x, y), _sentence(rng, 3)[:-1], font=_font(18, bold=True), fill=(20, 20, 20))
        y += 34
        while y < h - 40:
            for line in _wrap(draw, _sentence(rng, 10 + int(rng.random() * 10)), body, 290):
                if y >= h - 40:
                    break
                draw.text((x, y), line, font=body, fill=link if rng.random() < 0.1 else (55, 65, 81))
                y += 20
            y += 12
    return image


GRAPHICS: dict[str, Callable[[random.Random], Image.Image]] = {
    "text": text_page,
    "code": code_editor,
    "ui": ui_window,
    "chart": chart,
    "logo": logo,
    "sprites": sprites,
    "diagram": diagram,
    "web": web_page,
}


# ---------------------------------------------------------------------------
# Photos
# ---------------------------------------------------------------------------
def fit_photo(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Centre-crop *image* to the aspect ratio of *size*, then resize it to *size* (LANCZOS)."""
    w, h = image.size
    tw, th = size
    if w * th > h * tw:  # too wide
        cw, ch = h * tw // th, h
    else:
        cw, ch = w, w * th // tw
    left, top = (w - cw) // 2, (h - ch) // 2
    return image.convert("RGB").crop((left, top, left + cw, top + ch)).resize(size, Image.Resampling.LANCZOS)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", nargs="?", type=Path, default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")
    parser.add_argument("--photos", type=Path, default=DEFAULT_PHOTOS, help="folder of source photos")
    parser.add_argument("--photo-size", default="1024x683", help="photo size WxH (default 1024x683)")
    parser.add_argument("--no-screens", action="store_true", help="leave out the Chromium screenshots")
    args = parser.parse_args(argv)
    try:
        size = tuple(int(v) for v in args.photo_size.lower().split("x"))
        if len(size) != 2 or min(size) < 1:
            raise ValueError
    except ValueError:
        parser.error(f"--photo-size must be WxH, not {args.photo_size!r}")
    photos = sorted(p for p in args.photos.glob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".tif", ".tiff"))
    if not photos:
        parser.error(f"no photos in {args.photos}")
    (args.out / "photos").mkdir(parents=True, exist_ok=True)
    (args.out / "graphics").mkdir(parents=True, exist_ok=True)
    for path in photos:
        with Image.open(path) as im:
            fit_photo(im, size).save(args.out / "photos" / f"{path.stem}.png")
    for i, (name, make) in enumerate(GRAPHICS.items()):
        make(random.Random(1000 + i)).save(args.out / "graphics" / f"{name}.png")
    screens = [] if args.no_screens else make_screens(args.out / "graphics")
    made = f"{len(photos)} photos, {len(GRAPHICS)} graphics and {len(screens)} screenshots"
    print(f"{made} in {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()

"""The HTML page of ``kmc compare --html``: one self-contained file to look at.

Per image: the table of :func:`kmcodec.compare.format_table`, the original and
the decoded image at each k side by side, the same detailed window of each
enlarged with nearest-neighbour scaling (unless the window is the whole image), every palette as swatches, and plots
of bytes against PSNR and against SSIMULACRA2 (where measured) across k.  Images are embedded as ``data:`` URIs and the
style sheet is inline: no other file, no script, no network.

The plot needs matplotlib, the optional ``report`` extra
(``pip install 'kmcodec[report]'``), imported only here and drawn with the Agg
canvas, so no display and no global backend choice is involved.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from ._version import __version__
from .codec import decode, read_info
from .compare import ImageComparison, pillow_image, png_bytes
from .errors import KmcError, counted

if TYPE_CHECKING:
    from matplotlib.axes import Axes

#: Side, in pixels, of the window the zoomed crop shows (less for smaller images).
CROP_SIDE = 48
#: Displayed side of the zoomed crop; the crop is enlarged by a whole factor up to it.
CROP_DISPLAY = 288
#: Width of each image on the page; smaller images are enlarged without smoothing.
FIGURE_WIDTH = 300
#: Palette entries drawn per k before eliding the rest.
MAX_SWATCHES = 256
MATPLOTLIB_MISSING = "--html needs matplotlib for its plot: pip install 'kmcodec[report]'"


class ReportError(KmcError):
    """The report cannot be made (its optional dependency is missing)."""


def require_matplotlib() -> None:
    """Raise :class:`ReportError` with the install hint unless matplotlib imports.

    Examples
    --------
    >>> require_matplotlib()  # passes where the report extra is installed
    """
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ReportError(MATPLOTLIB_MISSING) from None


def _data_uri(data: bytes, media_type: str) -> str:
    return f"data:{media_type};base64,{base64.b64encode(data).decode('ascii')}"


def detailed_window(pixels: np.ndarray, side: int = CROP_SIDE) -> tuple[int, int, int, int]:
    """The (left, top, width, height) window of *pixels* with the most detail.

    Detail is the sum of absolute differences between neighbouring pixels
    (all channels), compared over windows on a grid of a quarter side; the
    first best wins, so the choice is deterministic.

    Examples
    --------
    >>> import numpy as np
    >>> img = np.zeros((100, 100, 3), np.uint8)
    >>> img[60:70:2, 30:40] = 255  # stripes: the only detail
    >>> detailed_window(img, side=16)
    (28, 56, 16, 16)
    """
    height, width, _ = pixels.shape
    cw, ch = min(side, width), min(side, height)
    p = pixels.astype(np.int32)
    detail = np.zeros((height, width), dtype=np.int64)
    detail[:, 1:] += np.abs(np.diff(p, axis=1)).sum(axis=2)
    detail[1:, :] += np.abs(np.diff(p, axis=0)).sum(axis=2)
    integral = np.zeros((height + 1, width + 1), dtype=np.int64)
    integral[1:, 1:] = detail.cumsum(axis=0).cumsum(axis=1)
    step = max(1, min(cw, ch) // 4)
    tops = np.arange(0, height - ch + 1, step)
    lefts = np.arange(0, width - cw + 1, step)
    t, left = tops[:, None], lefts[None, :]
    sums = integral[t + ch, left + cw] - integral[t, left + cw] - integral[t + ch, left] + integral[t, left]
    row, col = np.unravel_index(int(np.argmax(sums)), sums.shape)
    return int(lefts[col]), int(tops[row]), cw, ch


def _zoomed_png(pixels: np.ndarray, window: tuple[int, int, int, int], factor: int) -> bytes:
    """The *window* of *pixels* enlarged *factor* times with nearest-neighbour scaling, as PNG."""
    left, top, cw, ch = window
    crop = pillow_image(np.ascontiguousarray(pixels[top : top + ch, left : left + cw]))
    return png_bytes(crop.resize((cw * factor, ch * factor), Image.Resampling.NEAREST))


def _swatch_css(color: Sequence[int], mode: str) -> tuple[str, str]:
    """CSS colour and hex label of one palette entry."""
    rgb = tuple(color[:3]) if mode.startswith("RGB") else (color[0],) * 3
    alpha = color[-1] if mode in ("LA", "RGBA") else 255
    label = "#" + "".join(f"{v:02x}" for v in color)
    return f"rgba({rgb[0]},{rgb[1]},{rgb[2]},{alpha / 255:.3f})", label


def _palette_html(palette: list[tuple[int, ...]], mode: str) -> str:
    cells = []
    for color in palette[:MAX_SWATCHES]:
        css, label = _swatch_css(color, mode)
        if mode in ("LA", "RGBA"):  # the colour over a checkerboard, so translucency shows
            css = f"linear-gradient({css},{css}),repeating-conic-gradient(#bbb 0 25%,#fff 0 50%) 0 0/6px 6px"
        cells.append(f'<span class="sw" style="background:{css}" title="{label}"></span>')
    more = len(palette) - MAX_SWATCHES
    tail = f'<span class="more">and {more:,} more</span>' if more > 0 else ""
    return f'<div class="palette">{"".join(cells)}</div>{tail}'


def plot_svg(result: ImageComparison) -> bytes:
    """The rate-quality plots of one image as SVG (needs matplotlib).

    Bytes against PSNR and, when it was measured, against SSIMULACRA2, side by
    side: .kmc and PNG-8 bytes at each k (both hold the same decoded image, so
    share its quality), with the truecolor PNG and the input file as vertical
    lines.  A lossless k is drawn above the others in the PSNR plot and
    labelled so (SSIMULACRA2 scores it 100).

    Examples
    --------
    >>> import numpy as np
    >>> from kmcodec.compare import compare_image
    >>> img = np.arange(96, dtype=np.uint8).reshape(4, 8, 3)
    >>> svg = plot_svg(compare_image(img, [2, 4]))
    >>> svg.startswith(b"<?xml")
    True
    """
    require_matplotlib()
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    finite = [row.psnr for row in result.rows if not math.isinf(row.psnr)]
    lossless_y = (max(finite) if finite else 40.0) + 3.0
    panels = [("PSNR (dB)", [lossless_y if math.isinf(row.psnr) else row.psnr for row in result.rows], lossless_y)]
    if all(row.ssimulacra2 is not None for row in result.rows):
        panels.append(("SSIMULACRA2 (higher is better)", [row.ssimulacra2 for row in result.rows], None))
    with matplotlib.rc_context({"svg.hashsalt": "kmcodec", "svg.fonttype": "path", "font.size": 9}):
        fig = Figure(figsize=(6.4 * len(panels), 3.4), layout="constrained")
        FigureCanvasAgg(fig)
        for i, (label, ys, lossless) in enumerate(panels, 1):
            _plot_panel(fig.add_subplot(1, len(panels), i), result, ys, label, lossless)
        buf = io.BytesIO()
        fig.savefig(buf, format="svg", metadata={"Date": None})
    return buf.getvalue()


def _plot_panel(ax: Axes, result: ImageComparison, ys: list[float], label: str, lossless_y: float | None) -> None:
    """One rate-quality plot: .kmc and PNG-8 bytes (log scale) against *ys*, one per k."""
    ax.plot([row.kmc_bytes for row in result.rows], ys, "o-", color="#1f6feb", label=".kmc")
    png8 = [(row.png8_bytes, y) for row, y in zip(result.rows, ys, strict=True) if row.png8_bytes is not None]
    if png8:
        ax.plot([x for x, _ in png8], [y for _, y in png8], "s--", color="#d4731a", label="PNG-8, same palette image")
    ax.axvline(result.png_bytes, color="#444", linestyle=":", label="truecolor PNG (lossless)")
    if result.input_bytes != result.png_bytes:
        ax.axvline(result.input_bytes, color="#999", linestyle="-.", label="input file")
    points: dict[tuple[int, float], list[int]] = {}  # ks that made the same file share one label
    for row, y in zip(result.rows, ys, strict=True):
        points.setdefault((row.kmc_bytes, y), []).append(row.k)
    for (x, y), ks in points.items():
        text = "k=" + ", ".join(map(str, ks)) + (" lossless" if lossless_y is not None and y == lossless_y else "")
        ax.annotate(text, (x, y), textcoords="offset points", xytext=(-4, 7), ha="right", fontsize=8)
    ax.margins(x=0.08, y=0.15)
    ax.set_xscale("log")
    ax.set_xlabel("bytes (log scale)")
    ax.set_ylabel(label)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)


STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #222; background: #fff; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 18px; margin: 32px 0 4px; padding-top: 12px; border-top: 1px solid #ccc; word-break: break-all; }
h3 { font-size: 14px; margin: 16px 0 6px; color: #444; }
.meta { color: #666; margin: 0 0 8px; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; }
th, td { padding: 3px 9px; text-align: right; border-bottom: 1px solid #e4e4e4; }
th { background: #f3f3f3; font-weight: 600; }
.row { display: flex; flex-wrap: wrap; gap: 14px; align-items: flex-start; }
figure { margin: 0; }
figure img { display: block; border: 1px solid #ccc; }
figcaption { font-size: 12px; color: #555; margin-top: 3px; }
.checker { background: repeating-conic-gradient(#ddd 0 25%, #fff 0 50%) 0 0 / 16px 16px; }
.pixelated { image-rendering: pixelated; }
.palettes { display: flex; flex-wrap: wrap; gap: 18px; }
.palette { display: grid; grid-template-columns: repeat(32, 12px); gap: 1px; }
.sw { width: 12px; height: 12px; outline: 1px solid rgba(0, 0, 0, 0.15); }
.more { font-size: 12px; color: #666; }
.plot { max-width: 1280px; width: 100%; }
"""


def _figure(uri: str, caption: str, size: tuple[int, int], *, alpha: bool, pixelated: bool = False) -> str:
    """An image shown at *size* (width, height) CSS pixels, with its caption."""
    classes = [name for name, wanted in (("checker", alpha), ("pixelated", pixelated)) if wanted]
    cls = f' class="{" ".join(classes)}"' if classes else ""
    return (
        f'<figure><img{cls} src="{uri}" width="{size[0]}" height="{size[1]}" alt="{html.escape(caption)}">'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def _display_size(width: int, height: int) -> tuple[tuple[int, int], bool]:
    """The size an image is shown at, and whether it is enlarged (then by a whole factor, without smoothing)."""
    if width >= FIGURE_WIDTH:
        return (FIGURE_WIDTH, max(1, round(height * FIGURE_WIDTH / width))), False
    factor = max(1, FIGURE_WIDTH // width)
    return (width * factor, height * factor), factor > 1


def _table_html(result: ImageComparison) -> str:
    head = (
        "<tr><th>k</th><th>colours</th><th>.kmc bytes</th><th>&times; input</th><th>&times; PNG</th>"
        "<th>PNG-8 bytes</th><th>&times; PNG-8</th><th>PSNR dB</th><th>&Delta;E00</th><th>SSIMULACRA2</th>"
        "<th>encode s</th><th>decode s</th></tr>"
    )
    body = []
    for row in result.rows:
        d = row.to_dict(result.input_bytes, result.png_bytes)
        png8 = "&ndash;" if row.png8_bytes is None else f"{row.png8_bytes:,}"
        vs_png8 = "&ndash;" if d["kmc_to_png8"] is None else f"{d['kmc_to_png8']:.3f}"
        quality = "lossless" if d["lossless"] else f"{row.psnr:.2f}"
        perceptual = "&ndash;" if row.ssimulacra2 is None else f"{row.ssimulacra2:.2f}"
        body.append(
            f"<tr><td>{row.k}</td><td>{row.colors}</td><td>{row.kmc_bytes:,}</td><td>{d['kmc_to_input']:.3f}</td>"
            f"<td>{d['kmc_to_png']:.3f}</td><td>{png8}</td><td>{vs_png8}</td><td>{quality}</td>"
            f"<td>{row.ciede2000:.2f}</td><td>{perceptual}</td>"
            f"<td>{row.encode_seconds:.3f}</td><td>{row.decode_seconds:.3f}</td></tr>"
        )
    return f"<table>{head}{''.join(body)}</table>"


def _section_html(result: ImageComparison) -> str:
    """One image's part of the page: heading, table, images, zoomed crops, palettes and plot."""
    alpha = result.mode in ("LA", "RGBA")
    size, enlarged = _display_size(result.width, result.height)
    left, top, cw, ch = window = detailed_window(result.pixels)
    factor = max(1, CROP_DISPLAY // max(cw, ch))
    zoom = (cw, ch) != (result.width, result.height)  # else the images above already show it all, enlarged

    def add(pixels: np.ndarray, png: bytes, caption: str, label: str) -> None:
        figures.append(_figure(_data_uri(png, "image/png"), label, size, alpha=alpha, pixelated=enlarged))
        if zoom:
            zoomed = _data_uri(_zoomed_png(pixels, window, factor), "image/png")
            crops.append(_figure(zoomed, caption, (cw * factor, ch * factor), alpha=alpha))

    figures: list[str] = []
    crops: list[str] = []
    palettes = []
    add(result.pixels, result.png, "original", "original")
    for row in result.rows:
        decoded = decode(row.kmc)
        shown = row.png8 if row.png8 is not None else png_bytes(pillow_image(decoded))
        add(decoded, shown, f"k = {row.k}", f"k = {row.k}: {row.kmc_bytes:,} bytes")
        palette = read_info(row.kmc).palette
        heading = f"k = {row.k}: {counted(len(palette), 'colour')}"
        palettes.append(f"<div><h3>{heading}</h3>{_palette_html(palette, result.mode)}</div>")
    zoomed_html = (
        f"<h3>Zoomed: {cw} &times; {ch} pixels at ({left}, {top}), enlarged {factor}&times;</h3>"
        f'<div class="row">{"".join(crops)}</div>'
        if zoom
        else ""
    )
    plot = _data_uri(plot_svg(result), "image/svg+xml")
    note = result.ssimulacra2_note
    note_html = f'<p class="meta">SSIMULACRA2 not measured: {html.escape(note)}</p>' if note else ""
    return (
        f"<section><h2>{html.escape(result.name)}</h2>"
        f'<p class="meta">{result.width} &times; {result.height} {result.mode}, input {result.input_bytes:,} bytes, '
        f"truecolor PNG {result.png_bytes:,} bytes</p>"
        f"{_table_html(result)}{note_html}"
        f'<h3>Original and decoded</h3><div class="row">{"".join(figures)}</div>'
        f"{zoomed_html}"
        f'<div class="palettes">{"".join(palettes)}</div>'
        f'<h3>Bytes against quality</h3><img class="plot" src="{plot}" alt="bytes against PSNR and SSIMULACRA2">'
        "</section>"
    )


def render_html(results: Sequence[ImageComparison], *, settings: str = "") -> str:
    """The whole report page for *results*; *settings* is a line describing the run.

    Raises :class:`ReportError` when matplotlib is missing.

    Examples
    --------
    >>> import numpy as np
    >>> from kmcodec.compare import compare_image
    >>> img = np.arange(96, dtype=np.uint8).reshape(4, 8, 3)
    >>> page = render_html([compare_image(img, [2])], settings="seed 0")
    >>> page.startswith("<!DOCTYPE html>") and 'src="http' not in page
    True
    """
    require_matplotlib()
    sections = "".join(_section_html(result) for result in results)
    meta = html.escape(f"kmcodec {__version__}" + (f", {settings}" if settings else ""))
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>kmc compare</title><style>{STYLE}</style></head><body>"
        f'<h1>kmc compare</h1><p class="meta">{meta}</p>{sections}</body></html>\n'
    )

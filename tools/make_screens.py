#!/usr/bin/env python3
"""Real screenshots for the label-coding image set: pages the project makes, rendered by headless Chromium.

    python tools/make_screens.py OUT            # -> OUT/screen-*.png
    python tools/make_imageset.py               # calls this for its graphics/ class

Each page is HTML this repository generates from its own files, so nothing
big is committed and the set grows with the project:

- ``screen-readme``: README.md as a web page (Python-Markdown);
- ``screen-design``: docs/design.md, a long text page in a serif face;
- ``screen-source``: kmcodec/codec.py highlighted by Pygments, light theme,
  with line numbers;
- ``screen-source-dark``: kmcodec/cli.py, Pygments' dark "monokai" theme;
- ``screen-terminal``: ``kmc --help`` and ``kmc inspect`` of the demo file in
  a terminal-style page;
- ``screen-report``: the ``kmc compare --html`` report of the demo image
  (needs matplotlib, the report extra; left out without it).

Chromium is Debian's ``chromium`` package (``CHROMIUM`` names another
binary); without it the tool says so and makes nothing.  ``markdown`` and
``pygments`` come with the bench extra.  The pixels depend on the fonts
installed: the same machine gives the same files.
"""

from __future__ import annotations

import argparse
import html
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: Viewport of every screenshot: a common laptop browser window.
SIZE = (1280, 960)

_PAGE = """<!doctype html><html><head><meta charset="utf-8"><style>{css}</style></head>
<body>{body}</body></html>"""
_DOC_CSS = """body {{ font-family: {face}; max-width: 860px; margin: 24px auto; color: #24292f; line-height: 1.5;
  font-size: 16px; }} h1, h2 {{ border-bottom: 1px solid #d0d7de; }}
code, pre {{ font-family: "DejaVu Sans Mono", monospace; background: #f6f8fa; font-size: 13px; }}
pre {{ padding: 12px; border-radius: 6px; overflow: hidden; }} a {{ color: #0969da; }}
table {{ border-collapse: collapse; }} td, th {{ border: 1px solid #d0d7de; padding: 4px 10px; }}
tr:nth-child(even) {{ background: #f6f8fa; }}"""


def _markdown_page(path: Path, face: str) -> str:
    import markdown

    body = markdown.markdown(path.read_text(encoding="utf-8"), extensions=["fenced_code", "tables"])
    return _PAGE.format(css=_DOC_CSS.format(face=face), body=body)


def _source_page(path: Path, style: str) -> str:
    from pygments import highlight
    from pygments.formatters import HtmlFormatter
    from pygments.lexers import PythonLexer

    formatter = HtmlFormatter(style=style, linenos="inline", noclasses=True)
    body = highlight(path.read_text(encoding="utf-8"), PythonLexer(), formatter)
    background = formatter.style.background_color
    css = f"body {{ margin: 0; background: {background}; }} pre {{ font: 14px/1.4 'DejaVu Sans Mono', monospace; }}"
    return _PAGE.format(css=css, body=body)


def _kmc(*args: str, cwd: Path = ROOT) -> str:
    kmc = [sys.executable, "-m", "kmcodec"]
    done = subprocess.run([*kmc, *args], capture_output=True, text=True, check=True, cwd=cwd)
    return done.stdout


def _terminal_page(work: Path) -> str:
    demo = ROOT / "fixtures" / "images" / "demo.png"
    _kmc("encode", str(demo), "demo.kmc", "-k", "32", "--force", cwd=work)
    text = "$ kmc --help\n" + _kmc("--help") + "\n$ kmc inspect demo.kmc\n" + _kmc("inspect", "demo.kmc", cwd=work)
    css = "body { margin: 0; background: #300a24; }"
    css += " pre { color: #eeeeec; font: 15px/1.35 'DejaVu Sans Mono'; margin: 8px; }"
    return _PAGE.format(css=css, body=f"<pre>{html.escape(text)}</pre>")


def _report_page(work: Path) -> str | None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return None
    report = work / "report.html"
    _kmc("compare", "fixtures/images/demo.png", "-k", "8,32", "--html", str(report), "--force")
    return report.read_text(encoding="utf-8")


PAGES: dict[str, Callable[[Path], str | None]] = {
    "screen-readme": lambda work: _markdown_page(ROOT / "README.md", "'DejaVu Sans', sans-serif"),
    "screen-design": lambda work: _markdown_page(ROOT / "docs" / "design.md", "'DejaVu Serif', serif"),
    "screen-source": lambda work: _source_page(ROOT / "kmcodec" / "codec.py", "default"),
    "screen-source-dark": lambda work: _source_page(ROOT / "kmcodec" / "cli.py", "monokai"),
    "screen-terminal": _terminal_page,
    "screen-report": _report_page,
}


def chromium() -> str | None:
    """The Chromium binary to render with, or None when there is none."""
    return os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


def screenshot(browser: str, page: Path, out: Path) -> None:
    """Render the HTML file *page* at SIZE into the PNG *out* (RGB, the page's top SIZE pixels)."""
    from PIL import Image

    shot = out.with_suffix(".shot.png")
    command = [
        browser,
        "--headless",
        "--no-sandbox",  # root in a container has no user namespace for Chromium's sandbox
        "--disable-gpu",
        "--hide-scrollbars",
        "--force-device-scale-factor=1",
        f"--window-size={SIZE[0]},{SIZE[1]}",
        f"--screenshot={shot}",
        page.as_uri(),
    ]
    subprocess.run(command, capture_output=True, check=True, timeout=120)
    with Image.open(shot) as im:
        im.convert("RGB").save(out)
    shot.unlink()


def make_screens(out: Path) -> list[Path]:
    """Write every page of PAGES that can be made as OUT/NAME.png; return the files written."""
    browser = chromium()
    if browser is None:
        print("make_screens: no chromium (Debian: apt-get install chromium): no screenshots", file=sys.stderr)
        return []
    out.mkdir(parents=True, exist_ok=True)
    written = []
    with tempfile.TemporaryDirectory(prefix="kmc-screens-") as tmp:
        work = Path(tmp)
        for name, make in PAGES.items():
            page = make(work)
            if page is None:
                print(f"make_screens: {name} left out (needs matplotlib, the report extra)", file=sys.stderr)
                continue
            html_file = work / f"{name}.html"
            html_file.write_text(page, encoding="utf-8")
            screenshot(browser, html_file, out / f"{name}.png")
            written.append(out / f"{name}.png")
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="output folder")
    args = parser.parse_args(argv)
    written = make_screens(args.out)
    print(f"{len(written)} screenshots in {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()

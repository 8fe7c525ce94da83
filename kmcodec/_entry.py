"""The ``kmc`` console script's entry: Ctrl-C while the command line's modules load ends as one line too.

Loading :mod:`kmcodec.cli` (click, the batch engine, Pillow) takes a few tenths
of a second, before its own handling of Ctrl-C is in place; a Ctrl-C there
printed a traceback.  Only ``import kmcodec`` itself (hundredths) is left
before this module's handler.
"""

from __future__ import annotations

import sys


def main() -> None:
    """Run the ``kmc`` command line (:func:`kmcodec.cli.main`)."""
    try:
        from .cli import main as run
    except KeyboardInterrupt:
        sys.stderr.write("kmc: error: interrupted\n")
        sys.exit(130)
    run()

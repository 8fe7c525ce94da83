"""The choices and defaults of options that ``kmc`` declares, in a module that imports nothing.

The command line needs them to build its options before it parses any, so
they live here rather than beside the code that uses them, which imports
numpy: ``kmc --version`` and ``kmc --help`` then load no codec.  Each stays
importable from its old home too (``kmcodec.colorspace.COLORSPACES``,
``kmcodec.codec.DEFAULT_EFFORT``, ``kmcodec.compare.DEFAULT_KS``).
"""

#: The colour spaces of ``encode(colorspace=...)``; the first is the default.
COLORSPACES = ("srgb", "oklab", "oklab-linear", "oklab-srgb")
DEFAULT_COLORSPACE = "srgb"

#: ``encode(effort=...)`` unless told otherwise: what each effort tries is
#: :data:`kmcodec.labels.EFFORT_METHODS`.
DEFAULT_EFFORT = 2

#: The palette sizes ``kmc compare`` tries unless told otherwise.
DEFAULT_KS = (16, 64, 256)

"""The choices and defaults of options that ``kmc`` declares, in a module that imports nothing.

The command line needs them to build its options before it parses any, so
they live here rather than beside the code that uses them, which imports
numpy: ``kmc --version`` and ``kmc --help`` then load no codec.  Each stays
importable from its old home too (``kmcodec.colorspace.COLORSPACES``,
``kmcodec.codec.DEFAULT_EFFORT``, ``kmcodec.compare.DEFAULT_KS``).
"""

#: The colour spaces of ``encode(colorspace=...)``.
COLORSPACES = ("srgb", "oklab", "oklab-linear", "oklab-srgb", "oklrab")
#: Where ``encode()`` fits a palette for the eye (no colorspace given, no PSNR target or
#: given palette; dithered or not): Oklab with L_r for lightness, since 2026-12-07 (Oklab
#: before). On the 25 corpus photos it needs 0.6 % fewer bytes than Oklab for the same
#: SSIMULACRA2 (median BD-rate), gains 1-2.4 points at equal k below 48 colours, and lifts
#: the worst photo against pngquant --nofs from -3.2 to -1.0 at k = 16 (docs/benchmarks.md).
EYE_COLORSPACE = "oklrab"
#: The spaces where ``encode(rdo=None)`` trades labels for bits (with RDO_FROM_COLORS below): the
#: perceptual ones that map by k-means' own mean, where it was measured.
RDO_COLORSPACES = ("oklab", "oklrab")
#: Where it fits one otherwise, and the default of the functions below it (fit_palette ...):
#: the stored values, whose squared error PSNR counts.
DEFAULT_COLORSPACE = "srgb"

#: The label coding methods by name, in method id order (spec §6.2): ``encode(method=...)``
#: takes one of them, several joined by commas, or "auto" (:data:`kmcodec.labels.METHOD_NAMES`).
METHODS = ("stored", "deflate", "lzma", "cm", "cmm", "cm2d", "cmx")

#: The efforts of ``encode(effort=...)``: what each tries is :data:`kmcodec.labels.EFFORT_METHODS`.
EFFORTS = (1, 2, 3)
DEFAULT_EFFORT = 2

#: ``encode(colors=None)``: the palette size without a target.
DEFAULT_COLORS = 64

#: ``encode(rdo=None)``: rate-distortion-optimised labels at this lambda where the palette is fitted for
#: the eye in Oklab (with L_r or not), undithered and lossy, with at least RDO_FROM_COLORS entries
#: (EncodeOptions.rdo_for).
#: The best SSIMULACRA2 per byte on the corpus photos with no photo more than 3 points below pngquant
#: --nofs at equal k: below 48 entries RDO gains little and costs the worst photos the most
#: (docs/benchmarks.md, "RDO by default from k = 48").
DEFAULT_RDO = 5.0
RDO_FROM_COLORS = 48

#: The palette sizes ``kmc compare`` tries unless told otherwise.
DEFAULT_KS = (16, 64, 256)

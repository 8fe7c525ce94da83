"""Pillow plugin: ``Image.open`` reads .kmc files and ``Image.save`` writes them.

``import kmcodec`` registers the format "KMC", the extension ``.kmc`` and the
MIME type ``image/x-kmc``::

    >>> from PIL import Image
    >>> im = Image.open("photo.kmc")                # doctest: +SKIP
    >>> im.save("copy.kmc", colors=16, seed=1)      # doctest: +SKIP

Opening is lazy, as for Pillow's own formats: ``Image.open`` reads the
preamble and the chunks before the first strip (HEAD, the metadata chunks
and PALT; spec §3.3), checks them, and stops.  Two pixel limits apply on
open: kmcodec's (``kmcodec.MAX_IMAGE_PIXELS``, raising
:class:`~kmcodec.ImageTooLargeError`), then Pillow's decompression-bomb
check (``Image.MAX_IMAGE_PIXELS``); to open a larger image, raise both.
``load()`` reads the rest of the file and decodes it strip by strip.  The image's mode is the file's layout (L,
LA, RGB or RGBA); ``info`` carries ``icc_profile``, ``exif`` (with Pillow's
``Exif\\0\\0`` prefix) and ``xmp`` when the file has them before its strips.

``verify()`` checks the whole chunk sequence and every CRC without
decoding the strips.  It closes the file, as Pillow's formats do; to load
the pixels after it, open the image again (``load()`` says so, with a
:class:`~kmcodec.ParameterError`).

Errors: a file that does not start with the .kmc signature is not this
plugin's, and ``Image.open`` goes on to the other formats (and raises
``UnidentifiedImageError`` if none matches).  A file that starts with the
signature but breaks the spec raises the :class:`~kmcodec.KmcError` that
names the fault, a ``ValueError``, as :func:`kmcodec.decode` does: from
``Image.open`` for damage before the first strip, from ``load()`` after it.

Saving takes the options of :func:`kmcodec.encode` as keywords (``colors``,
``seed``, ``method``, ... : :class:`kmcodec.options.EncodeOptions`), and
``icc_profile``, ``exif`` and ``xmp`` to replace the image's own, as
Pillow's formats do.  A .kmc file holds one image: ``save_all=True``
saves an image of one frame as ``save()`` does; ``append_images``, or an
animation with ``save_all=True``, raises :class:`~kmcodec.ParameterError`
rather than drop frames.
"""

from __future__ import annotations

from typing import IO

from PIL import Image, ImageFile

from .errors import FormatError, ParameterError
from .limits import RAISE_PILLOW, check_pixels, pixel_limit

# Registering the plugin is all ``import kmcodec`` does with Pillow, so the codec (numpy,
# construct, the kernels) is imported when a .kmc file is opened or saved, not here.

#: ``kmcodec.format.SIGNATURE``, spelled out so that registering needs no import of the format.
SIGNATURE = b"\x8bKMC\r\n\x1a\n"
_METADATA_KEYS = ("icc_profile", "exif", "xmp")


def _accept(prefix: bytes) -> bool:
    return prefix.startswith(SIGNATURE)


class KmcImageFile(ImageFile.ImageFile):
    format = "KMC"
    format_description = "k-means palette image (kmcodec)"

    def _open(self) -> None:
        from .container import read_prelude
        from .inputs import layout_mode, pillow_info

        assert self.fp is not None
        start = self.fp.tell()
        # Nothing read up to the first strip grows with the image, so the limits apply after it:
        # kmcodec.MAX_IMAGE_PIXELS here, with a message for this caller, Pillow's MAX_IMAGE_PIXELS
        # next (in Image.open).
        prelude = read_prelude(self.fp, max_pixels=None)
        header = prelude.header
        check_pixels(header.width, header.height, pixel_limit(), raise_=RAISE_PILLOW)
        self._size = (header.width, header.height)
        self._mode = layout_mode(header.layout)
        self.info.update(pillow_info(prelude.icc_profile, prelude.exif, prelude.xmp))
        self.tile = [("kmc", (0, 0, *self._size), start, None)]

    def verify(self) -> None:
        """Check every chunk's framing, CRC and order (spec §9.2 steps 1-3) without decoding the strips."""
        if self.fp is None or not self.tile:
            msg = "verify must be called directly after open"
            raise RuntimeError(msg)
        from .container import parse_container

        self.fp.seek(self.tile[0][2])
        parse_container(self.fp.read(), max_pixels=None)
        super().verify()

    def load(self) -> Image.core.PixelAccess | None:
        if self.tile and self.fp is None:  # Pillow's own load() would fail an assertion
            msg = "the .kmc file was closed before its pixels were read (verify() closes it): open the image again"
            raise ParameterError(msg)
        return super().load()


class KmcDecoder(ImageFile.PyDecoder):
    """Reads the file from the tile's offset and decodes it strip by strip into the image.

    Beside the image Pillow allocates, memory is a few strips, not a second
    copy of the image.
    """

    _pulls_fd = True

    def decode(self, buffer: bytes) -> tuple[int, int]:
        from . import codec

        assert self.fd is not None
        width, height = self.state.xsize, self.state.ysize
        # At most the pixels Image.open let through, whatever the file says now.
        with codec.open_strips(self.fd, max_pixels=width * height) as reader:
            if (reader.width, reader.height, reader.mode) != (width, height, self.mode):
                msg = f"the .kmc file changed since it was opened: now {reader.width} x {reader.height} {reader.mode}"
                raise FormatError(msg, prefix="")
            for top, pixels in reader:
                # set_as_raw fills the state's extents: one strip's rows at a time.
                self.state.yoff, self.state.ysize = top, len(pixels)
                self.set_as_raw(pixels.tobytes())
        return -1, 0


def _save(im: Image.Image, fp: IO[bytes], filename: str | bytes) -> None:
    from . import codec
    from .options import EncodeOptions

    info = im.encoderinfo
    replaced = {key: info[key] for key in _METADATA_KEYS if key in info}
    if replaced:
        im = im.copy()  # the caller's image keeps its own info
        if isinstance(replaced.get("exif"), Image.Exif):
            replaced["exif"] = replaced["exif"].tobytes()
        im.info.update(replaced)
    fp.write(codec.encode_with(im, EncodeOptions.from_mapping(info)))


def _save_all(im: Image.Image, fp: IO[bytes], filename: str | bytes) -> None:
    """``save_all=True``: one frame is saved as by :func:`_save`; a .kmc file has no room for more."""
    if im.encoderinfo.get("append_images") or getattr(im, "is_animated", False):
        msg = "a .kmc file holds one image: save each frame to a file of its own (without save_all, the first is saved)"
        raise ParameterError(msg)
    _save(im, fp, filename)


Image.register_open(KmcImageFile.format, KmcImageFile, _accept)
Image.register_decoder("kmc", KmcDecoder)
Image.register_save(KmcImageFile.format, _save)
Image.register_save_all(KmcImageFile.format, _save_all)
Image.register_extension(KmcImageFile.format, ".kmc")
Image.register_mime(KmcImageFile.format, "image/x-kmc")

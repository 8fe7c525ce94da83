"""Print spec §10, the annotated hex dump of a tiny .kmc file, as Markdown.

The file comes from the real encoder, so the dump shows what the code writes:

    python tools/spec_hexdump.py

and paste the output between the BEGIN/END markers of ``spec/kmc-format.md`` §10.
The walk below reads the file the way §9 says a decoder does, but checks only the
CRCs; it is an illustration, not a second decoder.
"""

from __future__ import annotations

import zlib

import numpy as np

import kmcodec
from kmcodec import format as fmt
from kmcodec.format import Layout, Method

RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)
#: 3 x 2 RGB with three colours: red green blue / blue red red.
PIXELS = np.array([[RED, GREEN, BLUE], [BLUE, RED, RED]], dtype=np.uint8)

Field = tuple[int, str, str]  # size in bytes, field name, meaning
Row = tuple[int, bytes, str, str]  # offset, bytes, field name, meaning


def head_fields(payload: bytes) -> list[Field]:
    h = fmt.Header.parse(payload)
    bits = fmt.bits_per_label(h.colors)
    strips = -(-h.height // h.rows_per_strip)
    return [
        (4, "width", f"{h.width} pixels"),
        (4, "height", f"{h.height} pixels"),
        (4, "colors", f"k = {h.colors}, so b = {bits} bits per label"),
        (4, "rows_per_strip", f"{h.rows_per_strip}; strip count N = ceil({h.height} / {h.rows_per_strip}) = {strips}"),
        (1, "layout", f"{h.layout} = {Layout(h.layout).name}"),
        (1, "method", f"{h.method} = {Method(h.method).name.lower()}"),
    ]


def made_fields(payload: bytes) -> list[Field]:
    m = fmt.Made.parse(payload)
    return [
        (8, "seed", str(m.seed)),
        (4, "requested_colors", str(m.requested_colors)),
        (4, "unique_colors", str(m.unique_colors)),
        (4, "iterations", f"{m.iterations} (the palette is exact)" if m.iterations == 0 else str(m.iterations)),
        (8, "mse", f"{m.mse!r} (IEEE 754 binary64)"),
    ]


def palt_fields(payload: bytes, channels: int) -> list[Field]:
    entries = [tuple(payload[i : i + channels]) for i in range(0, len(payload), channels)]
    return [(channels, f"entry {i}", str(entry)) for i, entry in enumerate(entries)]


def strp_fields(payload: bytes, width: int, bits: int) -> list[Field]:
    s = fmt.StripHead.parse(payload[: fmt.STRIP_HEAD_SIZE])
    fields: list[Field] = [(4, "index", str(s.index)), (1, "method", f"{s.method} = {Method(s.method).name.lower()}")]
    if s.method != Method.STORED:
        return [*fields, (len(payload) - fmt.STRIP_HEAD_SIZE, "data", "coded labels")]
    size = fmt.row_bytes(width, bits)
    data = payload[fmt.STRIP_HEAD_SIZE :]
    for row, start in enumerate(range(0, len(data), size)):
        stream = "".join(f"{byte:08b}" for byte in data[start : start + size])
        groups = [stream[i : i + bits] for i in range(0, width * bits, bits)]
        pad = stream[width * bits :]
        meaning = f"bits `{' '.join(groups)}`" + (f" + padding `{pad}`" if pad else "")
        fields.append((size, f"row {row}", f"{meaning}: labels {' '.join(str(int(g, 2)) for g in groups)}"))
    return fields


def walk(data: bytes) -> list[Row]:
    """Split *data* into annotated rows: preamble, then each chunk's framing and fields."""
    check = zlib.crc32(data[:10]) & 0xFFFF
    rows: list[Row] = [
        (0, data[:8], "signature", "0x8B, `KMC`, CR LF, ^Z, LF"),
        (8, data[8:9], "major", str(data[8])),
        (9, data[9:10], "minor", str(data[9])),
        (10, data[10:12], "check", f"CRC-32 of bytes 0-9 is 0x{zlib.crc32(data[:10]):08X}; low 16 bits 0x{check:04X}"),
    ]
    offset = fmt.PREAMBLE_SIZE
    width = channels = bits = 0
    while offset < len(data):
        length = int.from_bytes(data[offset : offset + 4], "big")
        kind = data[offset + 4 : offset + 8]
        payload = data[offset + 8 : offset + 8 + length]
        name = kind.decode("ascii")
        if kind == fmt.HEAD:
            h = fmt.Header.parse(payload)
            width, channels, bits = h.width, h.layout, fmt.bits_per_label(h.colors)
            fields = head_fields(payload)
        elif kind == fmt.MADE:
            fields = made_fields(payload)
        elif kind == fmt.PALT:
            fields = palt_fields(payload, channels)
        elif kind == fmt.STRP:
            fields = strp_fields(payload, width, bits)
        else:
            fields = [(length, "payload", "")] if length else []
        role = "critical" if fmt.is_critical(kind) else "ancillary"
        rows += [(offset, data[offset : offset + 4], f"{name} length", f"{length} payload bytes")]
        rows += [(offset + 4, kind, f"{name} type", f"`{name}`, {role}")]
        at = offset + 8
        for size, field, meaning in fields:
            rows.append((at, payload[at - offset - 8 : at - offset - 8 + size], f"{name} {field}", meaning))
            at += size
        crc = zlib.crc32(data[offset : offset + 8] + payload)
        assert crc == int.from_bytes(data[at : at + 4], "big"), f"bad CRC in {name}"
        rows.append(
            (at, data[at : at + 4], f"{name} CRC", f"CRC-32 of bytes {offset}-{at - 1} (length, type, payload)")
        )
        offset = at + 4
    return rows


def markdown(data: bytes) -> str:
    lines = ["```"]
    for start in range(0, len(data), 16):
        chunk = data[start : start + 16]
        text = "".join(chr(b) if 0x20 <= b < 0x7F else "." for b in chunk)
        lines.append(f"{start:04x}  {' '.join(f'{b:02x}' for b in chunk):<47}  {text}")
    lines += ["```", "", "| Offset | Bytes | Field | Meaning |", "|---:|---|---|---|"]
    for offset, raw, field, meaning in walk(data):
        lines.append(f"| {offset} | `{raw.hex(' ').upper()}` | {field} | {meaning} |")
    return "\n".join(lines)


def main() -> None:
    data = kmcodec.encode(PIXELS, colors=4, method="stored", metadata=False)
    assert np.array_equal(kmcodec.decode(data), PIXELS)
    print(f'{len(data)} bytes from `kmcodec.encode(PIXELS, colors=4, method="stored", metadata=False)`:\n')
    print(markdown(data))


if __name__ == "__main__":
    main()

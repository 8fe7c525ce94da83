"""A second implementation of methods cm, cmm, cm2d and cmx, in plain Python, written from spec/kmc-method-cm.md.

The model (:func:`spec_model`) codes through any *coder* with a
``code(prob, bit)`` method: the range coder's encoder or decoder (§2) for
tests/test_cm.py and tests/test_cmx_reference.py (method cmx, *mix*), which
hold the compiled kernels to its bytes, or
:class:`IdealCoder`, which sums -log2 p over the decisions, for
tests/test_rdo.py, which holds the labeller's copy of the model to it.
"""

from __future__ import annotations

import numpy as np

SPEC_LIMIT = 30
SPEC_RATE = [131072 // (2 * n + 3) for n in range(SPEC_LIMIT + 1)]


def hash16(x: int) -> int:
    return ((x * 0x9E3779B1) % 2**32) >> 16


# §11.1: the mixer's fixed tables, from the 33 points SQ.
SQ = [1, 2, 4, 6, 10, 17, 27, 45, 74, 120, 194, 311, 488, 747, 1102, 1546, 2048]
SQ += [2550, 2994, 3349, 3608, 3785, 3902, 3976, 4022, 4051, 4069, 4079, 4086, 4090, 4092, 4094, 4095]


def squash(d: int) -> int:
    """§11.1: 1 ..= 4095."""
    d = min(max(d, -2047), 2047)
    j, f = (d >> 7) + 16, d & 127
    return (SQ[j] * (128 - f) + SQ[j + 1] * f + 64) >> 7


def _stretch_table() -> list[int]:
    """§11.1: STRETCH[p] is the least d whose squash reaches p."""
    table, nxt = [0] * 4096, 0
    for d in range(-2047, 2048):
        v = squash(d)
        for p in range(nxt, v + 1):
            table[p] = d
        nxt = v + 1
    for p in range(nxt, 4096):
        table[p] = 2047
    return table


STRETCH = _stretch_table()


def mixk(key: int, v: int) -> int:
    """§11.2: a 32-bit key mixed with a label, or with -1."""
    return ((key ^ (v % 2**32)) * 0x9E3779B1 + 0x7F4A7C15) % 2**32


class SpecEncoder:
    """§2.2."""

    def __init__(self) -> None:
        self.low, self.range, self.cache, self.pending, self.out = 0, 0xFFFFFFFF, 0, 0, bytearray()

    def _shift_low(self) -> None:
        if self.low < 0xFF000000 or self.low >= 2**32:
            carry = self.low >> 32
            self.out.append((self.cache + carry) % 256)
            self.out += bytes([(0xFF + carry) % 256]) * self.pending
            self.pending = 0
            self.cache = (self.low >> 24) & 0xFF
        else:
            self.pending += 1
        self.low = (self.low & 0xFFFFFF) << 8

    def code(self, prob: int, bit: int) -> int:
        bound = (self.range >> 12) * prob
        if bit:
            self.range = bound
        else:
            self.low, self.range = self.low + bound, self.range - bound
        while self.range < 2**24:
            self.range <<= 8
            self._shift_low()
        return bit

    def finish(self) -> bytes:
        for _ in range(5):
            self._shift_low()
        return bytes(self.out)


class SpecDecoder:
    """§2.1."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos, self.range, self.value = data, 0, 0xFFFFFFFF, 0
        for _ in range(5):
            self.value = ((self.value << 8) | self._byte()) % 2**32

    def _byte(self) -> int:
        b = self.data[self.pos] if self.pos < len(self.data) else 0
        self.pos += 1
        return b

    def code(self, prob: int, bit: int | None) -> int:
        bound = (self.range >> 12) * prob
        if self.value < bound:
            self.range, bit = bound, 1
        else:
            self.value, self.range, bit = self.value - bound, self.range - bound, 0
        while self.range < 2**24:
            self.range <<= 8
            self.value = ((self.value << 8) | self._byte()) % 2**32
        return bit


def spec_model(
    coder, lab: list, h: int, w: int, k: int, match: bool = False, twod: bool = False, mix: bool = False
) -> None:
    """§5 (and §9 with *match*, §10 with *twod*, §10 and §11 with *mix*) over *lab*.

    *lab* holds rows of labels, None where not decoded yet.
    """
    twod = twod or mix  # §11: method 6 is method 5 with a mixer
    big = (k - 1).bit_length()
    tables: dict = {}
    state: dict = {}
    last_seen: dict = {}  # §9.1 T, absent slots are -1
    mp, ml = -1, 0
    t_bits = min(18, max(10, (h * w - 1).bit_length()))
    offsets, run, score = [0, 0, 0, 0], 0, 0  # §10.1
    x_bits = min(20, max(12, (h * w - 1).bit_length()))  # §11.1 xb
    weights: dict = {}  # §11.1 Wt, absent sets are (32768, 32768, 0, 0, 0)

    def label_at(p: int) -> int:
        return lab[p // w][p % w]

    def x_slot(key: int) -> tuple:
        return ("X", ((key * 0x9E3779B1) % 2**32) >> (32 - x_bits))  # §11.2

    def decide(refs: list, bit: int | None, mixer: tuple | None = None) -> int:
        """One decision with the counters *refs*: their mean (§3), or with *mixer* = (ws, X's, PD's) §11.3's mix."""
        if mixer is None:
            words = [tables.get(ref, 0x80000000) for ref in refs]
            p = (words[0] >> 10) if len(words) == 1 else ((words[0] >> 10) + (words[1] >> 10)) >> 1
            bit = coder.code(max(p >> 10, 1), bit)
        else:
            ws, wide, direct = mixer
            refs = [*refs, wide, direct]  # a, b, c, e
            words = [tables.get(ref, 0x80000000) for ref in refs]
            a, b, c, e = (STRETCH[max(word >> 20, 1)] for word in words)
            u = (a, b, 256, c, e)
            wt = weights.setdefault(ws, [32768, 32768, 0, 0, 0])
            prob = squash(sum(wi * ui for wi, ui in zip(wt, u, strict=True)) >> 16)
            bit = coder.code(prob, bit)
            err = ((bit << 12) - prob) * 64
            for n, ui in enumerate(u):
                wt[n] = min(max(wt[n] + ((ui * err) >> 16), -(2**22)), 2**22)
        for ref, word in zip(refs, words, strict=True):
            n, p = word & 1023, word >> 10
            p += ((bit << 22) - p) * SPEC_RATE[n] >> 16
            tables[ref] = (p << 10) | min(n + 1, SPEC_LIMIT)
        return bit

    for y in range(h):
        for x in range(w):
            if y == 0:  # §5.1
                W = lab[0][x - 1] if x >= 1 else 0
                WW = lab[0][x - 2] if x >= 2 else 0
                N = NW = NE = NN = W
            else:
                W = lab[y][x - 1] if x >= 1 else lab[y - 1][0]
                WW = lab[y][x - 2] if x >= 2 else lab[y - 1][0]
                N = lab[y - 1][x]
                NW = lab[y - 1][x - 1] if x >= 1 else (lab[y - 2][0] if y >= 2 else 0)
                NE = lab[y - 1][x + 1] if x + 1 < w else N
                NN = lab[y - 2][x] if y >= 2 else N
            s_w, s_n = state.get((y, x - 1), 0), state.get((y - 1, x), 0)
            v = lab[y][x]
            flat = W == N == NW == NE
            i = y * w + x
            P, last = None, -1  # §10.2 the prediction, and what T held at this pixel's slot
            if twod:  # §10.2
                if y > 0 and x > 0 and x + 1 < w:
                    best, first = -1, 0
                    for j, o in enumerate(offsets):
                        if o < 2 or i - o - w - 1 < 0:
                            continue
                        c = i - o
                        agree = (
                            (label_at(c - 1) == W) + (label_at(c - w) == N)
                            + (label_at(c - w - 1) == NW) + (label_at(c - w + 1) == NE)
                        )  # fmt: skip
                        if agree > best:
                            best, first = agree, j
                    if best >= 0:
                        if first:
                            offsets.insert(0, offsets.pop(first))
                            run = 0
                        P, score = label_at(i - offsets[0]), best
                if not flat:
                    key = 0
                    for n in (W, N, NW, NE, WW, NN):
                        key = ((key ^ n) * 0x9E3779B1) % 2**32
                    last = last_seen.get(key >> (32 - t_bits), -1)
                    last_seen[key >> (32 - t_bits)] = i
            runq = run if run < 2 else 2 if run < 8 else 3  # §10.1, after §10.2 may have reset run
            # §11.2: the wide key, and ps of the direct context
            if mix:
                NWW = lab[y - 1][x - 2] if y >= 1 and x >= 2 else -1
                NNE = lab[y - 2][x + 1] if y >= 2 and x + 1 < w else -1
                wk = 9
                for n in (N, NW, NE, WW, NN, NWW, NNE, W):
                    wk = mixk(wk, n)
                ps = score if P is not None else 5
            M, lq = None, 0
            if match:  # §9.2
                if not flat:
                    key = 0
                    for q in (W, N, NW, NE, WW, NN):
                        key = ((key ^ q) * 0x9E3779B1) % 2**32
                    if mp < 0:
                        mp, ml = last_seen.get(key >> (32 - t_bits), -1), 0
                    last_seen[key >> (32 - t_bits)] = y * w + x
                M = lab[mp // w][mp % w] if mp >= 0 else None
                lq = min(ml, 15)
            label = None
            if M is not None and not (flat and M == W):  # §9.3
                refs = [
                    ("MA", lq << 3 | (M == W) | (M == N) << 1 | flat << 2),
                    ("MB", hash16((((lq << 3) | (s_w << 1) | (M == N)) << 16) | M)),
                ]
                if decide(refs, None if v is None else int(v == M)):
                    label, state[y, x] = M, 3
            refused = None  # §10.3 the refused prediction
            if P is not None and score >= 3 and not (flat and P == W):
                refs = [
                    ("DA", (score - 3) << 5 | runq << 3 | flat << 2 | (P == W) << 1 | (P == N)),
                    ("DB", hash16(P << 8 | (score - 3) << 4 | runq << 2 | s_w)),
                ]
                mixer = (32 + ((score - 3) << 3) + (runq << 1) + flat, x_slot(mixk(wk, P)), ("PD", 0)) if mix else None
                if decide(refs, None if v is None else int(v == P), mixer):
                    label, state[y, x] = P, 3
                else:
                    refused = P
            if label is not None:
                pass
            elif flat:  # §5.3, §9.4
                ctx = (W == WW) | (N == NN) << 1 | s_w << 2 | s_n << 4
                ref = ("F", ctx) if not match else ("F'", ctx + 64 * (1 + lq) if M == W else ctx)
                if decide([ref], None if v is None else int(v == W)):
                    label, state[y, x] = W, 0
            else:  # §5.4
                pat = (
                    (W == N) | (W == NW) << 1 | (N == NW) << 2 | (N == NE) << 3 | (W == NE) << 4
                    | (W == WW) << 5 | (N == NN) << 6 | s_w << 7 | s_n << 9
                )  # fmt: skip
                cands = [c for c in dict.fromkeys((W, N, NW, NE)) if c != M and c != refused]  # §9.4, §10.4
                for j, c in enumerate(cands):
                    key_a = ("A", hash16((((j << 11) | pat) << 16) | c))
                    if big <= 6:
                        key_b = ("B", hash16((((((pat & 31) << 6) | W) << 6 | N) << 2) | j))
                    else:
                        key_b = ("B", (j << 11) | pat)
                    mixer = None
                    if mix:  # §11.2, §11.3
                        direct = 256 + (j << 6) + ((c == P) << 5) + (ps << 2) + runq
                        mixer = (4 * j + s_w, x_slot((wk + j + 1) % 2**32), ("PD", direct))
                    if decide([key_a, key_b], None if v is None else int(v == c), mixer):
                        label, state[y, x] = c, 1 if j else 0
                        break
            if label is None:
                if big <= 5:  # §5.5
                    row1, row2 = (W * k + N) << big, (NW * k + NE) << big
                else:
                    mask = 2 ** min(big, 20 - big) - 1
                    row1, row2 = (W & mask) << big, (N & mask) << big
                node = 1
                for d in range(big):
                    shift = big - 1 - d
                    if ((2 * node + 1) - 2 ** (d + 1)) << shift >= k:
                        node *= 2
                        continue
                    mixer = None
                    if mix:  # §11.2, §11.3; where: P's way at this node, if its leaf is below it
                        leaf = None if P is None else P + 2**big
                        where = 0 if leaf is None or leaf >> (big - d) != node else 1 + ((leaf >> shift) & 1)
                        mixer = (
                            16 + d,
                            x_slot((3 * wk + node * 0x9E3779B1) % 2**32),
                            ("PD", 512 + (d << 5) + (where << 3) + ps),
                        )
                    refs = [("E1", row1 + node), ("E2", row2 + node)]
                    bit = decide(refs, None if v is None else (v >> shift) & 1, mixer)
                    node = 2 * node + bit
                label, state[y, x] = node - 2**big, 2
            lab[y][x] = label
            mp, ml = (mp + 1, ml + 1) if M is not None and label == M else (-1, ml)  # §9.5
            if last >= 0 and label_at(last) == label and i - last not in offsets:  # §10.5
                offsets[-1] = i - last
            if P is not None:
                run = run + 1 if label == P else 0


def spec_encode(labels: np.ndarray, k: int, match: bool = False, twod: bool = False, mix: bool = False) -> bytes:
    coder = SpecEncoder()
    spec_model(coder, labels.tolist(), *labels.shape, k, match, twod, mix)
    return coder.finish()


def spec_decode_raw(
    data: bytes, h: int, w: int, k: int, match: bool = False, twod: bool = False, mix: bool = False
) -> tuple[np.ndarray, int, int]:
    """Labels, bytes consumed and final code value, whatever the bytes."""
    coder = SpecDecoder(data)
    lab = [[None] * w for _ in range(h)]
    spec_model(coder, lab, h, w, k, match, twod, mix)
    return np.array(lab), coder.pos, coder.value


def spec_decode(
    data: bytes, h: int, w: int, k: int, match: bool = False, twod: bool = False, mix: bool = False
) -> np.ndarray:
    labels, used, value = spec_decode_raw(data, h, w, k, match, twod, mix)
    assert (used, value) == (len(data), 0)  # §6
    return labels


class IdealCoder:
    """Codes nothing: sums the bits, ``cost[p]`` for a 1 and ``cost[4096 - p]`` for a 0, of each decision.

    *cost* (4096,) is the table of -log2(P / 4096) to price with.
    """

    def __init__(self, cost: np.ndarray) -> None:
        self.cost, self.bits = cost.tolist(), 0.0

    def code(self, prob: int, bit: int) -> int:
        self.bits += self.cost[prob] if bit else self.cost[4096 - prob]
        return bit


def spec_ideal_bits(labels: np.ndarray, k: int, cost: np.ndarray) -> float:
    """The sum of -log2 p, priced by *cost*, over the decisions method cm codes for *labels*."""
    coder = IdealCoder(cost)
    spec_model(coder, labels.tolist(), *labels.shape, k)
    return coder.bits

"""Compiled kernels of the context-modelled label coder (see :mod:`kmcodec.cm`).

Importing this module imports numba; :mod:`kmcodec.cm` does so lazily.  The
model is written once, in :func:`_coder`, and compiled as four kernels: with
``enc`` it encodes the labels it reads, without it decodes the labels it
writes; with ``match`` it is method cmm (the match model of §9), without it
method cm.  Every choice the model makes depends only on labels already
coded, so encoder and decoder cannot drift apart.

The flags are constants of each kernel's closure, which numba's branch
pruning resolves before typing: a kernel types and compiles only the code
its flags take.  (The model used to be one function inlined into four small
kernels at numba's IR level, with the flags as arguments: numba then typed
and lowered both the encoder's and the decoder's path in every kernel, and
its copying of the big function's IR for each inlining cost more still;
compiling a kernel took about twice as long.)

Section numbers (§) are those of ``spec/kmc-method-cm.md``.  Callers have
validated everything (shapes, dtypes, ``1 < colors <= 65536``, labels below
``colors``); the kernels do not check again.  The encoder stops with -1
before a row that might not fit its output buffer.
"""

from __future__ import annotations

import numpy as np
from numba import int64, njit, uint64

# ---------------------------------------------------------------------------
# §3 Probability counters
# ---------------------------------------------------------------------------
#: Probability bits kept by a counter (the coder uses the top 12).
P_BITS = 22
#: A counter's adaptation count stops here: its rate never falls below 1 / (LIMIT + 1.5).
LIMIT = 30
#: Initial counter word: probability one half, count zero.
COUNTER_INIT = np.uint32(1 << (P_BITS - 1) << 10)
#: RATE[n] = 2**16 / (n + 1.5), rounded down: the counter's step after n updates.
RATE = np.array([131072 // (2 * n + 3) for n in range(LIMIT + 1)], dtype=np.int32)

# ---------------------------------------------------------------------------
# §4 Context tables
# ---------------------------------------------------------------------------
#: Slots (log2) of the hashed candidate tables A and B.
HASH_BITS = 16
#: Palettes of up to 2**SMALL_BITS colours key the escape tables on pairs of labels (§5.5).
SMALL_BITS = 5
#: Palettes of up to 2**PAIR_FLAG_BITS colours key candidate table B on (W, N) (§5.4).
PAIR_FLAG_BITS = 6
#: Cap (log2) on the slots of each escape table for large palettes.
TREE_BITS = 20
GOLDEN = 0x9E3779B1
#: Slots (log2) of the match model's position table: enough for the strip's labels, within these bounds.
MATCH_MIN_BITS = 10
MATCH_BITS = 18
#: Match lengths the model tells apart: 0 ..= MATCH_LEVELS - 1 (longer ones count as the last).
MATCH_LEVELS = 16
MATCH_A_SIZE = MATCH_LEVELS << 3


@njit
def _hash(x, bits):
    """§4: top *bits* bits of the low 32 bits of x * 0x9E3779B1."""
    return ((x * GOLDEN) & 0xFFFFFFFF) >> (32 - bits)


# Table indices are cast to unsigned, which spares numba's code for negative
# (wrap-around) indices: about 15 % of the decoding time at k = 256.
@njit
def _prob(table, i):
    """A counter's probability of a 1, in 22 bits."""
    return int64(table[uint64(i)]) >> 10


@njit
def _update(table, i, bit, rate):
    """§3: move the counter towards *bit* by its rate, then count the update."""
    i = uint64(i)
    e = int64(table[i])
    n = e & 1023
    p = e >> 10
    p += (((bit << P_BITS) - p) * int64(rate[n])) >> 16
    if n < LIMIT:
        n += 1
    table[i] = (p << 10) | n


@njit
def _p12(p22):
    """§3: a 22-bit probability as the coder's 12-bit one, at least 1."""
    p = p22 >> 10
    return p if p > 0 else 1


# ---------------------------------------------------------------------------
# §2 Binary range coder (LZMA's)
# ---------------------------------------------------------------------------
# The encoder's two steps are inlined by numba itself: left to LLVM,
# _encode_bit stayed a call, which made encoding 1.3-1.5x slower at k = 16
# (_shift_low as a call measured within noise, perhaps 1-3 % slower with cmm).
# The small helpers above are left to LLVM at no measurable cost, and are
# compiled once rather than per call site.
@njit(inline="always")
def _shift_low(low, cache, pending, pos, out):
    if low < 0xFF000000 or low >= 0x100000000:
        carry = low >> 32
        out[pos] = (cache + carry) & 0xFF
        pos += 1
        while pending:
            out[pos] = (0xFF + carry) & 0xFF
            pos += 1
            pending -= 1
        cache = (low >> 24) & 0xFF
    else:
        pending += 1
    low = (low & 0x00FFFFFF) << 8
    return low, cache, pending, pos


@njit(inline="always")
def _encode_bit(p, bit, rng, low, cache, pending, pos, out):
    bound = (rng >> 12) * p
    if bit:
        rng = bound
    else:
        low += bound
        rng -= bound
    while rng < 0x1000000:
        rng <<= 8
        low, cache, pending, pos = _shift_low(low, cache, pending, pos, out)
    return rng, low, cache, pending, pos


@njit
def _next_byte(data, pos, n):
    """The byte at *pos*, or 0 past the end (§2.1): reads never leave the buffer."""
    return int64(data[pos]) if pos < n else int64(0)


@njit
def _decode_bit(p, rng, code, pos, data, n):
    bound = (rng >> 12) * p
    if code < bound:
        rng = bound
        bit = int64(1)
    else:
        code -= bound
        rng -= bound
        bit = int64(0)
    while rng < 0x1000000:
        rng <<= 8
        code = ((code << 8) | _next_byte(data, pos, n)) & 0xFFFFFFFF  # only a corrupt stream needs the mask
        pos += 1
    return bit, rng, code, pos


@njit
def _decode_bit_flat(p, rng, code, pos, data, n):
    """_decode_bit without a branch on the bit: for the escape tree, whose bits are coin flips."""
    bound = (rng >> 12) * p
    bit = int64(code < bound)
    keep = -bit
    code -= bound & ~keep
    rng = (bound & keep) | ((rng - bound) & ~keep)
    while rng < 0x1000000:
        rng <<= 8
        code = ((code << 8) | _next_byte(data, pos, n)) & 0xFFFFFFFF  # only a corrupt stream needs the mask
        pos += 1
    return bit, rng, code, pos


# ---------------------------------------------------------------------------
# §5 The model, shared by encoder and decoder
# ---------------------------------------------------------------------------
def _coder(name, enc, match):
    """The model compiled as kernel *name*: the encoder with *enc*, else the decoder; method cmm with *match*.

    The kernel codes the labels of one strip.  L is the strip in a padded
    uint16 array of shape (h + 2, w + 3): label (y, x) sits at L[y + 2, x + 2].
    The encoder reads it and writes *data*, returning the bytes written or
    -1 (out of room); the decoder reads *data* and fills L, returning (bytes
    read, final code value).  *enc* and *match* are closure constants, so
    numba drops the branches the kernel does not take before it types and
    compiles the rest: each kernel compiles only its own half of the model.
    """

    def kernel(L, k, data, rate):
        n = data.shape[0]
        h = L.shape[0] - 2
        w = L.shape[1] - 3
        bits = 0
        while (1 << bits) < k:
            bits += 1
        small = bits <= SMALL_BITS
        pair_flags = bits <= PAIR_FLAG_BITS
        # §4 tables.  Escape rows: pairs (small palettes) or single labels.
        if small:
            tree_rows = k * k
            row_mask = 0
        else:
            row_bits = min(bits, TREE_BITS - bits)
            tree_rows = 1 << row_bits
            row_mask = tree_rows - 1
        flat_t = np.full(64, COUNTER_INIT, np.uint32)
        cand_a = np.full(1 << HASH_BITS, COUNTER_INIT, np.uint32)
        cand_b = np.full((1 << HASH_BITS) if pair_flags else 4 << 11, COUNTER_INIT, np.uint32)
        esc_a = np.full(tree_rows << bits, COUNTER_INIT, np.uint32)
        esc_b = np.full(tree_rows << bits, COUNTER_INIT, np.uint32)
        states = np.zeros((2, w), np.uint8)  # §5: s of this row and the row above
        cand = np.zeros(4, np.int64)
        # §9.1 match model (method cmm): last position of each hashed neighbourhood, and its counters
        t_bits = MATCH_MIN_BITS
        while t_bits < MATCH_BITS and (1 << t_bits) < h * w:
            t_bits += 1
        m_pos = np.full((1 << t_bits) if match else 1, -1, np.int32)
        m_a = np.full(MATCH_A_SIZE if match else 1, COUNTER_INIT, np.uint32)
        m_b = np.full((1 << HASH_BITS) if match else 1, COUNTER_INIT, np.uint32)
        m_f = np.full(64 * (MATCH_LEVELS + 1) if match else 1, COUNTER_INIT, np.uint32)
        mp = int64(-1)  # §9.1 match position, kept as row my and column mx too
        my = int64(0)
        mx = int64(0)
        ml = int64(0)

        rng = int64(0xFFFFFFFF)
        low = int64(0)
        cache = int64(0)
        pending = int64(0)
        code = int64(0)
        pos = int64(0)
        if not enc:  # §2.1: the first five bytes
            for _ in range(5):
                code = ((code << 8) | _next_byte(data, pos, n)) & 0xFFFFFFFF
                pos += 1

        # most shift_low calls one row (and the flush) can add, §2.2
        row_bytes = 2 * w * (4 + (1 if match else 0) + bits) + 5
        for y in range(h):
            r = y + 2
            if enc and pos + pending + row_bytes > data.shape[0]:
                return int64(-1)  # out of room: the caller retries with a bigger buffer
            # §5.1 virtual labels around the strip
            if y >= 1:
                L[r, 0] = L[r - 1, 2]
                L[r, 1] = L[r - 1, 2]
                L[r - 1, w + 2] = L[r - 1, w + 1]
            s_row = states[y & 1]
            s_up = states[(y + 1) & 1]
            s_w = int64(0)
            for x in range(w):
                if not enc and pos > n:
                    return pos, code  # §6: the bytes ran out, so the strip is truncated whatever follows
                c = x + 2
                W = int64(L[r, c - 1])
                WW = int64(L[r, c - 2])
                if y == 0:
                    N = W
                    NW = W
                    NE = W
                    NN = W
                    s_n = int64(0)
                else:
                    N = int64(L[r - 1, c])
                    NW = int64(L[r - 1, c - 1])
                    NE = int64(L[r - 1, c + 1])
                    NN = int64(L[r - 2, c])
                    s_n = int64(s_up[x])
                v = int64(L[r, c]) if enc else int64(0)
                label = int64(-1)
                state = int64(0)
                flat = W == N and N == NW and N == NE
                M = int64(-1)
                if match:
                    if not flat:
                        mkey = int64(0)
                        for q in (W, N, NW, NE, WW, NN):
                            mkey = ((mkey ^ q) * GOLDEN) & 0xFFFFFFFF
                        slot = mkey >> (32 - t_bits)
                        if mp < 0:
                            mp = int64(m_pos[slot])
                            ml = 0
                            if mp >= 0:  # one division per match found, none per pixel it runs
                                my = mp // w
                                mx = mp - my * w
                        m_pos[slot] = y * w + x
                    if mp >= 0:
                        M = int64(L[my + 2, mx + 2])
                    mlq = min(ml, MATCH_LEVELS - 1)
                    if M >= 0 and not (flat and M == W):
                        mctx = (mlq << 3) | int64(M == W) | (int64(M == N) << 1) | (int64(flat) << 2)
                        ib = _hash((((mlq << 3) | (s_w << 1) | int64(M == N)) << 16) | M, HASH_BITS)
                        p = _p12((_prob(m_a, mctx) + _prob(m_b, ib)) >> 1)
                        if enc:
                            bit = int64(v == M)
                            rng, low, cache, pending, pos = _encode_bit(p, bit, rng, low, cache, pending, pos, data)
                        else:
                            bit, rng, code, pos = _decode_bit(p, rng, code, pos, data, n)
                        _update(m_a, mctx, bit, rate)
                        _update(m_b, ib, bit, rate)
                        if bit:
                            label = M
                            state = 3

                if label >= 0:
                    pass  # §9.3: the match decision coded it
                elif flat:
                    # §5.3 flat neighbourhood: one decision, "label = W"
                    ctx = int64(W == WW) | (int64(N == NN) << 1) | (s_w << 2) | (s_n << 4)
                    ft = flat_t
                    if match:
                        if M == W:
                            ctx += 64 * (1 + mlq)
                        ft = m_f
                    p = _p12(_prob(ft, ctx))
                    if enc:
                        bit = int64(v == W)
                        rng, low, cache, pending, pos = _encode_bit(p, bit, rng, low, cache, pending, pos, data)
                    else:
                        bit, rng, code, pos = _decode_bit(p, rng, code, pos, data, n)
                    if bit:
                        _update(ft, ctx, 1, rate)
                        label = W
                        state = 0
                    else:
                        _update(ft, ctx, 0, rate)
                else:
                    # §5.4 candidates W, N, NW, NE without repeats; one decision each until a hit
                    pat = (
                        int64(W == N)
                        | (int64(W == NW) << 1)
                        | (int64(N == NW) << 2)
                        | (int64(N == NE) << 3)
                        | (int64(W == NE) << 4)
                        | (int64(W == WW) << 5)
                        | (int64(N == NN) << 6)
                        | (s_w << 7)
                        | (s_n << 9)
                    )
                    key_b = ((((((pat & 31) << 6) | W) << 6) | N) << 2) if pair_flags else 0
                    nc = 0
                    if W != M:
                        cand[nc] = W
                        nc += 1
                    if N != W and N != M:
                        cand[nc] = N
                        nc += 1
                    if NW != W and NW != N and NW != M:
                        cand[nc] = NW
                        nc += 1
                    if NE != W and NE != N and NE != NW and NE != M:
                        cand[nc] = NE
                        nc += 1
                    for j in range(nc):
                        cj = cand[j]
                        ia = _hash((((j << 11) | pat) << 16) | cj, HASH_BITS)
                        ib = _hash(key_b | j, HASH_BITS) if pair_flags else (j << 11) | pat
                        p = _p12((_prob(cand_a, ia) + _prob(cand_b, ib)) >> 1)
                        if enc:
                            bit = int64(v == cj)
                            rng, low, cache, pending, pos = _encode_bit(p, bit, rng, low, cache, pending, pos, data)
                        else:
                            bit, rng, code, pos = _decode_bit(p, rng, code, pos, data, n)
                        if bit:
                            _update(cand_a, ia, 1, rate)
                            _update(cand_b, ib, 1, rate)
                            label = cj
                            state = 1 if j else 0
                            break
                        _update(cand_a, ia, 0, rate)
                        _update(cand_b, ib, 0, rate)

                if label < 0:
                    # §5.5 escape: the label's bits, most significant first
                    if small:
                        row_a = (W * k + N) << bits
                        row_b = (NW * k + NE) << bits
                    else:
                        row_a = (W & row_mask) << bits
                        row_b = (N & row_mask) << bits
                    node = int64(1)
                    if enc:
                        for d in range(bits):
                            shift = bits - 1 - d
                            if ((((node << 1) | 1) - (1 << (d + 1))) << shift) >= k:
                                node <<= 1  # every label under the 1 branch is >= k: the bit is 0, not coded
                                continue
                            ia = row_a + node
                            ib = row_b + node
                            p = _p12((_prob(esc_a, ia) + _prob(esc_b, ib)) >> 1)
                            bit = (v >> shift) & 1
                            rng, low, cache, pending, pos = _encode_bit(p, bit, rng, low, cache, pending, pos, data)
                            _update(esc_a, ia, bit, rate)
                            _update(esc_b, ib, bit, rate)
                            node = (node << 1) | bit
                    else:
                        # The same walk, but each step also fetches both children's
                        # probabilities before its bit is known, so that the next
                        # step need not wait for the tables.
                        p = _p12((_prob(esc_a, row_a + 1) + _prob(esc_b, row_b + 1)) >> 1)
                        for d in range(bits):
                            shift = bits - 1 - d
                            child = node << 1
                            p0 = p1 = int64(1)
                            if d + 1 < bits:
                                p0 = _p12((_prob(esc_a, row_a + child) + _prob(esc_b, row_b + child)) >> 1)
                                p1 = _p12((_prob(esc_a, row_a + child + 1) + _prob(esc_b, row_b + child + 1)) >> 1)
                            if (((child | 1) - (1 << (d + 1))) << shift) >= k:
                                node = child
                                p = p0
                                continue
                            bit, rng, code, pos = _decode_bit_flat(p, rng, code, pos, data, n)
                            _update(esc_a, row_a + node, bit, rate)
                            _update(esc_b, row_b + node, bit, rate)
                            node = child | bit
                            p = p1 if bit else p0
                    label = node - (1 << bits)
                    state = 2
                L[r, c] = label
                s_w = state
                s_row[x] = state
                if match:
                    if M >= 0 and label == M:
                        ml += 1
                        mp += 1
                        mx += 1
                        if mx == w:
                            mx = 0
                            my += 1
                    else:
                        mp = -1
            if y == 0:  # §5.1: the row above row 0, seen only as NN by row 1, repeats row 0
                for x in range(w):
                    L[1, x + 2] = L[2, x + 2]

        if enc:  # §2.2 flush
            for _ in range(5):
                low, cache, pending, pos = _shift_low(low, cache, pending, pos, data)
            return pos
        return pos, code

    kernel.__name__ = kernel.__qualname__ = name  # names numba's cache files and the kernel in profiles
    return njit(cache=True, nogil=True)(kernel)


#: Encode padded labels *L* into *out*; returns the bytes written, or -1 if *out* is too small.
encode_kernel = _coder("encode_kernel", enc=True, match=False)
#: Decode into padded *L*; returns (bytes consumed, final code value).
decode_kernel = _coder("decode_kernel", enc=False, match=False)
#: encode_kernel with the match model (method cmm).
encode_match_kernel = _coder("encode_match_kernel", enc=True, match=True)
#: decode_kernel with the match model (method cmm).
decode_match_kernel = _coder("decode_match_kernel", enc=False, match=True)


@njit(cache=True, nogil=True)
def palette_kernel(L, palette, out):
    """Write palette[label] for every label of padded *L* into *out*, shape (h, w, channels).

    Fused into decoding because numpy's ``take`` moves 3-byte rows about 5 times slower.
    The loop runs over one row at a time with unsigned indices and, for RGB, the
    channels unrolled: four times faster than plain out[y, x, c] indexing.
    """
    h, w, channels = out.shape
    for y in range(h):
        row = L[y + 2]
        pixels = out[y]
        if channels == 3:
            for x in range(w):
                v = uint64(row[x + 2])
                pixels[x, 0] = palette[v, 0]
                pixels[x, 1] = palette[v, 1]
                pixels[x, 2] = palette[v, 2]
        else:
            for x in range(w):
                v = uint64(row[x + 2])
                for c in range(channels):
                    pixels[x, c] = palette[v, c]


# ---------------------------------------------------------------------------
# Encoder heuristic (not part of the format): is the match model worth trying?
# ---------------------------------------------------------------------------
#: A match counts once it has predicted this many labels in a row: chance
#: matches in photos rarely last that long, the repeats of text and widgets do.
PROBE_RUN = 6


@njit(cache=True, nogil=True)
def match_probe_kernel(labels, row_step):
    """How often a long match (§9.1) would predict a label that is not W, on every row_step-th row.

    Follows the match model's position (last pixel with the same hashed
    neighbourhood, then the pixels after it) along rows 2, 2 + row_step, ...
    of an (h, w) label map, columns 2 to w - 2, coding nothing; a match ends
    at the row's end.  Returns (labels that a match running for at least
    PROBE_RUN labels predicted and that differ from W, non-flat pixels seen).
    """
    h, w = labels.shape
    t_bits = MATCH_MIN_BITS
    while t_bits < MATCH_BITS and (1 << t_bits) < h * w:
        t_bits += 1
    m_pos = np.full(1 << t_bits, -1, np.int64)
    hits = 0
    seen = 0
    for y in range(2, h, row_step):
        up = labels[y - 1]
        row = labels[y]
        mp = int64(-1)
        ml = 0
        for x in range(2, w - 1):
            ux = uint64(x)
            W = int64(row[ux - 1])
            N = int64(up[ux])
            NW = int64(up[ux - 1])
            NE = int64(up[ux + 1])
            v = int64(row[ux])
            if not (W == N and N == NW and N == NE):
                seen += 1
                if mp < 0:
                    mkey = int64(0)
                    for q in (W, N, NW, NE, int64(row[ux - 2]), int64(labels[y - 2, ux])):
                        mkey = ((mkey ^ q) * GOLDEN) & 0xFFFFFFFF
                    slot = mkey >> (32 - t_bits)
                    mp = m_pos[slot]
                    ml = 0
                    m_pos[slot] = y * w + x
            if mp >= 0 and int64(labels[uint64(mp // w), uint64(mp % w)]) == v:
                if ml >= PROBE_RUN and v != W:
                    hits += 1
                mp += 1
                ml += 1
            else:
                mp = -1
    return hits, seen

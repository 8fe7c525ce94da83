"""Compiled kernel of the rate-distortion-optimised labeller (see :mod:`kmcodec.rdo`).

Importing this module imports numba; :mod:`kmcodec.rdo` does so lazily, and
numba's on-disk cache makes only the first run compile.  The caller has
validated everything (shapes, dtypes, ``1 <= k <= 65536``, labels below k, a
finite lambda >= 0); the kernel does not check again.

The kernel runs the context model of method cm (``spec/kmc-method-cm.md``,
whose section numbers are cited below) over the strip in raster order, as
the coder will, but instead of coding a given label it prices each
candidate label in bits with the model's current counters, picks the one
of least squared error + lambda x bits, and then updates the counters with
it exactly as the coder does.  The model is written again here rather than
shared with :mod:`kmcodec._cm_kernels`: it only estimates, so a drift
from the coder would break no file, and the coder stays free to change its
kernels for speed.  :func:`rdo_bits_kernel` returns the model's estimate
of the chosen labels' bits, which tests/test_rdo.py holds to the coder's
length on synthetic maps, so a drift does not go unnoticed.
"""

from __future__ import annotations

import numpy as np
from numba import int64, njit

# The constants of spec/kmc-method-cm.md §3-§4 come from the coder itself, so
# the copy of the model below cannot drift from them.
from ._cm_kernels import (
    COUNTER_INIT,
    GOLDEN,
    HASH_BITS,
    LIMIT,
    P_BITS,
    PAIR_FLAG_BITS,
    RATE,
    SMALL_BITS,
    TREE_BITS,
)


@njit(inline="always")
def _hash(x):
    """§4 hash16."""
    return ((x * GOLDEN) & 0xFFFFFFFF) >> (32 - HASH_BITS)


@njit(inline="always")
def _p12(table_a, ia, table_b, ib):
    """§3: the 12-bit probability of a 1 from the mean of two counters."""
    p = ((int64(table_a[ia]) >> 10) + (int64(table_b[ib]) >> 10)) >> 11
    return p if p > 0 else 1


@njit(inline="always")
def _update(table, i, bit, rate):
    """§3 counter update."""
    e = int64(table[i])
    n = e & 1023
    p = e >> 10
    p += (((bit << P_BITS) - p) * int64(rate[n])) >> 16
    if n < LIMIT:
        n += 1
    table[i] = (p << 10) | n


@njit(inline="always")
def _escape(esc_a, row_a, esc_b, row_b, label, bits, k, cost, rate, b, price, update):
    """§5.5: walk the escape tree along *label*'s bits, most significant first.

    A bit whose 1 branch holds only labels >= k is 0 and not coded, so it
    is skipped.  With *price*, returns *b* plus the bits the coder would
    spend on the walk, added one decision at a time (else *b*); with
    *update*, moves the counters as the coder does.  Both flags are
    compile-time constants at every call, so each call compiles to only
    the work it asks for.
    """
    node = int64(1)
    for d in range(bits):
        shift = bits - 1 - d
        if ((((node << 1) | 1) - (1 << (d + 1))) << shift) >= k:
            node <<= 1
            continue
        bit = (label >> shift) & 1
        if price:
            p = _p12(esc_a, row_a + node, esc_b, row_b + node)
            b += cost[p] if bit else cost[4096 - p]
        if update:
            _update(esc_a, row_a + node, bit, rate)
            _update(esc_b, row_b + node, bit, rate)
        node = (node << 1) | bit
    return b


def _labeller(name, measure):
    """The labeller compiled as kernel *name*: rdo_kernel, or with *measure* rdo_bits_kernel.

    The kernel chooses the labels *out* (h, w) of one strip and returns
    their summed squared error, and with *measure* also the bits the model
    prices them at.  *measure* is a closure constant, so numba drops the
    branches the kernel does not take before it types and compiles the
    rest.  (A shared function inlined into both at numba's IR level, with
    *measure* an argument, took about 1.5 times as long to compile.)

    pix (h, w, C) uint8; palette (k, C) uint8 with k >= 2; near (h, w): each
    pixel's nearest entry; lam: float64 weight of a bit in squared-error
    units; alpha: the alpha channel's index, or -1; cost (4096,) float64:
    cost[P] = -log2(P / 4096), the bits of a decision of 12-bit probability
    P; ahead: bits added for each of the pixels right of and below this one
    whose nearest entry is not the label.

    A pixel's choices are its nearest entry and the labels of its causal
    neighbours W, N, NW and NE (the coder's candidates), restricted to
    entries as transparent as the nearest one; a fully transparent pixel
    keeps its nearest entry (the transparent one).  With *measure*, every
    choice is priced (without it, a choice whose error alone loses is
    skipped, and a pixel with one choice is not priced), which changes no
    choice.
    """

    def kernel(pix, palette, near, lam, alpha, cost, ahead, out):
        h, w, channels = pix.shape
        k = palette.shape[0]
        rate = RATE
        bits = 0
        while (1 << bits) < k:
            bits += 1
        small = bits <= SMALL_BITS
        pair_flags = bits <= PAIR_FLAG_BITS
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
        L = np.zeros((h + 2, w + 3), np.uint16)  # §5.1 padded labels: (y, x) at [y + 2, x + 2]
        states = np.zeros((2, w), np.uint8)
        cand = np.zeros(4, np.int64)
        cand_p = np.zeros(4, np.int64)
        opts = np.zeros(5, np.int64)
        value = np.zeros(channels, np.int64)
        total = int64(0)
        coded = 0.0

        for y in range(h):
            r = y + 2
            if y >= 1:  # §5.1 virtual labels
                L[r, 0] = L[r - 1, 2]
                L[r, 1] = L[r - 1, 2]
                L[r - 1, w + 2] = L[r - 1, w + 1]
            s_row = states[y & 1]
            s_up = states[(y + 1) & 1]
            s_w = int64(0)
            for x in range(w):
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
                q = int64(near[y, x])
                clear = alpha >= 0 and pix[y, x, alpha] == 0
                for ch in range(channels):
                    value[ch] = 0 if clear else int64(pix[y, x, ch])

                # The choices: q first (it wins ties), then the distinct neighbours allowed.
                opts[0] = q
                n_opts = 1
                if not clear:
                    q_clear = alpha >= 0 and palette[q, alpha] == 0
                    for o in (W, N, NW, NE):
                        if o == q or (alpha >= 0 and (palette[o, alpha] == 0) != q_clear):
                            continue
                        dup = False
                        for i in range(1, n_opts):
                            dup = dup or opts[i] == o
                        if not dup:
                            opts[n_opts] = o
                            n_opts += 1

                flat = W == N and N == NW and N == NE
                if flat:  # §5.3
                    ctx = int64(W == WW) | (int64(N == NN) << 1) | (s_w << 2) | (s_n << 4)
                    p_flat = int64(flat_t[ctx]) >> 20
                    if p_flat < 1:
                        p_flat = 1
                    nc = 0
                    pat = int64(0)
                    key_b = int64(0)
                else:  # §5.4
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
                    cand[nc] = W
                    nc += 1
                    if N != W:
                        cand[nc] = N
                        nc += 1
                    if NW != W and NW != N:
                        cand[nc] = NW
                        nc += 1
                    if NE != W and NE != N and NE != NW:
                        cand[nc] = NE
                        nc += 1
                    for j in range(nc):
                        ia = _hash((((j << 11) | pat) << 16) | cand[j])
                        ib = _hash(key_b | j) if pair_flags else (j << 11) | pat
                        cand_p[j] = _p12(cand_a, ia, cand_b, ib)
                if small:  # §5.5 escape rows
                    row_a = (W * k + N) << bits
                    row_b = (NW * k + NE) << bits
                else:
                    row_a = (W & row_mask) << bits
                    row_b = (N & row_mask) << bits

                best = q
                best_bits = 0.0
                if n_opts > 1 or measure:
                    best_j = 0.0
                    for i in range(n_opts):
                        o = opts[i]
                        d = int64(0)
                        for ch in range(channels):
                            e = value[ch] - int64(palette[o, ch])
                            d += e * e
                        if i > 0 and d >= best_j and not measure:
                            continue  # its bits cannot make up for its error: bits are >= 0
                        # §5.3-§5.5: the bits the coder would spend on o, with the counters as they are
                        b = 0.0
                        escape = True
                        if flat:
                            if o == W:
                                b = cost[p_flat]
                                escape = False
                            else:
                                b = cost[4096 - p_flat]
                        else:
                            for j in range(nc):
                                if cand[j] == o:
                                    b += cost[cand_p[j]]
                                    escape = False
                                    break
                                b += cost[4096 - cand_p[j]]
                        if escape:
                            b = _escape(esc_a, row_a, esc_b, row_b, o, bits, k, cost, rate, b, True, False)
                        own = b
                        # The label is also the context of the pixels to the right and below:
                        # where their nearest entry differs, they will likely cost more.
                        if x + 1 < w and near[y, x + 1] != o:
                            b += ahead
                        if y + 1 < h and near[y + 1, x] != o:
                            b += ahead
                        j_cost = d + lam * b
                        if i == 0 or j_cost < best_j:
                            best_j = j_cost
                            best = o
                            best_bits = own

                # The coder's updates for the label chosen (§5.3-§5.5).
                v = best
                coded += best_bits
                label = int64(-1)
                state = int64(2)
                if flat:
                    hit = int64(v == W)
                    _update(flat_t, ctx, hit, rate)
                    if hit:
                        label = v
                        state = 0
                else:
                    for j in range(nc):
                        ia = _hash((((j << 11) | pat) << 16) | cand[j])
                        ib = _hash(key_b | j) if pair_flags else (j << 11) | pat
                        hit = int64(v == cand[j])
                        _update(cand_a, ia, hit, rate)
                        _update(cand_b, ib, hit, rate)
                        if hit:
                            label = v
                            state = 1 if j else 0
                            break
                if label < 0:
                    _escape(esc_a, row_a, esc_b, row_b, v, bits, k, cost, rate, 0.0, False, True)
                d = int64(0)
                for ch in range(channels):
                    e = value[ch] - int64(palette[v, ch])
                    d += e * e
                total += d
                L[r, c] = v
                out[y, x] = v
                s_w = state
                s_row[x] = state
            if y == 0:  # §5.1: the row above row 0 repeats row 0
                for x in range(w):
                    L[1, x + 2] = L[2, x + 2]
        if measure:
            return total, coded
        return total

    kernel.__name__ = kernel.__qualname__ = name  # names numba's cache files and the kernel in profiles
    return njit(cache=True, nogil=True)(kernel)


#: Choose the labels *out* (h, w) of one strip; returns their summed squared error (see _labeller).
rdo_kernel = _labeller("rdo_kernel", measure=False)
#: rdo_kernel that also returns the bits its model prices the chosen labels at.
#:
#: Returns (summed squared error, bits): the bits are the sum of -log2 p over
#: the decisions the coder would code for the labels chosen, as the model
#: estimates them (without the look-ahead bits).  A separate compilation, so
#: that rdo_kernel does not pay for the sum.
rdo_bits_kernel = _labeller("rdo_bits_kernel", measure=True)

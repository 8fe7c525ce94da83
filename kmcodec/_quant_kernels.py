"""Compiled kernels of the quantizer (see :mod:`kmcodec.quantize`).

Importing this module imports numba; :mod:`kmcodec.quantize` does so lazily.
Callers have validated everything: points are (n, C) arrays of any real
dtype, centres (k, C) float64 with k >= 1, weights (n,) float64.  Every
loop runs in a fixed order and without fastmath, so results are the same
on every machine and with any thread count.

Nearest-centre search (:func:`_search`) has two walks, both exact:

- From a guess g (the point's label in the last iteration or on the
  coarser level): the centres are visited in order of their distance from
  c_g, which a table lists per centre (its T nearest); by the triangle
  inequality no centre farther than |p - c_g| + r from c_g can come within
  r of p, so the walk stops there.  A good guess visits a handful of
  centres; the rare point whose bound reaches past the T listed is
  searched again by the second walk.
- Without a guess, or when k is too large for the table: the centres are
  sorted by their projection on one axis (their principal axis); for a
  unit axis a, |a.p - a.c| <= |p - c|, so the walk goes outwards from the
  point's own projection and stops on each side once the projected gap
  alone is too large.

Both find the best and the second-best centre; ties go to the lowest index.
"""

from __future__ import annotations

import numpy as np
from numba import njit

#: Slack on the projection bound: a centre is skipped only when its gap
#: squared exceeds the best distance by more than rounding could explain,
#: so equal distances are always compared (ties go to the lowest index).
_SLACK = 1e-9


@njit(cache=True, nogil=True, inline="always")
def _dist2(points, i, centres, j):  # pragma: no cover - compiled
    d = 0.0
    for c in range(points.shape[1]):
        diff = points[i, c] - centres[j, c]
        d += diff * diff
    return d


@njit(cache=True, nogil=True, inline="always")
def _rank(d, j, best_j, best, runner):  # pragma: no cover - compiled
    """(best index, best, second best) after centre j at squared distance d; ties to the lowest index."""
    if d < best or (d == best and j < best_j):
        return j, d, best
    if d < runner:
        return best_j, best, d
    return best_j, best, runner


@njit(cache=True, nogil=True)
def _search(points, i, centres, order, proj, axis, table, table_dist, guess):  # pragma: no cover - compiled
    """(best index, best squared distance, second-best squared distance) for points[i]."""
    k = centres.shape[0]
    best = np.inf
    best_j = -1
    runner = np.inf
    if guess >= 0 and table.shape[0] > 0:
        reach = np.sqrt(_dist2(points, i, centres, guess))
        width = table.shape[1]
        for t in range(width):
            if table_dist[guess, t] > (np.sqrt(runner) + reach) * (1.0 + _SLACK) + _SLACK:
                return best_j, best, runner
            j = table[guess, t]
            best_j, best, runner = _rank(_dist2(points, i, centres, j), j, best_j, best, runner)
        if width == k:
            return best_j, best, runner
        # The table's T nearest ran out before the bound: start again along the axis.
        best = np.inf
        best_j = -1
        runner = np.inf
    p = 0.0
    for c in range(points.shape[1]):
        p += axis[c] * points[i, c]
    lo = 0
    hi = k
    while lo < hi:
        mid = (lo + hi) >> 1
        if proj[mid] < p:
            lo = mid + 1
        else:
            hi = mid
    left = lo - 1
    right = lo
    while True:
        gap_left = p - proj[left] if left >= 0 else np.inf
        gap_right = proj[right] - p if right < k else np.inf
        if gap_left <= gap_right:
            if gap_left * gap_left > runner * (1.0 + _SLACK) + _SLACK:
                break
            j = order[left]
            left -= 1
        else:
            if gap_right * gap_right > runner * (1.0 + _SLACK) + _SLACK:
                break
            j = order[right]
            right += 1
        best_j, best, runner = _rank(_dist2(points, i, centres, j), j, best_j, best, runner)
    return best_j, best, runner


@njit(cache=True, nogil=True)
def nearest(
    points, centres, order, proj, axis, table, table_dist, labels, dist, start, stop
):  # pragma: no cover - compiled
    """labels[i], dist[i] = nearest centre of points[i] and its squared distance, for start <= i < stop.

    labels[i] holds a guess on entry (-1 for none).
    """
    for i in range(start, stop):
        j, d, _ = _search(points, i, centres, order, proj, axis, table, table_dist, labels[i])
        labels[i] = j
        dist[i] = d


@njit(cache=True, nogil=True)
def accumulate(points, weights, labels, sums, mass):  # pragma: no cover - compiled
    """sums[j] += w * point and mass[j] += w over the points labelled j, in point order."""
    channels = points.shape[1]
    for i in range(points.shape[0]):
        j = labels[i]
        w = weights[i]
        mass[j] += w
        for c in range(channels):
            sums[j, c] += w * points[i, c]


@njit(cache=True, nogil=True)
def weighted_sum(values, weights):  # pragma: no cover - compiled
    """sum(values * weights) in float64, in index order."""
    total = 0.0
    for i in range(values.shape[0]):
        total += values[i] * weights[i]
    return total


@njit(cache=True, nogil=True)
def plusplus(points, weights, first, draws, centres):  # pragma: no cover - compiled
    """Greedy k-means++ seeding into *centres* (k, C) float64.

    *first* is the index of the first centre; draws[i - 1, t] in [0, 1) picks
    candidate t of centre i with probability proportional to weight x squared
    distance to the nearest centre so far; of each step's candidates the one
    that lowers the potential most is kept (the first of equals).

    The points are copied a channel at a time into float64 rows, so each
    candidate's pass over them is branch-free and vectorises (3-4x faster
    than a point at a time).
    """
    n, channels = points.shape
    k = centres.shape[0]
    trials = draws.shape[1]
    coord = np.empty((channels, n))
    for i in range(n):
        for c in range(channels):
            coord[c, i] = points[i, c]
    weight = np.empty(n)
    for i in range(n):
        weight[i] = weights[i]
    closest = np.empty(n)
    trial = np.empty(n)
    cum = np.empty(n)
    chosen = np.empty(trials, np.int64)
    _dist2_from(coord, first, closest)
    for c in range(channels):
        centres[0, c] = coord[c, first]
    for step in range(1, k):
        total = 0.0
        for i in range(n):
            total += weight[i] * closest[i]
            cum[i] = total
        if total <= 0.0:
            # Every point coincides with a centre: the rest duplicate the first.
            for rest in range(step, k):
                for c in range(channels):
                    centres[rest, c] = centres[0, c]
            return
        for t in range(trials):
            chosen[t] = min(np.searchsorted(cum, draws[step - 1, t] * total), n - 1)
        best_potential = np.inf
        best = 0
        for t in range(trials):
            _dist2_from(coord, chosen[t], trial)
            potential = 0.0
            for i in range(n):
                potential += weight[i] * min(trial[i], closest[i])
            if potential < best_potential:
                best_potential = potential
                best = chosen[t]
        _dist2_from(coord, best, trial)
        for i in range(n):
            closest[i] = min(trial[i], closest[i])
        for c in range(channels):
            centres[step, c] = coord[c, best]


@njit(cache=True, nogil=True, inline="always")
def _dist2_from(coord, j, out):  # pragma: no cover - compiled
    """out[i] = squared distance of point i to point j; *coord* is (C, n), a channel per row."""
    out[:] = 0.0
    for c in range(coord.shape[0]):
        x = coord[c, j]
        for i in range(coord.shape[1]):
            diff = coord[c, i] - x
            out[i] += diff * diff


@njit(cache=True, nogil=True)
def centre_table(centres, table, table_dist, start, stop):  # pragma: no cover - compiled
    """The search table's rows start ..< stop: for each centre j, the T = table.shape[1] centres nearest to it.

    table[j] lists them nearest first, equal distances in index order (the
    first T of a stable sort; j itself or an equal centre comes first),
    table_dist[j] their distances (not squared).  Each row keeps its T
    nearest so far in order as it scans the centres, so it costs about k
    comparisons and a few dozen insertions, not a sort of k.
    """
    k = centres.shape[0]
    width = table.shape[1]
    kept = np.empty(width)
    for j in range(start, stop):
        n = 0
        for i in range(k):
            d = _dist2(centres, j, centres, i)
            if n == width and d >= kept[n - 1]:
                continue  # not among the T nearest (an equal one with a lower index is kept)
            t = n if n < width else width - 1
            while t > 0 and kept[t - 1] > d:
                kept[t] = kept[t - 1]
                table[j, t] = table[j, t - 1]
                t -= 1
            kept[t] = d
            table[j, t] = i
            if n < width:
                n += 1
        for t in range(width):
            table_dist[j, t] = np.sqrt(kept[t])


@njit(cache=True, nogil=True)
def assign_bounded(
    points, centres, order, proj, axis, table, table_dist, half_gap, shift, labels, upper, lower, start, stop
):  # pragma: no cover - compiled
    """One Lloyd assignment with Hamerly's bounds, for start <= i < stop; returns labels changed.

    upper[i] bounds the distance (not squared) from point i to its centre
    labels[i] from above, lower[i] the distance to every other centre from
    below; both were true before the centres moved by shift[j].
    half_gap[j] is half the distance from centre j to its nearest other
    centre: a point strictly within it of its centre is nearest to it.  A
    point whose bounds cannot decide (ties included, so that they go to the
    lowest index as in plain Lloyd iterations) is searched from its label,
    and its bounds become exact.  On the first call pass upper = inf and
    lower = 0, with labels a guess or -1.
    """
    k = centres.shape[0]
    # The largest shift, and the largest among the other centres for its holder.
    top = 0
    for j in range(k):
        if shift[j] > shift[top]:
            top = j
    second = 0.0
    for j in range(k):
        if j != top and shift[j] > second:
            second = shift[j]
    changed = 0
    for i in range(start, stop):
        a = labels[i]
        if a >= 0 and upper[i] < np.inf:
            upper[i] += shift[a]
            lower[i] -= second if a == top else shift[top]
            bound = lower[i] if lower[i] > half_gap[a] else half_gap[a]
            if upper[i] < bound:
                continue
            upper[i] = np.sqrt(_dist2(points, i, centres, a))
            if upper[i] < bound:
                continue
        j, best, runner = _search(points, i, centres, order, proj, axis, table, table_dist, a)
        if j != a:
            changed += 1
            labels[i] = j
        upper[i] = np.sqrt(best)
        lower[i] = np.sqrt(runner)
    return changed


# ---------------------------------------------------------------------------
# Distinct colours of up to 24 bits: a bitmap with a rank per 64-bit word
# ---------------------------------------------------------------------------
@njit(cache=True, nogil=True, inline="always")
def _key(pixels, i, has_alpha, bits):  # pragma: no cover - compiled
    """The key of pixel i: *bits* a channel, first channel most significant; fully transparent pixels key 0."""
    channels = pixels.shape[1]
    if has_alpha and pixels[i, channels - 1] == 0:
        return 0
    key = 0
    for c in range(channels):
        key = (key << bits) | pixels[i, c]
    return key


@njit(cache=True, nogil=True, inline="always")
def _popcount(x):  # pragma: no cover - compiled
    x = x - ((x >> np.uint64(1)) & np.uint64(0x5555555555555555))
    x = (x & np.uint64(0x3333333333333333)) + ((x >> np.uint64(2)) & np.uint64(0x3333333333333333))
    x = (x + (x >> np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
    return np.int64((x * np.uint64(0x0101010101010101)) >> np.uint64(56))


@njit(cache=True, nogil=True)
def mark(pixels, has_alpha, bits, bitmap):  # pragma: no cover - compiled
    """Set the bit of each pixel's key in *bitmap* (uint64 words)."""
    for i in range(pixels.shape[0]):
        key = _key(pixels, i, has_alpha, bits)
        bitmap[key >> 6] |= np.uint64(1) << np.uint64(key & 63)


@njit(cache=True, nogil=True)
def rank(bitmap, ranks):  # pragma: no cover - compiled
    """ranks[w] = set bits in words before w; returns the total."""
    total = 0
    for w in range(bitmap.shape[0]):
        ranks[w] = total
        total += _popcount(bitmap[w])
    return total


@njit(cache=True, nogil=True, inline="always")
def _index(bitmap, ranks, key):  # pragma: no cover - compiled
    w = key >> 6
    below = bitmap[w] & ((np.uint64(1) << np.uint64(key & 63)) - np.uint64(1))
    return ranks[w] + _popcount(below)


@njit(cache=True, nogil=True)
def count(pixels, has_alpha, bits, bitmap, ranks, counts):  # pragma: no cover - compiled
    """counts[index of the key] += 1 for each pixel (the index is the key's rank among set bits)."""
    for i in range(pixels.shape[0]):
        counts[_index(bitmap, ranks, _key(pixels, i, has_alpha, bits))] += 1


@njit(cache=True, nogil=True)
def tally(pixels, has_alpha, bits, tallies, wraps, wrapped):  # pragma: no cover - compiled
    """tallies[key] += 1 per pixel, modulo 2**16; each wrap to 0 appends the key to *wraps*.

    *wrapped* is the number of wraps so far; returns the new number.  A
    key's count is its tally + 65536 x its wraps; *wraps* needs room for
    (pixels tallied in all) // 65536 entries.
    """
    for i in range(pixels.shape[0]):
        key = _key(pixels, i, has_alpha, bits)
        tallies[key] += np.uint16(1)
        if tallies[key] == 0:
            wraps[wrapped] = key
            wrapped += 1
    return wrapped


@njit(cache=True, nogil=True)
def mark_tallied(tallies, wraps, bitmap):  # pragma: no cover - compiled
    """Set the bit of every key with a nonzero tally or a wrap."""
    for key in range(tallies.shape[0]):
        if tallies[key]:
            bitmap[key >> 6] |= np.uint64(1) << np.uint64(key & 63)
    for j in range(wraps.shape[0]):
        key = wraps[j]
        bitmap[key >> 6] |= np.uint64(1) << np.uint64(key & 63)


@njit(cache=True, nogil=True)
def gather_tallies(tallies, wraps, keys, bitmap, ranks, counts):  # pragma: no cover - compiled
    """counts[i] = the count of keys[i]: its tally plus 65536 per wrap."""
    for i in range(keys.shape[0]):
        counts[i] = tallies[keys[i]]
    for j in range(wraps.shape[0]):
        counts[_index(bitmap, ranks, wraps[j])] += 65536


@njit(cache=True, nogil=True)
def keys_of(bitmap, keys):  # pragma: no cover - compiled
    """The set bits' keys in ascending order."""
    n = 0
    for w in range(bitmap.shape[0]):
        word = bitmap[w]
        b = 0
        while word:
            if word & np.uint64(1):
                keys[n] = (w << 6) | b
                n += 1
            word >>= np.uint64(1)
            b += 1


@njit(cache=True, nogil=True)
def lookup(pixels, has_alpha, bits, bitmap, ranks, mapping, out):  # pragma: no cover - compiled
    """out[i] = mapping[index of pixel i's key]."""
    for i in range(pixels.shape[0]):
        out[i] = mapping[_index(bitmap, ranks, _key(pixels, i, has_alpha, bits))]


@njit(cache=True, nogil=True)
def first_members(inverse, member):  # pragma: no cover - compiled
    """member[j] = the first i with inverse[i] == j (member starts at -1)."""
    for i in range(inverse.shape[0]):
        if member[inverse[i]] < 0:
            member[inverse[i]] = i

/* Floyd-Steinberg ditherer: see dither.h. */
#include "dither.h"

#include <stdlib.h>
#include <string.h>

#if defined(__GNUC__) || defined(__clang__)
#define KMC_INLINE static inline __attribute__((always_inline))
#else
#define KMC_INLINE static inline
#endif

#define FRAC KMC_DITHER_FRAC
#define HALF ((int64_t)1 << (FRAC - 1))
#define TOP ((int64_t)255 << FRAC)

/* v >> s rounded towards minus infinity for any sign (what an arithmetic shift does).
 * C leaves >> of a negative value to the implementation; ~v of a negative v is
 * -v - 1 >= 0, so this only ever shifts non-negative values.  gcc and clang
 * compile it to one arithmetic shift. */
KMC_INLINE int64_t shr_floor(int64_t v, unsigned s)
{
    return v < 0 ? ~(~v >> s) : v >> s;
}

/* *p += v wrapping around on overflow like numba's int64 (the carry comes from the caller, unchecked);
 * the conversion back from uint64_t is modular on every compiler we build with. */
KMC_INLINE void add_wrap(int64_t *p, int64_t v)
{
    *p = (int64_t)((uint64_t)*p + (uint64_t)v);
}

KMC_INLINE int64_t clamp64(int64_t v, int64_t lo, int64_t hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

void kmc_dither_nearest_other(const uint8_t *palette, size_t k, size_t channels, const int64_t *order,
                              int64_t *out)
{
    for (size_t pos = 0; pos < k; pos++) {
        const uint8_t *pi = palette + (size_t)order[pos] * channels;
        int64_t key = pi[0];
        int64_t best = -1;
        for (int direction = 1; direction >= -1; direction -= 2) {
            for (ptrdiff_t other = (ptrdiff_t)pos + direction; other >= 0 && (size_t)other < k; other += direction) {
                const uint8_t *pj = palette + (size_t)order[other] * channels;
                int64_t d0 = (int64_t)pj[0] - key;
                if (best >= 0 && d0 * d0 > best)
                    break;
                int64_t d = 0;
                for (size_t c = 0; c < channels; c++) {
                    int64_t diff = (int64_t)pi[c] - (int64_t)pj[c];
                    d += diff * diff;
                }
                if (d > 0 && (best < 0 || d < best))
                    best = d;
            }
        }
        out[order[pos]] = best;
    }
}

/* The palette laid out for the nearest-entry search: entries in `order`, as int32. */
typedef struct {
    size_t k;
    int32_t *sorted;   /* k x channels: entry order[pos] at row pos */
    int32_t *index;    /* order[pos] */
    size_t start[256]; /* first pos whose first channel is >= t */
} Search;

/* Index of the palette entry nearest target (squared distance), ties to the lowest index.
 *
 * Walks out from target's place in the first-channel order, alternately up
 * and down, and stops on a side once the first channel alone is farther than
 * the best distance so far.  Entries at an equal distance are still visited,
 * so every entry at the smallest distance is seen and the lowest index wins.
 * target[0] is 0..255.
 */
KMC_INLINE uint32_t nearest(const Search *s, const int64_t *target, size_t channels)
{
    const ptrdiff_t k = (ptrdiff_t)s->k;
    const int64_t t0 = target[0];
    ptrdiff_t up = (ptrdiff_t)s->start[t0], down = up - 1;
    int64_t best_d = (int64_t)1 << 62;
    uint32_t best = UINT32_MAX;
    while (up < k || down >= 0) {
        if (up < k) {
            const int32_t *p = s->sorted + (size_t)up * channels;
            int64_t d0 = p[0] - t0;
            if (d0 * d0 > best_d) {
                up = k;
            } else {
                int64_t d = d0 * d0;
                for (size_t c = 1; c < channels; c++) {
                    int64_t diff = target[c] - p[c];
                    d += diff * diff;
                }
                uint32_t i = (uint32_t)s->index[up];
                if (d < best_d || (d == best_d && i < best)) {
                    best_d = d;
                    best = i;
                }
                up++;
            }
        }
        if (down >= 0) {
            const int32_t *p = s->sorted + (size_t)down * channels;
            int64_t d0 = p[0] - t0;
            if (d0 * d0 > best_d) {
                down = -1;
            } else {
                int64_t d = d0 * d0;
                for (size_t c = 1; c < channels; c++) {
                    int64_t diff = target[c] - p[c];
                    d += diff * diff;
                }
                uint32_t i = (uint32_t)s->index[down];
                if (d < best_d || (d == best_d && i < best)) {
                    best_d = d;
                    best = i;
                }
                down--;
            }
        }
    }
    return best;
}

KMC_INLINE void put_label(void *labels, int label_bytes, size_t at, uint32_t i)
{
    if (label_bytes == 1)
        ((uint8_t *)labels)[at] = (uint8_t)i;
    else
        ((uint16_t *)labels)[at] = (uint16_t)i;
}

/* The scan of kmc_dither(): here/below are the error rows ((w + 2) x channels, here holding the carry),
 * target/exact scratch of channels values.  Returns the row of errors after the block (here or below).
 * Inlined once per small channel count, so the channel loops unroll. */
KMC_INLINE int64_t *scan(const Search *s, const uint8_t *image, size_t h, size_t w, size_t channels,
                         const uint8_t *palette, int64_t strength, int64_t limit, int alpha_channel, void *labels,
                         int label_bytes, int64_t *here, int64_t *below, int64_t *target, int64_t *exact,
                         int64_t first_row, uint64_t *sse)
{
    /* The entry a transparent pixel takes and its squared error: always the same. */
    uint32_t clear = 0;
    uint64_t clear_sse = 0;
    if (alpha_channel >= 0) {
        for (size_t c = 0; c < channels; c++)
            target[c] = 0;
        clear = nearest(s, target, channels);
        for (size_t c = 0; c < channels; c++) {
            uint64_t v = palette[(size_t)clear * channels + c];
            clear_sse += v * v;
        }
    }
    uint64_t total = 0;
    const size_t row_len = (w + 2) * channels;
    for (size_t y = 0; y < h; y++) {
        const int forward = (((uint64_t)first_row + y) & 1) == 0; /* (first_row + y) % 2 == 0, any sign */
        const ptrdiff_t step = forward ? 1 : -1;
        for (size_t n = 0; n < w; n++) {
            const size_t x = forward ? n : w - 1 - n;
            const size_t e = x + 1; /* column in the error rows */
            const size_t at = y * w + x;
            const uint8_t *px = image + at * channels;
            if (alpha_channel >= 0 && px[alpha_channel] == 0) {
                put_label(labels, label_bytes, at, clear);
                total += clear_sse;
                continue;
            }
            for (size_t c = 0; c < channels; c++) {
                int64_t carried = clamp64(here[e * channels + c], -limit, limit);
                int64_t wanted = clamp64(((int64_t)px[c] << FRAC) + carried, 0, TOP);
                exact[c] = wanted;
                target[c] = (wanted + HALF) >> FRAC; /* wanted >= 0 */
            }
            uint32_t i = nearest(s, target, channels);
            put_label(labels, label_bytes, at, i);
            const uint8_t *entry = palette + (size_t)i * channels;
            int64_t *next = here + (size_t)((ptrdiff_t)e + step) * channels;
            int64_t *back = below + (size_t)((ptrdiff_t)e - step) * channels;
            int64_t *under = below + e * channels;
            int64_t *ahead = below + (size_t)((ptrdiff_t)e + step) * channels;
            for (size_t c = 0; c < channels; c++) {
                int64_t diff = (int64_t)px[c] - (int64_t)entry[c];
                total += (uint64_t)(diff * diff);
                int64_t err = shr_floor((exact[c] - ((int64_t)entry[c] << FRAC)) * strength, 8);
                add_wrap(next + c, shr_floor(err * 7, 4));
                add_wrap(back + c, shr_floor(err * 3, 4));
                add_wrap(under + c, shr_floor(err * 5, 4));
                add_wrap(ahead + c, shr_floor(err, 4));
            }
        }
        int64_t *t = here;
        here = below;
        below = t;
        memset(below, 0, row_len * sizeof *below);
    }
    *sse = total;
    return here;
}

int kmc_dither(const uint8_t *image, size_t h, size_t w, size_t channels, const uint8_t *palette, size_t k,
               const int64_t *order, int64_t strength, int64_t limit, int alpha_channel, void *labels,
               int label_bytes, int64_t *carry, int64_t first_row, int64_t *sse)
{
    const size_t row_len = (w + 2) * channels;
    Search s;
    s.k = k;
    s.sorted = malloc(k * channels * sizeof *s.sorted);
    s.index = malloc(k * sizeof *s.index);
    int64_t *rows = malloc(2 * row_len * sizeof *rows + 2 * channels * sizeof *rows);
    if (s.sorted == NULL || s.index == NULL || rows == NULL) {
        free(s.sorted);
        free(s.index);
        free(rows);
        return -1;
    }
    for (size_t pos = 0; pos < k; pos++) {
        const uint8_t *entry = palette + (size_t)order[pos] * channels;
        for (size_t c = 0; c < channels; c++)
            s.sorted[pos * channels + c] = entry[c];
        s.index[pos] = (int32_t)order[pos];
    }
    /* start[t]: the first place in the order whose first channel is >= t (a binary search, tabulated). */
    size_t pos = 0;
    for (int t = 0; t < 256; t++) {
        while (pos < k && s.sorted[pos * channels] < t)
            pos++;
        s.start[t] = pos;
    }
    int64_t *here = rows, *below = rows + row_len, *target = rows + 2 * row_len, *exact = target + channels;
    memcpy(here, carry, row_len * sizeof *here);
    memset(below, 0, row_len * sizeof *below);
    uint64_t total = 0;
#define SCAN(C)                                                                                                      \
    scan(&s, image, h, w, C, palette, strength, limit, alpha_channel, labels, label_bytes, here, below, target,      \
         exact, first_row, &total)
    int64_t *after;
    switch (channels) {
    case 1: after = SCAN(1); break;
    case 2: after = SCAN(2); break;
    case 3: after = SCAN(3); break;
    case 4: after = SCAN(4); break;
    default: after = SCAN(channels); break;
    }
#undef SCAN
    memcpy(carry, after, row_len * sizeof *carry);
    *sse = (int64_t)total;
    free(s.sorted);
    free(s.index);
    free(rows);
    return 0;
}

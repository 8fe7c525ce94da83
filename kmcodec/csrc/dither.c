/* Floyd-Steinberg ditherer: see dither.h. */
#include "dither.h"

#include <stdlib.h>
#include <string.h>

#include "kmc_compiler.h"

#define FRAC KMC_DITHER_FRAC
#define HALF ((int64_t)1 << (FRAC - 1))
#define TOP ((int64_t)255 << FRAC)

/* v >> s rounded towards minus infinity for any sign (what an arithmetic shift does).
 * C leaves >> of a negative value to the implementation; ~v of a negative v is
 * -v - 1 >= 0, so this only ever shifts non-negative values.  gcc and clang
 * compile it to one arithmetic shift. */
KMC_ALWAYS_INLINE int64_t shr_floor(int64_t v, unsigned s)
{
    return v < 0 ? ~(~v >> s) : v >> s;
}

/* a + b wrapping around on overflow like numba's int64 (the carry comes from the caller, unchecked);
 * the conversion back from uint64_t is modular on every compiler we build with. */
KMC_ALWAYS_INLINE int64_t wrap_sum(int64_t a, int64_t b)
{
    return (int64_t)((uint64_t)a + (uint64_t)b);
}

KMC_ALWAYS_INLINE int64_t clamp64(int64_t v, int64_t lo, int64_t hi)
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

/* The palette laid out for the nearest-entry search: entries sorted by their key, the sum of their channels. */
typedef struct {
    size_t k;
    int32_t *sorted; /* k x (1 + channels): key, then the channels, by key (ties by index) */
    int32_t *index;  /* the palette index of each sorted entry */
    size_t *start;   /* 255 x channels + 1 values: start[t] is the first place whose key is >= t */
} Search;

/* Squared distance from target to entry. */
KMC_ALWAYS_INLINE int64_t distance(const int64_t *target, const int32_t *entry, size_t channels)
{
    int64_t d = 0;
    KMC_UNROLL(4)
    for (size_t c = 0; c < channels; c++) {
        int64_t diff = target[c] - entry[c];
        d += diff * diff;
    }
    return d;
}

/* Place (in s) of the palette entry nearest target (squared distance), ties to the lowest index.
 *
 * Starts from the entry at place guess (the previous pixel's: usually near) and walks out
 * from target's place in the key order, alternately up and down, stopping on a
 * side once the keys alone say every entry further on is farther than the best
 * so far: (key - target's key)**2 <= channels x distance (Cauchy-Schwarz), so
 * an entry with (key difference)**2 > channels x best is farther than best.
 * Entries at an equal distance are still visited, so the answer is the lowest
 * index of those at the smallest distance, whatever the guess and the order of
 * the walk: the entry numba's search (over the first channel) finds.
 * target holds channels values 0..255; guess is a place 0..k-1.
 */
KMC_ALWAYS_INLINE size_t nearest(const Search *s, const int64_t *target, size_t channels, size_t guess)
{
    const ptrdiff_t k = (ptrdiff_t)s->k;
    const size_t stride = 1 + channels;
    int64_t key = 0;
    KMC_UNROLL(4)
    for (size_t c = 0; c < channels; c++)
        key += target[c];
    int64_t best_d = distance(target, s->sorted + guess * stride + 1, channels);
    int64_t bound = best_d * (int64_t)channels;
    size_t best_pos = guess;
    int32_t best = s->index[guess];
    ptrdiff_t up = (ptrdiff_t)s->start[key], down = up - 1;
    while (up < k || down >= 0) {
        if (up < k) {
            const int32_t *p = s->sorted + (size_t)up * stride;
            int64_t dk = p[0] - key;
            if (dk * dk > bound) {
                up = k;
            } else {
                int64_t d = distance(target, p + 1, channels);
                int32_t i = s->index[up];
                if (d < best_d || (d == best_d && i < best)) {
                    best_d = d;
                    bound = d * (int64_t)channels;
                    best = i;
                    best_pos = (size_t)up;
                }
                up++;
            }
        }
        if (down >= 0) {
            const int32_t *p = s->sorted + (size_t)down * stride;
            int64_t dk = p[0] - key;
            if (dk * dk > bound) {
                down = -1;
            } else {
                int64_t d = distance(target, p + 1, channels);
                int32_t i = s->index[down];
                if (d < best_d || (d == best_d && i < best)) {
                    best_d = d;
                    bound = d * (int64_t)channels;
                    best = i;
                    best_pos = (size_t)down;
                }
                down--;
            }
        }
    }
    return best_pos;
}

/* Lay out palette (k x channels) for nearest(); returns 0, or -1 without memory (nothing left allocated). */
static int search_init(Search *s, const uint8_t *palette, size_t k, size_t channels)
{
    const size_t keys = 255 * channels + 1, stride = 1 + channels;
    s->k = k;
    s->sorted = malloc(k * stride * sizeof *s->sorted);
    s->index = malloc(k * sizeof *s->index);
    s->start = calloc(keys + 1, sizeof *s->start);
    if (s->sorted == NULL || s->index == NULL || s->start == NULL) {
        free(s->sorted);
        free(s->index);
        free(s->start);
        return -1;
    }
    /* A counting sort by key: start[key + 1] counts, then start[key] is where the key's entries begin. */
    for (size_t i = 0; i < k; i++) {
        size_t key = 0;
        for (size_t c = 0; c < channels; c++)
            key += palette[i * channels + c];
        s->start[key + 1]++;
    }
    for (size_t t = 1; t <= keys; t++)
        s->start[t] += s->start[t - 1];
    for (size_t i = 0; i < k; i++) { /* start[key] moves one on per entry placed ... */
        size_t key = 0;
        for (size_t c = 0; c < channels; c++)
            key += palette[i * channels + c];
        size_t pos = s->start[key]++;
        s->index[pos] = (int32_t)i;
        s->sorted[pos * stride] = (int32_t)key;
        for (size_t c = 0; c < channels; c++)
            s->sorted[pos * stride + 1 + c] = palette[i * channels + c];
    }
    for (size_t t = keys; t > 0; t--) /* ... to where the next key begins: shift back by one */
        s->start[t] = s->start[t - 1];
    s->start[0] = 0;
    return 0;
}

static void search_free(Search *s)
{
    free(s->sorted);
    free(s->index);
    free(s->start);
}

KMC_ALWAYS_INLINE void put_label(void *labels, int label_bytes, size_t at, uint32_t i)
{
    if (label_bytes == 1)
        ((uint8_t *)labels)[at] = (uint8_t)i;
    else
        ((uint16_t *)labels)[at] = (uint16_t)i;
}

/* Channels the scan keeps in local arrays (registers, once the channel loops unroll); more use scratch. */
#define SMALL 4

/* The scan of kmc_dither(): here holds the error arriving at each row (w + 2 values per channel, the carry
 * at first), below receives the error for the row after it; scratch holds 5 x channels values (used only
 * for more than SMALL channels).  Returns the row of errors after the block (here or below).  Inlined
 * once per small channel count, so the channel loops unroll.
 *
 * numba's kernel adds each pixel's error into the rows in memory: 7/16 to here[next], 3/16, 5/16 and
 * 1/16 to below[back], below[under], below[ahead].  This keeps in registers what the next pixels
 * still add to: `pending` is the 7/16 the next pixel takes on top of here (nothing else reads it),
 * `back_sum` and `under_sum` the partial sums of below at the pixel's back and under columns; a column
 * of below is stored once, when its last contribution (the back of the pixel after it) is in.  Every
 * column of below gets one store per row (the end columns included), so below needs no clearing, and
 * the sums, modulo 2**64 like numba's, do not depend on the order of the additions. */
KMC_ALWAYS_INLINE int64_t *scan(const Search *s, const uint8_t *image, size_t h, size_t w, size_t channels,
                         const uint8_t *palette, int64_t strength, int64_t limit, int alpha_channel,
                         const uint8_t *weights, void *labels, int label_bytes, int64_t *here, int64_t *below,
                         int64_t *scratch, int64_t first_row, uint64_t *sse)
{
    int64_t local[5 * SMALL];
    int64_t *buf = channels <= SMALL ? local : scratch;
    int64_t *target = buf, *exact = buf + channels, *pending = buf + 2 * channels;
    int64_t *back_sum = buf + 3 * channels, *under_sum = buf + 4 * channels;
    /* The entry a transparent pixel takes and its squared error: always the same. */
    uint32_t clear = 0;
    uint64_t clear_sse = 0;
    if (alpha_channel >= 0) {
        for (size_t c = 0; c < channels; c++)
            target[c] = 0;
        clear = (uint32_t)s->index[nearest(s, target, channels, 0)];
        for (size_t c = 0; c < channels; c++) {
            uint64_t v = palette[(size_t)clear * channels + c];
            clear_sse += v * v;
        }
    }
    size_t guess = 0; /* the place in s of the last entry taken */
    uint64_t total = 0;
    for (size_t y = 0; y < h; y++) {
        const int forward = (((uint64_t)first_row + y) & 1) == 0; /* (first_row + y) % 2 == 0, any sign */
        const ptrdiff_t step = forward ? 1 : -1;
        KMC_UNROLL(4)
        for (size_t c = 0; c < channels; c++)
            pending[c] = back_sum[c] = under_sum[c] = 0;
        size_t e = 0; /* column in the error rows of the pixel (x + 1) */
        for (size_t n = 0; n < w; n++) {
            const size_t x = forward ? n : w - 1 - n;
            e = x + 1;
            const size_t at = y * w + x;
            const uint8_t *px = image + at * channels;
            int64_t *back = below + (size_t)((ptrdiff_t)e - step) * channels;
            if (alpha_channel >= 0 && px[alpha_channel] == 0) {
                put_label(labels, label_bytes, at, clear);
                total += clear_sse;
                /* neither takes nor gives error: the columns move on with nothing added */
                KMC_UNROLL(4)
                for (size_t c = 0; c < channels; c++) {
                    back[c] = back_sum[c];
                    back_sum[c] = under_sum[c];
                    under_sum[c] = pending[c] = 0;
                }
                continue;
            }
            const int64_t *arriving = here + e * channels;
            /* the share of the arriving error this pixel takes, in 256ths (weight 255 counts as 256: all of it) */
            const int64_t take = weights ? (int64_t)weights[at] + (weights[at] >> 7) : 256;
            KMC_UNROLL(4)
            for (size_t c = 0; c < channels; c++) {
                int64_t carried = clamp64(wrap_sum(arriving[c], pending[c]), -limit, limit);
                if (take < 256) /* |carried| <= 2**62, so the shifted value times 255 cannot overflow */
                    carried = shr_floor(carried, 8) * take;
                int64_t wanted = clamp64(((int64_t)px[c] << FRAC) + carried, 0, TOP);
                exact[c] = wanted;
                target[c] = (wanted + HALF) >> FRAC; /* wanted >= 0 */
            }
            guess = nearest(s, target, channels, guess);
            uint32_t i = (uint32_t)s->index[guess];
            put_label(labels, label_bytes, at, i);
            const uint8_t *entry = palette + (size_t)i * channels;
            KMC_UNROLL(4)
            for (size_t c = 0; c < channels; c++) {
                int64_t diff = (int64_t)px[c] - (int64_t)entry[c];
                total += (uint64_t)(diff * diff);
                int64_t err = shr_floor((exact[c] - ((int64_t)entry[c] << FRAC)) * strength, 8);
                pending[c] = shr_floor(err * 7, 4);
                back[c] = wrap_sum(back_sum[c], shr_floor(err * 3, 4));
                back_sum[c] = wrap_sum(under_sum[c], shr_floor(err * 5, 4));
                under_sum[c] = shr_floor(err, 4);
            }
        }
        /* the last pixel's under and ahead columns (w >= 1) */
        int64_t *under = below + e * channels, *ahead = below + (size_t)((ptrdiff_t)e + step) * channels;
        KMC_UNROLL(4)
        for (size_t c = 0; c < channels; c++) {
            under[c] = back_sum[c];
            ahead[c] = under_sum[c];
        }
        int64_t *t = here;
        here = below;
        below = t;
    }
    *sse = total;
    return here;
}

int kmc_dither(const uint8_t *image, size_t h, size_t w, size_t channels, const uint8_t *palette, size_t k,
               int64_t strength, int64_t limit, int alpha_channel, void *labels, int label_bytes, int64_t *carry,
               int64_t first_row, int64_t *sse)
{
    return kmc_dither_weighted(image, h, w, channels, palette, k, strength, limit, alpha_channel, NULL, labels,
                               label_bytes, carry, first_row, sse);
}

int kmc_dither_weighted(const uint8_t *image, size_t h, size_t w, size_t channels, const uint8_t *palette,
                        size_t k, int64_t strength, int64_t limit, int alpha_channel, const uint8_t *weights,
                        void *labels, int label_bytes, int64_t *carry, int64_t first_row, int64_t *sse)
{
    const size_t row_len = (w + 2) * channels;
    Search s;
    int64_t *rows = malloc((2 * row_len + 5 * channels) * sizeof *rows);
    if (rows == NULL || search_init(&s, palette, k, channels) < 0) {
        free(rows);
        return -1;
    }
    int64_t *here = rows, *below = rows + row_len, *scratch = rows + 2 * row_len;
    memcpy(here, carry, row_len * sizeof *here);
    uint64_t total = 0;
    int64_t *after = here; /* no rows: the carry as it came */
    if (w == 0 && h > 0) { /* rows without pixels: each passes on no error, not even at the ends */
        memset(below, 0, row_len * sizeof *below);
        after = below;
    }
#define SCAN(C)                                                                                                      \
    scan(&s, image, h, w, C, palette, strength, limit, alpha_channel, weights, labels, label_bytes, here, below,     \
         scratch, first_row, &total)
    if (w > 0) {
        switch (channels) {
        case 1: after = SCAN(1); break;
        case 2: after = SCAN(2); break;
        case 3: after = SCAN(3); break;
        case 4: after = SCAN(4); break;
        default: after = SCAN(channels); break;
        }
    }
#undef SCAN
    memcpy(carry, after, row_len * sizeof *carry);
    *sse = (int64_t)total;
    search_free(&s);
    free(rows);
    return 0;
}

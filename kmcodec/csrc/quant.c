/* The quantizer's kernels (see quant.h); the point-type-specific ones are in quant_typed.h. */
#include "quant.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Slack on the search bounds: a centre is skipped only when its gap squared
 * exceeds the best distance by more than rounding could explain, so equal
 * distances are always compared (ties go to the lowest index). */
#define SLACK 1e-9

/* A search's state: the best index, the best and the second-best squared distances. */
typedef struct {
    int64_t best_j;
    double best;
    double runner;
} search_state;

/* Rank centre j at squared distance d; ties go to the lowest index. */
static inline void rank_one(search_state *r, double d, int64_t j)
{
    if (d < r->best || (d == r->best && j < r->best_j)) {
        r->runner = r->best;
        r->best = d;
        r->best_j = j;
    } else if (d < r->runner) {
        r->runner = d;
    }
}

/* The axis walk's index on the left, -k <= left < k: a negative one counts from the end.
 *
 * With k = 1 the walk has visited the one centre and the second best is
 * still infinite, so the bound does not stop it: the reference (numba)
 * then read order[-1], the last centre, as the second best.  Kept so that
 * the bounds come out the same. */
static inline int64_t wrap_left(int64_t left, int64_t k)
{
    return left < 0 ? left + k : left;
}

static inline double load_weight(const void *weights, kmc_quant_type wtype, int64_t i)
{
    return wtype == KMC_QUANT_U32 ? (double)((const uint32_t *)weights)[i] : ((const double *)weights)[i];
}

#define KMC_T uint8_t
#define KMC_SUFFIX u8
#include "quant_typed.h"

#define KMC_T float
#define KMC_SUFFIX f32
#include "quant_typed.h"

#define KMC_T double
#define KMC_SUFFIX f64
#include "quant_typed.h"

int kmc_quant_search_valid(const kmc_quant_search *s)
{
    for (int64_t j = 0; j < s->k; j++)
        if (s->order[j] < 0 || s->order[j] >= s->k)
            return 0;
    if (s->width > 0)
        for (int64_t t = 0; t < s->k * s->width; t++)
            if (s->table[t] < 0 || s->table[t] >= s->k)
                return 0;
    return 1;
}

int kmc_quant_nearest(const kmc_quant_points *points, const kmc_quant_search *s, int32_t *labels, double *dist,
                      int64_t start, int64_t stop)
{
    switch (points->type) {
    case KMC_QUANT_U8:
        return nearest_u8(points->data, s, labels, dist, start, stop);
    case KMC_QUANT_F32:
        return nearest_f32(points->data, s, labels, dist, start, stop);
    case KMC_QUANT_F64:
        return nearest_f64(points->data, s, labels, dist, start, stop);
    default:
        return KMC_QUANT_ERANGE;
    }
}

int64_t kmc_quant_assign_bounded(const kmc_quant_points *points, const kmc_quant_search *s, const double *half_gap,
                                 const double *shift, int32_t *labels, double *upper, double *lower, int64_t start,
                                 int64_t stop)
{
    switch (points->type) {
    case KMC_QUANT_U8:
        return assign_bounded_u8(points->data, s, half_gap, shift, labels, upper, lower, start, stop);
    case KMC_QUANT_F32:
        return assign_bounded_f32(points->data, s, half_gap, shift, labels, upper, lower, start, stop);
    case KMC_QUANT_F64:
        return assign_bounded_f64(points->data, s, half_gap, shift, labels, upper, lower, start, stop);
    default:
        return KMC_QUANT_ERANGE;
    }
}

int kmc_quant_accumulate(const kmc_quant_points *points, const void *weights, kmc_quant_type wtype,
                         const int32_t *labels, double *sums, double *mass, int64_t k)
{
    const int64_t n = points->n, channels = points->channels;
    switch (points->type) {
    case KMC_QUANT_U8:
        return accumulate_u8(points->data, n, channels, weights, wtype, labels, sums, mass, k);
    case KMC_QUANT_F32:
        return accumulate_f32(points->data, n, channels, weights, wtype, labels, sums, mass, k);
    case KMC_QUANT_F64:
        return accumulate_f64(points->data, n, channels, weights, wtype, labels, sums, mass, k);
    default:
        return KMC_QUANT_ERANGE;
    }
}

double kmc_quant_weighted_sum(const double *values, const void *weights, kmc_quant_type wtype, int64_t n)
{
    double total = 0.0;
    if (wtype == KMC_QUANT_U32) {
        const uint32_t *w = weights;
        for (int64_t i = 0; i < n; i++)
            total += values[i] * (double)w[i];
    } else {
        const double *w = weights;
        for (int64_t i = 0; i < n; i++)
            total += values[i] * w[i];
    }
    return total;
}

/* out[i] = squared distance of point i to point j; coord (channels, n) holds a channel per row. */
static void dist2_from(const double *coord, int64_t n, int64_t channels, int64_t j, double *out)
{
    for (int64_t i = 0; i < n; i++)
        out[i] = 0.0;
    for (int64_t c = 0; c < channels; c++) {
        const double *row = coord + c * n;
        const double x = row[j];
        for (int64_t i = 0; i < n; i++) {
            double diff = row[i] - x;
            out[i] += diff * diff;
        }
    }
}

/* The first index i with cum[i] >= v, or n (numpy's searchsorted, side 'left'; NaN sorts last). */
static int64_t search_left(const double *cum, int64_t n, double v)
{
    int64_t lo = 0, hi = n;
    while (lo < hi) {
        int64_t mid = lo + ((hi - lo) >> 1);
        double at = cum[mid];
        if (at < v || (isnan(v) && !isnan(at)))
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

int kmc_quant_plusplus(const kmc_quant_points *points, const void *weights, kmc_quant_type wtype, int64_t first,
                       const double *draws, int64_t trials, double *centres, int64_t k)
{
    const int64_t n = points->n, channels = points->channels;
    double *coord = malloc(sizeof(double) * (size_t)(channels * n));
    double *weight = malloc(sizeof(double) * (size_t)n);
    double *closest = malloc(sizeof(double) * (size_t)n);
    double *trial = malloc(sizeof(double) * (size_t)n);
    double *cum = malloc(sizeof(double) * (size_t)n);
    int64_t *chosen = malloc(sizeof(int64_t) * (size_t)(trials > 0 ? trials : 1));
    int status = 0;
    if (coord == NULL || weight == NULL || closest == NULL || trial == NULL || cum == NULL || chosen == NULL) {
        status = KMC_QUANT_ENOMEM;
        goto done;
    }
    switch (points->type) {
    case KMC_QUANT_U8:
        plusplus_coords_u8(points->data, n, channels, coord);
        break;
    case KMC_QUANT_F32:
        plusplus_coords_f32(points->data, n, channels, coord);
        break;
    default:
        plusplus_coords_f64(points->data, n, channels, coord);
        break;
    }
    for (int64_t i = 0; i < n; i++)
        weight[i] = load_weight(weights, wtype, i);
    dist2_from(coord, n, channels, first, closest);
    for (int64_t c = 0; c < channels; c++)
        centres[c] = coord[c * n + first];
    for (int64_t step = 1; step < k; step++) {
        double total = 0.0;
        for (int64_t i = 0; i < n; i++) {
            total += weight[i] * closest[i];
            cum[i] = total;
        }
        if (total <= 0.0) {
            /* Every point coincides with a centre: the rest duplicate the first. */
            for (int64_t rest = step; rest < k; rest++)
                for (int64_t c = 0; c < channels; c++)
                    centres[rest * channels + c] = centres[c];
            goto done;
        }
        const double *step_draws = draws + (step - 1) * trials;
        for (int64_t t = 0; t < trials; t++) {
            int64_t at = search_left(cum, n, step_draws[t] * total);
            chosen[t] = at < n - 1 ? at : n - 1;
        }
        double best_potential = INFINITY;
        int64_t best = 0;
        for (int64_t t = 0; t < trials; t++) {
            dist2_from(coord, n, channels, chosen[t], trial);
            double potential = 0.0;
            for (int64_t i = 0; i < n; i++)
                potential += weight[i] * (closest[i] < trial[i] ? closest[i] : trial[i]);
            if (potential < best_potential) {
                best_potential = potential;
                best = chosen[t];
            }
        }
        dist2_from(coord, n, channels, best, trial);
        for (int64_t i = 0; i < n; i++)
            closest[i] = closest[i] < trial[i] ? closest[i] : trial[i];
        for (int64_t c = 0; c < channels; c++)
            centres[step * channels + c] = coord[c * n + best];
    }
done:
    free(coord);
    free(weight);
    free(closest);
    free(trial);
    free(cum);
    free(chosen);
    return status;
}

int kmc_quant_centre_table(const double *centres, int64_t k, int64_t channels, int32_t *table, double *table_dist,
                           int64_t width, int64_t start, int64_t stop)
{
    double *kept = malloc(sizeof(double) * (size_t)width);
    if (kept == NULL)
        return KMC_QUANT_ENOMEM;
    for (int64_t j = start; j < stop; j++) {
        int32_t *row = table + j * width;
        int64_t n = 0;
        for (int64_t i = 0; i < k; i++) {
            double d = dist2_f64(centres + j * channels, centres + i * channels, channels);
            if (n == width && d >= kept[n - 1])
                continue; /* not among the T nearest (an equal one with a lower index is kept) */
            int64_t t = n < width ? n : width - 1;
            while (t > 0 && kept[t - 1] > d) {
                kept[t] = kept[t - 1];
                row[t] = row[t - 1];
                t--;
            }
            kept[t] = d;
            row[t] = (int32_t)i;
            if (n < width)
                n++;
        }
        for (int64_t t = 0; t < width; t++)
            table_dist[j * width + t] = sqrt(kept[t]);
    }
    free(kept);
    return 0;
}

/* ---- Distinct colours ---- */

static inline uint64_t popcount64(uint64_t x)
{
    x = x - ((x >> 1) & 0x5555555555555555u);
    x = (x & 0x3333333333333333u) + ((x >> 2) & 0x3333333333333333u);
    x = (x + (x >> 4)) & 0x0F0F0F0F0F0F0F0Fu;
    return (x * 0x0101010101010101u) >> 56;
}

/* The key of pixel row p (see quant.h). */
static inline uint64_t pixel_key(const uint8_t *p, int64_t channels, int has_alpha, int bits)
{
    if (has_alpha && p[channels - 1] == 0)
        return 0;
    uint64_t key = 0;
    for (int64_t c = 0; c < channels; c++)
        key = (key << bits) | p[c];
    return key;
}

/* The key's index among the set bits: its word's rank plus the set bits below it in the word. */
static inline int64_t key_index(const uint64_t *bitmap, const int64_t *ranks, uint64_t key)
{
    uint64_t w = key >> 6;
    uint64_t below = bitmap[w] & ((UINT64_C(1) << (key & 63)) - 1);
    return ranks[w] + (int64_t)popcount64(below);
}

int kmc_quant_mark(const uint8_t *pixels, int64_t n, int64_t channels, int has_alpha, int bits, uint64_t *bitmap,
                   int64_t words)
{
    for (int64_t i = 0; i < n; i++) {
        uint64_t key = pixel_key(pixels + i * channels, channels, has_alpha, bits);
        if ((key >> 6) >= (uint64_t)words)
            return KMC_QUANT_ERANGE;
        bitmap[key >> 6] |= UINT64_C(1) << (key & 63);
    }
    return 0;
}

int64_t kmc_quant_rank(const uint64_t *bitmap, int64_t *ranks, int64_t words)
{
    int64_t total = 0;
    for (int64_t w = 0; w < words; w++) {
        ranks[w] = total;
        total += (int64_t)popcount64(bitmap[w]);
    }
    return total;
}

int kmc_quant_count(const uint8_t *pixels, int64_t n, int64_t channels, int has_alpha, int bits,
                    const uint64_t *bitmap, const int64_t *ranks, int64_t words, uint32_t *counts, int64_t ncounts)
{
    for (int64_t i = 0; i < n; i++) {
        uint64_t key = pixel_key(pixels + i * channels, channels, has_alpha, bits);
        if ((key >> 6) >= (uint64_t)words)
            return KMC_QUANT_ERANGE;
        int64_t at = key_index(bitmap, ranks, key);
        if (at < 0 || at >= ncounts)
            return KMC_QUANT_ERANGE;
        counts[at] += 1;
    }
    return 0;
}

int64_t kmc_quant_tally(const uint8_t *pixels, int64_t n, int64_t channels, int has_alpha, int bits,
                        uint16_t *tallies, int64_t ntallies, uint32_t *wraps, int64_t nwraps, int64_t wrapped)
{
    for (int64_t i = 0; i < n; i++) {
        uint64_t key = pixel_key(pixels + i * channels, channels, has_alpha, bits);
        if (key >= (uint64_t)ntallies)
            return KMC_QUANT_ERANGE;
        tallies[key] = (uint16_t)(tallies[key] + 1);
        if (tallies[key] == 0) {
            if (wrapped < 0 || wrapped >= nwraps)
                return KMC_QUANT_ERANGE;
            wraps[wrapped++] = (uint32_t)key;
        }
    }
    return wrapped;
}

int kmc_quant_mark_tallied(const uint16_t *tallies, int64_t ntallies, const uint32_t *wraps, int64_t nwraps,
                           uint64_t *bitmap, int64_t words)
{
    if (ntallies > 64 * words)
        return KMC_QUANT_ERANGE;
    for (int64_t key = 0; key < ntallies; key++)
        if (tallies[key])
            bitmap[key >> 6] |= UINT64_C(1) << (key & 63);
    for (int64_t j = 0; j < nwraps; j++) {
        uint64_t key = wraps[j];
        if ((key >> 6) >= (uint64_t)words)
            return KMC_QUANT_ERANGE;
        bitmap[key >> 6] |= UINT64_C(1) << (key & 63);
    }
    return 0;
}

int kmc_quant_gather_tallies(const uint16_t *tallies, int64_t ntallies, const uint32_t *wraps, int64_t nwraps,
                             const uint32_t *keys, int64_t nkeys, const uint64_t *bitmap, const int64_t *ranks,
                             int64_t words, uint32_t *counts, int64_t ncounts)
{
    if (nkeys > ncounts)
        return KMC_QUANT_ERANGE;
    for (int64_t i = 0; i < nkeys; i++) {
        if (keys[i] >= (uint64_t)ntallies)
            return KMC_QUANT_ERANGE;
        counts[i] = tallies[keys[i]];
    }
    for (int64_t j = 0; j < nwraps; j++) {
        uint64_t key = wraps[j];
        if ((key >> 6) >= (uint64_t)words)
            return KMC_QUANT_ERANGE;
        int64_t at = key_index(bitmap, ranks, key);
        if (at < 0 || at >= ncounts)
            return KMC_QUANT_ERANGE;
        counts[at] += 65536;
    }
    return 0;
}

int kmc_quant_keys_of(const uint64_t *bitmap, int64_t words, uint32_t *keys, int64_t nkeys)
{
    int64_t n = 0;
    for (int64_t w = 0; w < words; w++) {
        uint64_t word = bitmap[w];
        while (word) {
            /* The lowest set bit's position: the count of the bits below it, all clear. */
            uint64_t b = popcount64((word & (~word + 1)) - 1);
            if (n >= nkeys)
                return KMC_QUANT_ERANGE;
            keys[n++] = (uint32_t)(((uint64_t)w << 6) | b);
            word &= word - 1;
        }
    }
    return 0;
}

int kmc_quant_lookup(const uint8_t *pixels, int64_t n, int64_t channels, int has_alpha, int bits,
                     const uint64_t *bitmap, const int64_t *ranks, int64_t words, const void *mapping,
                     int64_t nmapping, int itemsize, void *out)
{
    for (int64_t i = 0; i < n; i++) {
        uint64_t key = pixel_key(pixels + i * channels, channels, has_alpha, bits);
        if ((key >> 6) >= (uint64_t)words)
            return KMC_QUANT_ERANGE;
        int64_t at = key_index(bitmap, ranks, key);
        if (at < 0 || at >= nmapping)
            return KMC_QUANT_ERANGE;
        switch (itemsize) {
        case 1:
            ((uint8_t *)out)[i] = ((const uint8_t *)mapping)[at];
            break;
        case 2:
            ((uint16_t *)out)[i] = ((const uint16_t *)mapping)[at];
            break;
        default:
            ((uint32_t *)out)[i] = ((const uint32_t *)mapping)[at];
            break;
        }
    }
    return 0;
}

int kmc_quant_first_members(const int32_t *inverse, int64_t n, int64_t *member, int64_t m)
{
    for (int64_t i = 0; i < n; i++) {
        int32_t j = inverse[i];
        if (j < 0 || j >= m)
            return KMC_QUANT_ERANGE;
        if (member[j] < 0)
            member[j] = i;
    }
    return 0;
}

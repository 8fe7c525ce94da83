/* The quantizer's kernels (see quant.h); the point-type-specific ones are in quant_typed.h.
 *
 * A few loops take a faster form of the same operations where the machine has one: SSE2 vectors whose lanes
 * are separate sums, and the POPCNT instruction.  Built with -DKMC_PORTABLE they are plain C throughout, to
 * check that both forms give the same bits. */
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

/* Squared distance between rows p and x of `channels` doubles, summed in channel order. */
static inline double dist2_rows(const double *p, const double *x, int64_t channels)
{
    double d = 0.0;
    for (int64_t c = 0; c < channels; c++) {
        double diff = p[c] - x[c];
        d += diff * diff;
    }
    return d;
}

/* Two doubles side by side (two k-means++ candidates' sums, two centres' distances): SSE2 where the compiler has
 * it, else plain C doing the same two operations.  Each lane is rounded as its own scalar operation would be
 * (min(a, b) is a < b ? a : b), so the lanes' results are those of one at a time. */
#if !defined(KMC_PORTABLE) && (defined(__SSE2__) || defined(_M_X64) || (defined(_M_IX86_FP) && _M_IX86_FP >= 2))
#include <emmintrin.h>
typedef __m128d lanes;
#define lanes_zero() _mm_setzero_pd()
#define lanes_set1(x) _mm_set1_pd(x)
#define lanes_load(p) _mm_loadu_pd(p)
#define lanes_store(p, a) _mm_storeu_pd(p, a)
#define lanes_add(a, b) _mm_add_pd(a, b)
#define lanes_sub(a, b) _mm_sub_pd(a, b)
#define lanes_mul(a, b) _mm_mul_pd(a, b)
#define lanes_min(a, b) _mm_min_pd(a, b)
#else
typedef struct {
    double v[2];
} lanes;
static inline lanes lanes_make(double a, double b)
{
    lanes r = {{a, b}};
    return r;
}
#define lanes_zero() lanes_make(0.0, 0.0)
#define lanes_set1(x) lanes_make(x, x)
#define lanes_load(p) lanes_make((p)[0], (p)[1])
#define lanes_store(p, a) ((p)[0] = (a).v[0], (p)[1] = (a).v[1])
#define lanes_add(a, b) lanes_make((a).v[0] + (b).v[0], (a).v[1] + (b).v[1])
#define lanes_sub(a, b) lanes_make((a).v[0] - (b).v[0], (a).v[1] - (b).v[1])
#define lanes_mul(a, b) lanes_make((a).v[0] * (b).v[0], (a).v[1] * (b).v[1])
#define lanes_min(a, b)                                                                                                \
    lanes_make((a).v[0] < (b).v[0] ? (a).v[0] : (b).v[0], (a).v[1] < (b).v[1] ? (a).v[1] : (b).v[1])
#endif

/* out[0 ..< 2 pairs] = the potentials of `pairs` (1 or 2) pairs of candidates: see potentials().  xp holds
 * each pair's channels with the two candidates' values side by side.  Inlined with pairs and channels
 * constant. */
static inline void potentials_group(const double *restrict coord, int64_t n, const int64_t channels,
                                    const double *restrict weight, const double *restrict closest,
                                    const double *restrict xp, const int pairs, double *restrict out)
{
    lanes sum0 = lanes_zero(), sum1 = lanes_zero();
    for (int64_t i = 0; i < n; i++) {
        const double *p = coord + i * channels;
        lanes d0 = lanes_zero(), d1 = lanes_zero();
        for (int64_t c = 0; c < channels; c++) {
            lanes value = lanes_set1(p[c]);
            lanes diff = lanes_sub(value, lanes_load(xp + 2 * c));
            d0 = lanes_add(d0, lanes_mul(diff, diff));
            if (pairs == 2) {
                diff = lanes_sub(value, lanes_load(xp + 2 * channels + 2 * c));
                d1 = lanes_add(d1, lanes_mul(diff, diff));
            }
        }
        const lanes w = lanes_set1(weight[i]), near = lanes_set1(closest[i]);
        sum0 = lanes_add(sum0, lanes_mul(w, lanes_min(d0, near)));
        if (pairs == 2)
            sum1 = lanes_add(sum1, lanes_mul(w, lanes_min(d1, near)));
    }
    lanes_store(out, sum0);
    if (pairs == 2)
        lanes_store(out + 2, sum1);
}

#define KMC_GROUP(m, c)                                                                                               \
    static void potentials_##m##_##c(const double *coord, int64_t n, int64_t channels, const double *weight,        \
                                     const double *closest, const double *xp, double *out)                           \
    {                                                                                                                  \
        potentials_group(coord, n, c ? c : channels, weight, closest, xp, m, out);                                     \
    }
KMC_GROUP(1, 0)
KMC_GROUP(1, 1)
KMC_GROUP(1, 2)
KMC_GROUP(1, 3)
KMC_GROUP(1, 4)
KMC_GROUP(2, 0)
KMC_GROUP(2, 1)
KMC_GROUP(2, 2)
KMC_GROUP(2, 3)
KMC_GROUP(2, 4)
#undef KMC_GROUP

typedef void (*potentials_fn)(const double *, int64_t, int64_t, const double *, const double *, const double *,
                              double *);

/* potential[t] = sum over points i, in order, of weight[i] x min(squared distance from i to candidate t, closest[i]).
 *
 * coord (n, channels); candidates (trials, channels); xp (2 x ceil(trials / 2) x channels) and out
 * (2 x ceil(trials / 2)) are scratch.  Each candidate's sum runs in point order, as one candidate at a time
 * would; up to four candidates' sums advance together, two to a vector, so their additions overlap instead
 * of each waiting for the one before. */
static void potentials(const double *coord, int64_t n, int64_t channels, const double *weight, const double *closest,
                       const double *candidates, int64_t trials, double *xp, double *out, double *potential)
{
    static const potentials_fn groups[2][5] = {
        {potentials_1_0, potentials_1_1, potentials_1_2, potentials_1_3, potentials_1_4},
        {potentials_2_0, potentials_2_1, potentials_2_2, potentials_2_3, potentials_2_4},
    };
    const int fixed = channels <= 4 ? (int)channels : 0;
    const int64_t pairs = (trials + 1) / 2;
    for (int64_t q = 0; q < pairs; q++)
        for (int64_t c = 0; c < channels; c++)
            for (int64_t lane = 0; lane < 2; lane++) {
                int64_t t = 2 * q + lane < trials ? 2 * q + lane : trials - 1; /* an odd count repeats the last */
                xp[(q * channels + c) * 2 + lane] = candidates[t * channels + c];
            }
    for (int64_t q = 0; q < pairs; q += 2) {
        int m = pairs - q < 2 ? 1 : 2;
        groups[m - 1][fixed](coord, n, channels, weight, closest, xp + q * channels * 2, out + 2 * q);
    }
    for (int64_t t = 0; t < trials; t++)
        potential[t] = out[t];
}

/* closest[i] = min(closest[i], squared distance from point i to x); cum[i] = the running sum of weight x closest;
 * returns the total. */
static double close_in(const double *restrict coord, int64_t n, int64_t channels, const double *restrict weight,
                       const double *restrict x, double *restrict closest, double *restrict cum)
{
    double total = 0.0;
    for (int64_t i = 0; i < n; i++) {
        double d = dist2_rows(coord + i * channels, x, channels);
        double near = closest[i] < d ? closest[i] : d;
        closest[i] = near;
        total += weight[i] * near;
        cum[i] = total;
    }
    return total;
}

int kmc_quant_plusplus(const kmc_quant_points *points, const void *weights, kmc_quant_type wtype, int64_t first,
                       const double *draws, int64_t trials, double *centres, int64_t k, kmc_quant_poll poll,
                       void *poll_arg)
{
    const int64_t n = points->n, channels = points->channels;
    const int64_t slots = trials > 0 ? trials : 1;
    double *coord = malloc(sizeof(double) * (size_t)(channels * n));
    double *weight = malloc(sizeof(double) * (size_t)n);
    double *closest = malloc(sizeof(double) * (size_t)n);
    double *cum = malloc(sizeof(double) * (size_t)n);
    int64_t *chosen = malloc(sizeof(int64_t) * (size_t)slots);
    double *candidates = malloc(sizeof(double) * (size_t)(slots * channels));
    double *potential = malloc(sizeof(double) * (size_t)slots);
    double *xp = malloc(sizeof(double) * (size_t)((slots + 1) * channels));
    double *out = malloc(sizeof(double) * (size_t)(slots + 1));
    int status = 0;
    if (coord == NULL || weight == NULL || closest == NULL || cum == NULL || chosen == NULL || candidates == NULL ||
        potential == NULL || xp == NULL || out == NULL) {
        status = KMC_QUANT_ENOMEM;
        goto done;
    }
    switch (points->type) {
    case KMC_QUANT_U8:
        plusplus_coords_u8(points->data, n * channels, coord);
        break;
    case KMC_QUANT_F32:
        plusplus_coords_f32(points->data, n * channels, coord);
        break;
    default:
        plusplus_coords_f64(points->data, n * channels, coord);
        break;
    }
    for (int64_t i = 0; i < n; i++)
        weight[i] = load_weight(weights, wtype, i);
    for (int64_t c = 0; c < channels; c++)
        centres[c] = coord[first * channels + c];
    for (int64_t i = 0; i < n; i++)
        closest[i] = dist2_rows(coord + i * channels, centres, channels);
    /* The running sum of weight x closest; after the first step, made with the update of closest. */
    double total = 0.0;
    for (int64_t i = 0; i < n && k > 1; i++) {
        total += weight[i] * closest[i];
        cum[i] = total;
    }
    int64_t work = 0; /* distances since the last poll */
    for (int64_t step = 1; step < k; step++) {
        work += n * (slots + 1);
        if (poll != NULL && work >= KMC_QUANT_POLL_WORK) {
            work = 0;
            if (poll(poll_arg) != 0) {
                status = KMC_QUANT_EINTR;
                goto done;
            }
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
            for (int64_t c = 0; c < channels; c++)
                candidates[t * channels + c] = coord[chosen[t] * channels + c];
        }
        potentials(coord, n, channels, weight, closest, candidates, trials, xp, out, potential);
        double best_potential = INFINITY;
        int64_t best = 0;
        for (int64_t t = 0; t < trials; t++) {
            if (potential[t] < best_potential) {
                best_potential = potential[t];
                best = chosen[t];
            }
        }
        for (int64_t c = 0; c < channels; c++)
            centres[step * channels + c] = coord[best * channels + c];
        total = close_in(coord, n, channels, weight, centres + step * channels, closest, cum);
    }
done:
    free(coord);
    free(weight);
    free(closest);
    free(cum);
    free(chosen);
    free(candidates);
    free(potential);
    free(xp);
    free(out);
    return status;
}

/* Up to this many centres, rows of the search table are made by insertion, beyond by selection and a sort. */
#define SMALL_TABLE 112

/* A centre's squared distance to centre j and its index: what a row of the search table sorts. */
typedef struct {
    double d;
    int64_t i;
} table_entry;

/* The value of rank r (0 <= r < n, ascending) among v[0 ..< n], found by selection; v and spare (n each) are
 * scratch.  Each round splits the values around a pivot (median of three) without branches on the data. */
static double select_rank(double *v, double *spare, int64_t n, int64_t r)
{
    while (n > 1) {
        double a = v[0], b = v[n / 2], c = v[n - 1];
        double pivot = a < b ? (b < c ? b : (a < c ? c : a)) : (a < c ? a : (b < c ? c : b));
        int64_t less = 0, equal = 0;
        for (int64_t i = 0; i < n; i++) {
            spare[less] = v[i];
            less += v[i] < pivot;
            equal += v[i] == pivot;
        }
        if (r < less) {
            double *t = v;
            v = spare;
            spare = t;
            n = less;
        } else if (r < less + equal) {
            return pivot;
        } else {
            int64_t greater = 0;
            for (int64_t i = 0; i < n; i++) {
                spare[greater] = v[i];
                greater += v[i] > pivot;
            }
            double *t = v;
            v = spare;
            spare = t;
            n = greater;
            r -= less + equal;
        }
    }
    return v[0];
}

/* Sort e[0 ..< n] by distance, equal distances keeping their order (merge sort; scratch holds n). */
static void sort_entries(table_entry *e, int64_t n, table_entry *scratch)
{
    for (int64_t run = 1; run < n; run *= 2) {
        for (int64_t lo = 0; lo < n; lo += 2 * run) {
            int64_t mid = lo + run < n ? lo + run : n, hi = lo + 2 * run < n ? lo + 2 * run : n;
            int64_t a = lo, b = mid, out = lo;
            while (a < mid && b < hi) {
                int take_b = e[b].d < e[a].d;
                scratch[out++] = *(take_b ? &e[b] : &e[a]);
                b += take_b;
                a += !take_b;
            }
            while (a < mid)
                scratch[out++] = e[a++];
            while (b < hi)
                scratch[out++] = e[b++];
        }
        memcpy(e, scratch, sizeof(table_entry) * (size_t)n);
    }
}

/* A row of the search table by insertion from the distances d (k): the row keeps its width nearest so far in
 * order as it scans the centres (the reference's way; kept (width) is scratch).  Cheaper than selection when k
 * is small, and defined whatever the distances (NaN included). */
static void table_row_by_insertion(const double *d, int64_t k, int32_t *row, double *row_dist, int64_t width,
                                   double *kept)
{
    int64_t n = 0;
    for (int64_t i = 0; i < k; i++) {
        if (n == width && d[i] >= kept[n - 1])
            continue; /* not among the T nearest (an equal one with a lower index is kept) */
        int64_t t = n < width ? n : width - 1;
        while (t > 0 && kept[t - 1] > d[i]) {
            kept[t] = kept[t - 1];
            row[t] = row[t - 1];
            t--;
        }
        kept[t] = d[i];
        row[t] = (int32_t)i;
        if (n < width)
            n++;
    }
    for (int64_t t = 0; t < width; t++)
        row_dist[t] = sqrt(kept[t]);
}

int kmc_quant_centre_table(const double *centres, int64_t k, int64_t channels, int32_t *table, double *table_dist,
                           int64_t width, int64_t start, int64_t stop)
{
    double *across = malloc(sizeof(double) * (size_t)(k * channels));
    double *d = malloc(sizeof(double) * (size_t)k);
    double *values = malloc(sizeof(double) * (size_t)k);
    double *spare = malloc(sizeof(double) * (size_t)k);
    table_entry *kept = malloc(sizeof(table_entry) * (size_t)width);
    table_entry *scratch = malloc(sizeof(table_entry) * (size_t)width);
    int status = 0;
    if (across == NULL || d == NULL || values == NULL || spare == NULL || kept == NULL || scratch == NULL) {
        status = KMC_QUANT_ENOMEM;
        goto done;
    }
    /* across[c * k + i] = centres[i, c]: a channel per row, so two centres' distances take one vector op. */
    for (int64_t i = 0; i < k; i++)
        for (int64_t c = 0; c < channels; c++)
            across[c * k + i] = centres[i * channels + c];
    for (int64_t j = start; j < stop; j++) {
        /* d[i] = squared distance from centre j to centre i, summed in channel order. */
        const double *from = centres + j * channels;
        int64_t i = 0;
        for (; i + 2 <= k; i += 2) {
            lanes sum = lanes_zero();
            for (int64_t c = 0; c < channels; c++) {
                lanes diff = lanes_sub(lanes_set1(from[c]), lanes_load(across + c * k + i));
                sum = lanes_add(sum, lanes_mul(diff, diff));
            }
            lanes_store(d + i, sum);
        }
        for (; i < k; i++)
            d[i] = dist2_f64(from, centres + i * channels, channels);
        int unordered = 0; /* a NaN distance: selection assumes that every two distances compare */
        for (i = 0; i < k; i++)
            unordered |= d[i] != d[i];
        if (k <= SMALL_TABLE || unordered) {
            table_row_by_insertion(d, k, table + j * width, table_dist + j * width, width, values);
            continue;
        }
        /* The row is the first width of a stable sort of the distances: those below the width-th smallest, in
         * index order, then as many equal to it as there is room for, lowest indices first. */
        memcpy(values, d, sizeof(double) * (size_t)k);
        const double last = select_rank(values, spare, k, width - 1);
        int64_t n = 0;
        for (i = 0; i < k; i++) {
            /* Fewer than width are below last: every write is within kept. */
            kept[n].d = d[i];
            kept[n].i = i;
            n += d[i] < last;
        }
        for (i = 0; i < k && n < width; i++) {
            if (d[i] == last) {
                kept[n].d = d[i];
                kept[n].i = i;
                n++;
            }
        }
        sort_entries(kept, n, scratch);
        for (int64_t t = 0; t < width; t++) {
            table[j * width + t] = (int32_t)kept[t].i;
            table_dist[j * width + t] = sqrt(kept[t].d);
        }
    }
done:
    free(across);
    free(d);
    free(values);
    free(spare);
    free(kept);
    free(scratch);
    return status;
}

/* ---- Distinct colours ---- */

/* `return CALL(c, b)` with c the constant 1, 2, 3 or 4 when channels is one of them (else channels), and b the
 * constant 8 when bits is 8 (else bits): each kernel over pixels is written once, as a static inline function,
 * and compiled for the common layouts, with their shifts known. */
#define KMC_BY_LAYOUT_BITS(c, bits, CALL)                                                                              \
    if (bits == 8)                                                                                                     \
        return CALL(c, 8);                                                                                             \
    return CALL(c, bits);
#define KMC_BY_LAYOUT(channels, bits, CALL)                                                                            \
    switch (channels) {                                                                                                \
    case 1:                                                                                                            \
        KMC_BY_LAYOUT_BITS(1, bits, CALL)                                                                              \
    case 2:                                                                                                            \
        KMC_BY_LAYOUT_BITS(2, bits, CALL)                                                                              \
    case 3:                                                                                                            \
        KMC_BY_LAYOUT_BITS(3, bits, CALL)                                                                              \
    case 4:                                                                                                            \
        KMC_BY_LAYOUT_BITS(4, bits, CALL)                                                                              \
    default:                                                                                                           \
        KMC_BY_LAYOUT_BITS(channels, bits, CALL)                                                                       \
    }

static inline uint64_t popcount64(uint64_t x)
{
    x = x - ((x >> 1) & 0x5555555555555555u);
    x = (x & 0x3333333333333333u) + ((x >> 2) & 0x3333333333333333u);
    x = (x + (x >> 4)) & 0x0F0F0F0F0F0F0F0Fu;
    return (x * 0x0101010101010101u) >> 56;
}

/* On x86 with GCC or Clang, the kernels that take a popcount per pixel have a second build for CPUs with the
 * POPCNT instruction (nearly all), chosen at run time: the portable popcount above is a dozen instructions. */
#if !defined(KMC_PORTABLE) && (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__))
#define KMC_HW_POPCOUNT 1
#define KMC_POPCNT_TARGET __attribute__((target("popcnt")))
#define KMC_POPCOUNT_HW(x) ((uint64_t)__builtin_popcountll(x))
static int cpu_has_popcnt(void)
{
    return __builtin_cpu_supports("popcnt");
}
#else
#define KMC_HW_POPCOUNT 0
#define KMC_POPCOUNT_HW(x) popcount64(x)
#endif

/* The key of pixel row p (see quant.h). */
static inline uint64_t pixel_key(const uint8_t *p, const int64_t channels, int has_alpha, const int bits)
{
    if (has_alpha && p[channels - 1] == 0)
        return 0;
    uint64_t key = 0;
    for (int64_t c = 0; c < channels; c++)
        key = (key << bits) | p[c];
    return key;
}

/* The key's index among the set bits: its word's rank plus the set bits below it in the word (hw: with the
 * POPCNT instruction, in a function built for it). */
static inline int64_t key_index(const uint64_t *bitmap, const int64_t *ranks, uint64_t key, const int hw)
{
    uint64_t w = key >> 6;
    uint64_t below = bitmap[w] & ((UINT64_C(1) << (key & 63)) - 1);
    return ranks[w] + (int64_t)(hw ? KMC_POPCOUNT_HW(below) : popcount64(below));
}

static inline int mark_impl(const uint8_t *pixels, int64_t n, const int64_t channels, int has_alpha, int bits,
                            uint64_t *bitmap, int64_t words)
{
    for (int64_t i = 0; i < n; i++) {
        uint64_t key = pixel_key(pixels + i * channels, channels, has_alpha, bits);
        if ((key >> 6) >= (uint64_t)words)
            return KMC_QUANT_ERANGE;
        bitmap[key >> 6] |= UINT64_C(1) << (key & 63);
    }
    return 0;
}

int kmc_quant_mark(const uint8_t *pixels, int64_t n, int64_t channels, int has_alpha, int bits, uint64_t *bitmap,
                   int64_t words)
{
#define CALL(c, b) mark_impl(pixels, n, c, has_alpha, b, bitmap, words)
    KMC_BY_LAYOUT(channels, bits, CALL)
#undef CALL
}

static inline int64_t rank_impl(const uint64_t *bitmap, int64_t *ranks, int64_t words, const int hw)
{
    int64_t total = 0;
    for (int64_t w = 0; w < words; w++) {
        ranks[w] = total;
        total += (int64_t)(hw ? KMC_POPCOUNT_HW(bitmap[w]) : popcount64(bitmap[w]));
    }
    return total;
}

#if KMC_HW_POPCOUNT
static KMC_POPCNT_TARGET int64_t rank_hw(const uint64_t *bitmap, int64_t *ranks, int64_t words)
{
    return rank_impl(bitmap, ranks, words, 1);
}
#endif

int64_t kmc_quant_rank(const uint64_t *bitmap, int64_t *ranks, int64_t words)
{
#if KMC_HW_POPCOUNT
    if (cpu_has_popcnt())
        return rank_hw(bitmap, ranks, words);
#endif
    return rank_impl(bitmap, ranks, words, 0);
}

/* weights: NULL counts each pixel once. */
static inline int count_impl(const uint8_t *pixels, const uint8_t *weights, int64_t n, const int64_t channels,
                             int has_alpha, const int bits, const uint64_t *bitmap, const int64_t *ranks,
                             int64_t words, uint32_t *counts, int64_t ncounts, const int hw)
{
    for (int64_t i = 0; i < n; i++) {
        uint64_t key = pixel_key(pixels + i * channels, channels, has_alpha, bits);
        if ((key >> 6) >= (uint64_t)words)
            return KMC_QUANT_ERANGE;
        uint64_t at = (uint64_t)key_index(bitmap, ranks, key, hw);
        if (at >= (uint64_t)ncounts)
            return KMC_QUANT_ERANGE;
        counts[at] += weights == NULL ? 1u : weights[i];
    }
    return 0;
}

#if KMC_HW_POPCOUNT
static KMC_POPCNT_TARGET int count_hw(const uint8_t *pixels, const uint8_t *weights, int64_t n, int64_t channels,
                                      int has_alpha, int bits, const uint64_t *bitmap, const int64_t *ranks,
                                      int64_t words, uint32_t *counts, int64_t ncounts)
{
#define CALL(c, b) count_impl(pixels, weights, n, c, has_alpha, b, bitmap, ranks, words, counts, ncounts, 1)
    KMC_BY_LAYOUT(channels, bits, CALL)
#undef CALL
}
#endif

int kmc_quant_count(const uint8_t *pixels, const uint8_t *weights, int64_t n, int64_t channels, int has_alpha,
                    int bits, const uint64_t *bitmap, const int64_t *ranks, int64_t words, uint32_t *counts,
                    int64_t ncounts)
{
#if KMC_HW_POPCOUNT
    if (cpu_has_popcnt())
        return count_hw(pixels, weights, n, channels, has_alpha, bits, bitmap, ranks, words, counts, ncounts);
#endif
#define CALL(c, b) count_impl(pixels, weights, n, c, has_alpha, b, bitmap, ranks, words, counts, ncounts, 0)
    KMC_BY_LAYOUT(channels, bits, CALL)
#undef CALL
}

static inline int64_t tally_impl(const uint8_t *pixels, int64_t n, const int64_t channels, int has_alpha, int bits,
                                 uint16_t *tallies, int64_t ntallies, uint32_t *wraps, int64_t nwraps,
                                 int64_t wrapped)
{
    for (int64_t i = 0; i < n; i++) {
        uint64_t key = pixel_key(pixels + i * channels, channels, has_alpha, bits);
        if (key >= (uint64_t)ntallies)
            return KMC_QUANT_ERANGE;
        uint16_t tally = (uint16_t)(tallies[key] + 1);
        tallies[key] = tally;
        if (tally == 0) {
            if (wrapped < 0 || wrapped >= nwraps)
                return KMC_QUANT_ERANGE;
            wraps[wrapped++] = (uint32_t)key;
        }
    }
    return wrapped;
}

int64_t kmc_quant_tally(const uint8_t *pixels, int64_t n, int64_t channels, int has_alpha, int bits,
                        uint16_t *tallies, int64_t ntallies, uint32_t *wraps, int64_t nwraps, int64_t wrapped)
{
#define CALL(c, b) tally_impl(pixels, n, c, has_alpha, b, tallies, ntallies, wraps, nwraps, wrapped)
    KMC_BY_LAYOUT(channels, bits, CALL)
#undef CALL
}

int kmc_quant_mark_tallied(const uint16_t *tallies, int64_t ntallies, const uint32_t *wraps, int64_t nwraps,
                           uint64_t *bitmap, int64_t words)
{
    if (ntallies > 64 * words)
        return KMC_QUANT_ERANGE;
    int64_t key = 0;
    /* Most tallies are 0: four at a time, looked at one by one only if any is not. */
    for (; key + 4 <= ntallies; key += 4) {
        uint64_t four;
        memcpy(&four, tallies + key, sizeof four);
        if (four == 0)
            continue;
        for (int64_t b = key; b < key + 4; b++)
            if (tallies[b])
                bitmap[b >> 6] |= UINT64_C(1) << (b & 63);
    }
    for (; key < ntallies; key++)
        if (tallies[key])
            bitmap[key >> 6] |= UINT64_C(1) << (key & 63);
    for (int64_t j = 0; j < nwraps; j++) {
        uint64_t wrap = wraps[j];
        if ((wrap >> 6) >= (uint64_t)words)
            return KMC_QUANT_ERANGE;
        bitmap[wrap >> 6] |= UINT64_C(1) << (wrap & 63);
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
        uint64_t at = (uint64_t)key_index(bitmap, ranks, key, 0);
        if (at >= (uint64_t)ncounts)
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

static inline int lookup_impl(const uint8_t *pixels, int64_t n, const int64_t channels, int has_alpha, const int bits,
                              const uint64_t *bitmap, const int64_t *ranks, int64_t words, const void *mapping,
                              int64_t nmapping, const int itemsize, void *out, const int hw)
{
    for (int64_t i = 0; i < n; i++) {
        uint64_t key = pixel_key(pixels + i * channels, channels, has_alpha, bits);
        if ((key >> 6) >= (uint64_t)words)
            return KMC_QUANT_ERANGE;
        uint64_t at = (uint64_t)key_index(bitmap, ranks, key, hw);
        if (at >= (uint64_t)nmapping)
            return KMC_QUANT_ERANGE;
        if (itemsize == 1)
            ((uint8_t *)out)[i] = ((const uint8_t *)mapping)[at];
        else if (itemsize == 2)
            ((uint16_t *)out)[i] = ((const uint16_t *)mapping)[at];
        else
            ((uint32_t *)out)[i] = ((const uint32_t *)mapping)[at];
    }
    return 0;
}

/* lookup_impl for each item size, layout and popcount (hw). */
#define KMC_LOOKUP_SIZES()                                                                                             \
    if (itemsize == 1) {                                                                                               \
        KMC_BY_LAYOUT(channels, bits, CALL1)                                                                           \
    } else if (itemsize == 2) {                                                                                        \
        KMC_BY_LAYOUT(channels, bits, CALL2)                                                                           \
    } else {                                                                                                           \
        KMC_BY_LAYOUT(channels, bits, CALL4)                                                                           \
    }
#define KMC_LOOKUP_CALL(c, b, size, hw)                                                                                \
    lookup_impl(pixels, n, c, has_alpha, b, bitmap, ranks, words, mapping, nmapping, size, out, hw)

#if KMC_HW_POPCOUNT
static KMC_POPCNT_TARGET int lookup_hw(const uint8_t *pixels, int64_t n, int64_t channels, int has_alpha, int bits,
                                       const uint64_t *bitmap, const int64_t *ranks, int64_t words,
                                       const void *mapping, int64_t nmapping, int itemsize, void *out)
{
#define CALL1(c, b) KMC_LOOKUP_CALL(c, b, 1, 1)
#define CALL2(c, b) KMC_LOOKUP_CALL(c, b, 2, 1)
#define CALL4(c, b) KMC_LOOKUP_CALL(c, b, 4, 1)
    KMC_LOOKUP_SIZES()
#undef CALL1
#undef CALL2
#undef CALL4
}
#endif

int kmc_quant_lookup(const uint8_t *pixels, int64_t n, int64_t channels, int has_alpha, int bits,
                     const uint64_t *bitmap, const int64_t *ranks, int64_t words, const void *mapping,
                     int64_t nmapping, int itemsize, void *out)
{
#if KMC_HW_POPCOUNT
    if (cpu_has_popcnt())
        return lookup_hw(pixels, n, channels, has_alpha, bits, bitmap, ranks, words, mapping, nmapping, itemsize,
                         out);
#endif
#define CALL1(c, b) KMC_LOOKUP_CALL(c, b, 1, 0)
#define CALL2(c, b) KMC_LOOKUP_CALL(c, b, 2, 0)
#define CALL4(c, b) KMC_LOOKUP_CALL(c, b, 4, 0)
    KMC_LOOKUP_SIZES()
#undef CALL1
#undef CALL2
#undef CALL4
}
#undef KMC_LOOKUP_SIZES
#undef KMC_LOOKUP_CALL

int kmc_quant_first_members(const int32_t *inverse, int64_t n, int64_t *member, int64_t m)
{
    for (int64_t i = 0; i < n; i++) {
        int64_t j = inverse[i];
        if ((uint64_t)j >= (uint64_t)m)
            return KMC_QUANT_ERANGE;
        int64_t first = member[j];
        member[j] = first < 0 ? i : first;
    }
    return 0;
}

#undef KMC_BY_LAYOUT
#undef KMC_BY_LAYOUT_BITS

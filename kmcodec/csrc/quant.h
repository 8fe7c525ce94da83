/* The quantizer's kernels (kmcodec.quantize): nearest-centre search, Lloyd steps, k-means++ seeding, colour counting.
 *
 * Plain C over pointers and sizes; the binding (py_quant.c) checks shapes
 * and dtypes.  Every loop runs in a fixed order, in double precision, with
 * no FMA contraction, so results are the same on every machine and with any
 * split of the points over threads (each call writes only its own range).
 *
 * Nearest-centre search (the nearest and assign_bounded kernels) has two
 * walks, both exact:
 *
 * - From a guess g (the point's label in the last iteration or on the
 *   coarser level): the centres are visited in order of their distance from
 *   c_g, which a table lists per centre (its T nearest); by the triangle
 *   inequality no centre farther than |p - c_g| + r from c_g can come within
 *   r of p, so the walk stops there.  A good guess visits a handful of
 *   centres; the rare point whose bound reaches past the T listed is
 *   searched again by the second walk.
 * - Without a guess, or when k is too large for the table: the centres are
 *   sorted by their projection on one axis (their principal axis); for a
 *   unit axis a, |a.p - a.c| <= |p - c|, so the walk goes outwards from the
 *   point's own projection and stops on each side once the projected gap
 *   alone is too large.
 *
 * Both find the best and the second-best centre; ties go to the lowest index.
 *
 * Colours of up to 24 bits are counted with a bitmap of all keys (a key
 * packs *bits* per channel, first channel most significant; with alpha, a
 * fully transparent pixel keys 0) and a rank per 64-bit word: a key's index
 * among the distinct colours is its word's rank plus a popcount.
 */
#ifndef KMC_QUANT_H
#define KMC_QUANT_H

#include <stddef.h>
#include <stdint.h>

/* Error codes of the kernels that check their data (negative; 0 or a count on success). */
#define KMC_QUANT_ERANGE (-1) /* an index or key read from the data falls outside an array */
#define KMC_QUANT_ENOMEM (-2) /* scratch memory could not be allocated */
#define KMC_QUANT_EINTR (-3)  /* the caller's poll asked to stop */

/* Called by a long kernel every so often with its argument: nonzero stops the kernel (KMC_QUANT_EINTR).
 * The binding's poll takes the GIL and runs Python's signal handlers, so Ctrl-C need not wait for a
 * seeding of thousands of centres. */
typedef int (*kmc_quant_poll)(void *arg);

/* Work between polls, in point-candidate distances: tens of milliseconds. */
#define KMC_QUANT_POLL_WORK ((int64_t)1 << 25)

/* Element types of points and weights.  Points are uint8 colours, float32
 * cell means or float64 coordinates; weights are uint32 counts or float64
 * masses.  Every value is converted to double before any arithmetic. */
typedef enum { KMC_QUANT_U8, KMC_QUANT_U32, KMC_QUANT_F32, KMC_QUANT_F64 } kmc_quant_type;

/* Points: n rows of `channels` values of `type`, row-major. */
typedef struct {
    const void *data;
    kmc_quant_type type; /* KMC_QUANT_U8, KMC_QUANT_F32 or KMC_QUANT_F64 */
    int64_t n;
    int64_t channels;
} kmc_quant_points;

/* Centres prepared for the search (kmcodec.quantize._Search).
 *
 * centres (k, channels) float64 with k >= 1; order (k): the centres sorted
 * by projection on the unit vector axis (channels), proj (k) those
 * projections in that order (ascending).  table (k, width) int32 lists each
 * centre's width nearest centres (nearest first), table_dist (k, width)
 * their distances (not squared); width 0 (and NULL tables) for none.
 */
typedef struct {
    const double *centres;
    int64_t k;
    int64_t channels;
    const int64_t *order;
    const double *proj;
    const double *axis;
    const int32_t *table;
    const double *table_dist;
    int64_t width;
} kmc_quant_search;

/* Whether s's order and table hold only indices 0 ..< k (1) or not (0): check before searching. */
int kmc_quant_search_valid(const kmc_quant_search *s);

/* labels[i], dist[i] = the nearest centre to points row i and its squared distance, for start <= i < stop.
 *
 * labels[i] holds a guess on entry (-1 or any negative for none), which
 * only makes the search faster; ties go to the lowest index.  Needs
 * points->channels == s->channels, 0 <= start <= stop <= points->n and
 * labels, dist of points->n; s valid (kmc_quant_search_valid).  Returns 0, or
 * KMC_QUANT_ERANGE if a guess is >= k (the rows before it are done).
 */
int kmc_quant_nearest(const kmc_quant_points *points, const kmc_quant_search *s, int32_t *labels, double *dist,
                      int64_t start, int64_t stop);

/* One Lloyd assignment with Hamerly's bounds, for start <= i < stop; returns the number of labels changed.
 *
 * upper[i] bounds the distance (not squared) from point i to its centre
 * labels[i] from above, lower[i] the distance to every other centre from
 * below; both were true before the centres moved by shift[j] (k).
 * half_gap[j] (k) is half the distance from centre j to its nearest other
 * centre: a point strictly within it of its centre is nearest to it.  A
 * point whose bounds cannot decide (ties included, so that they go to the
 * lowest index as in plain Lloyd iterations) is searched from its label,
 * and its bounds become exact.  On the first call pass upper = inf and
 * lower = 0, with labels a guess or -1.  Sizes as for kmc_quant_nearest
 * (labels, upper, lower of points->n).  Returns KMC_QUANT_ERANGE if a
 * label is >= k.
 */
int64_t kmc_quant_assign_bounded(const kmc_quant_points *points, const kmc_quant_search *s, const double *half_gap,
                                 const double *shift, int32_t *labels, double *upper, double *lower, int64_t start,
                                 int64_t stop);

/* sums[j] += w * point and mass[j] += w over the points labelled j, in point order.
 *
 * weights (points->n) of wtype (KMC_QUANT_U32 or KMC_QUANT_F64), labels
 * (points->n), sums (k, points->channels) and mass (k) float64.  Returns 0,
 * or KMC_QUANT_ERANGE at the first label outside 0 ..< k (the points before
 * it are added).
 */
int kmc_quant_accumulate(const kmc_quant_points *points, const void *weights, kmc_quant_type wtype,
                         const int32_t *labels, double *sums, double *mass, int64_t k);

/* sum(values * weights) in double, in index order; values (n) float64, weights (n) of wtype (U32 or F64). */
double kmc_quant_weighted_sum(const double *values, const void *weights, kmc_quant_type wtype, int64_t n);

/* Greedy k-means++ seeding into centres (k, points->channels) float64.
 *
 * first (0 ..< n, n >= 1) is the index of the first centre; draws
 * (k - 1, trials) in [0, 1): draws[i - 1, t] picks candidate t of centre i
 * with probability proportional to weight x squared distance to the
 * nearest centre so far; of each step's candidates the one that lowers the
 * potential most is kept (the first of equals).  weights (n) of wtype.
 * poll (may be NULL) is called with poll_arg after about every
 * KMC_QUANT_POLL_WORK distances; when it returns nonzero the seeding stops,
 * centres partly written.  Returns 0, KMC_QUANT_ENOMEM or KMC_QUANT_EINTR.
 *
 * The points are copied once into doubles; each step's candidates are
 * scored in one pass over them, two candidates to a vector, each
 * candidate's potential still summed in point order.
 */
int kmc_quant_plusplus(const kmc_quant_points *points, const void *weights, kmc_quant_type wtype, int64_t first,
                       const double *draws, int64_t trials, double *centres, int64_t k, kmc_quant_poll poll,
                       void *poll_arg);

/* The search table's rows start ..< stop: for each centre j, the width centres nearest to it.
 *
 * centres (k, channels) float64; table (k, width) int32, table_dist
 * (k, width) float64, 1 <= width <= k, 0 <= start <= stop <= k.  table[j]
 * lists them nearest first, equal distances in index order (the first
 * width of a stable sort; j itself or an equal centre comes first),
 * table_dist[j] their distances (not squared).  Up to 112 centres a row
 * keeps its width nearest so far in order as it scans the centres; beyond,
 * it selects the width-th smallest distance and sorts the width kept (the
 * same rows, in less time).  Returns 0 or KMC_QUANT_ENOMEM.
 */
int kmc_quant_centre_table(const double *centres, int64_t k, int64_t channels, int32_t *table, double *table_dist,
                           int64_t width, int64_t start, int64_t stop);

/* ---- Distinct colours: keys in a bitmap of uint64 words with a rank per word ----
 *
 * pixels (n, channels) uint8; a key packs *bits* (1 ..= 63) per channel,
 * first channel most significant; when has_alpha, a pixel whose last
 * channel is 0 keys 0.  Every key must fall below 64 x words (the bitmap's
 * size) or below the tallies' size: the kernels return KMC_QUANT_ERANGE at
 * the first that does not (the pixels before it are done).
 */

/* Set the bit of each pixel's key in bitmap (words). */
int kmc_quant_mark(const uint8_t *pixels, int64_t n, int64_t channels, int has_alpha, int bits, uint64_t *bitmap,
                   int64_t words);

/* ranks[w] = set bits in the words before w (words of each); returns the total. */
int64_t kmc_quant_rank(const uint64_t *bitmap, int64_t *ranks, int64_t words);

/* counts[index of the key] += weights[i] (modulo 2**32) for each pixel i, or += 1 where weights is NULL;
 * weights (n), counts (ncounts), bitmap and ranks (words). */
int kmc_quant_count(const uint8_t *pixels, const uint8_t *weights, int64_t n, int64_t channels, int has_alpha,
                    int bits, const uint64_t *bitmap, const int64_t *ranks, int64_t words, uint32_t *counts,
                    int64_t ncounts);

/* tallies[key] += 1 per pixel, modulo 2**16; each wrap to 0 appends the key to wraps.
 *
 * tallies (ntallies) uint16, wraps (nwraps) uint32; wrapped is the number
 * of wraps so far; returns the new number, or KMC_QUANT_ERANGE (a key past
 * the tallies, or no room left in wraps).  A key's count is its tally +
 * 65536 x its wraps.
 */
int64_t kmc_quant_tally(const uint8_t *pixels, int64_t n, int64_t channels, int has_alpha, int bits,
                        uint16_t *tallies, int64_t ntallies, uint32_t *wraps, int64_t nwraps, int64_t wrapped);

/* Set the bit of every key with a nonzero tally or a wrap; tallies (ntallies <= 64 x words), wraps (nwraps). */
int kmc_quant_mark_tallied(const uint16_t *tallies, int64_t ntallies, const uint32_t *wraps, int64_t nwraps,
                           uint64_t *bitmap, int64_t words);

/* counts[i] = the count of keys[i] (nkeys <= ncounts): its tally plus 65536 per wrap. */
int kmc_quant_gather_tallies(const uint16_t *tallies, int64_t ntallies, const uint32_t *wraps, int64_t nwraps,
                             const uint32_t *keys, int64_t nkeys, const uint64_t *bitmap, const int64_t *ranks,
                             int64_t words, uint32_t *counts, int64_t ncounts);

/* keys = the set bits' keys in ascending order; KMC_QUANT_ERANGE if there are more than nkeys. */
int kmc_quant_keys_of(const uint64_t *bitmap, int64_t words, uint32_t *keys, int64_t nkeys);

/* out[i] = mapping[index of pixel i's key]; mapping (nmapping) and out (n) of itemsize 1, 2 or 4 bytes. */
int kmc_quant_lookup(const uint8_t *pixels, int64_t n, int64_t channels, int has_alpha, int bits,
                     const uint64_t *bitmap, const int64_t *ranks, int64_t words, const void *mapping,
                     int64_t nmapping, int itemsize, void *out);

/* member[j] = the first i with inverse[i] == j, for member[j] < 0 on entry; inverse (n), member (m). */
int kmc_quant_first_members(const int32_t *inverse, int64_t n, int64_t *member, int64_t m);

#endif

/* The quantizer's kernels that read points, for one point type: included by quant.c only, once per type.
 *
 * Before including, quant.c defines KMC_T (the C type of a point's values)
 * and KMC_SUFFIX (a name suffix: u8, f32, f64); this file defines
 * dist2_<suffix>, search_<suffix>, nearest_<suffix>, assign_bounded_<suffix>,
 * accumulate_<suffix> and plusplus_coords_<suffix>, and undefines both.
 * Every value is converted to double before any arithmetic, as numba did.
 */
#ifndef KMC_T
#error "quant_typed.h is included by quant.c with KMC_T and KMC_SUFFIX defined"
#endif

#define KMC_NAME2(name, suffix) name##_##suffix
#define KMC_NAME1(name, suffix) KMC_NAME2(name, suffix)
#define KMC_NAME(name) KMC_NAME1(name, KMC_SUFFIX)

/* Squared distance of point row p to centre row c (channels values each), summed in channel order. */
static inline double KMC_NAME(dist2)(const KMC_T *p, const double *c, int64_t channels)
{
    double d = 0.0;
    for (int64_t ch = 0; ch < channels; ch++) {
        double diff = (double)p[ch] - c[ch];
        d += diff * diff;
    }
    return d;
}

/* The best index, best and second-best squared distances of point row p (see quant.h). */
static search_state KMC_NAME(search)(const KMC_T *p, const kmc_quant_search *s, int32_t guess)
{
    const int64_t k = s->k, channels = s->channels;
    search_state r = {-1, INFINITY, INFINITY};
    if (guess >= 0 && s->width > 0) {
        const double reach = sqrt(KMC_NAME(dist2)(p, s->centres + (int64_t)guess * channels, channels));
        const int32_t *row = s->table + (int64_t)guess * s->width;
        const double *row_dist = s->table_dist + (int64_t)guess * s->width;
        for (int64_t t = 0; t < s->width; t++) {
            if (row_dist[t] > (sqrt(r.runner) + reach) * (1.0 + SLACK) + SLACK)
                return r;
            int64_t j = row[t];
            rank_one(&r, KMC_NAME(dist2)(p, s->centres + j * channels, channels), j);
        }
        if (s->width == k)
            return r;
        /* The table's T nearest ran out before the bound: start again along the axis. */
        r.best_j = -1;
        r.best = INFINITY;
        r.runner = INFINITY;
    }
    double proj = 0.0;
    for (int64_t ch = 0; ch < channels; ch++)
        proj += s->axis[ch] * (double)p[ch];
    int64_t lo = 0, hi = k;
    while (lo < hi) {
        int64_t mid = (lo + hi) >> 1;
        if (s->proj[mid] < proj)
            lo = mid + 1;
        else
            hi = mid;
    }
    int64_t left = lo - 1, right = lo;
    for (;;) {
        double gap_left = left >= 0 ? proj - s->proj[left] : INFINITY;
        double gap_right = right < k ? s->proj[right] - proj : INFINITY;
        int64_t j;
        if (gap_left <= gap_right) {
            if (gap_left * gap_left > r.runner * (1.0 + SLACK) + SLACK)
                break;
            if (left < -k)
                break; /* unreachable for finite points (see wrap_left) */
            j = s->order[wrap_left(left, k)];
            left--;
        } else {
            if (gap_right * gap_right > r.runner * (1.0 + SLACK) + SLACK)
                break;
            if (right >= k)
                break; /* unreachable: gap_left > inf cannot hold */
            j = s->order[right];
            right++;
        }
        rank_one(&r, KMC_NAME(dist2)(p, s->centres + j * channels, channels), j);
    }
    return r;
}

static int KMC_NAME(nearest)(const KMC_T *points, const kmc_quant_search *s, int32_t *labels, double *dist,
                             int64_t start, int64_t stop)
{
    for (int64_t i = start; i < stop; i++) {
        if (labels[i] >= s->k)
            return KMC_QUANT_ERANGE;
        search_state r = KMC_NAME(search)(points + i * s->channels, s, labels[i]);
        labels[i] = (int32_t)r.best_j;
        dist[i] = r.best;
    }
    return 0;
}

static int64_t KMC_NAME(assign_bounded)(const KMC_T *points, const kmc_quant_search *s, const double *half_gap,
                                        const double *shift, int32_t *labels, double *upper, double *lower,
                                        int64_t start, int64_t stop)
{
    const int64_t k = s->k, channels = s->channels;
    /* The largest shift, and the largest among the other centres for its holder. */
    int64_t top = 0;
    for (int64_t j = 0; j < k; j++)
        if (shift[j] > shift[top])
            top = j;
    double second = 0.0;
    for (int64_t j = 0; j < k; j++)
        if (j != top && shift[j] > second)
            second = shift[j];
    int64_t changed = 0;
    for (int64_t i = start; i < stop; i++) {
        const KMC_T *p = points + i * channels;
        int32_t a = labels[i];
        if (a >= k)
            return KMC_QUANT_ERANGE;
        if (a >= 0 && upper[i] < INFINITY) {
            upper[i] += shift[a];
            lower[i] -= a == top ? second : shift[top];
            double bound = lower[i] > half_gap[a] ? lower[i] : half_gap[a];
            if (upper[i] < bound)
                continue;
            upper[i] = sqrt(KMC_NAME(dist2)(p, s->centres + (int64_t)a * channels, channels));
            if (upper[i] < bound)
                continue;
        }
        search_state r = KMC_NAME(search)(p, s, a);
        if (r.best_j != a) {
            changed++;
            labels[i] = (int32_t)r.best_j;
        }
        upper[i] = sqrt(r.best);
        lower[i] = sqrt(r.runner);
    }
    return changed;
}

static int KMC_NAME(accumulate)(const KMC_T *points, int64_t n, int64_t channels, const void *weights,
                                kmc_quant_type wtype, const int32_t *labels, double *sums, double *mass, int64_t k)
{
    for (int64_t i = 0; i < n; i++) {
        int32_t j = labels[i];
        if (j < 0 || j >= k)
            return KMC_QUANT_ERANGE;
        double w = load_weight(weights, wtype, i);
        mass[j] += w;
        const KMC_T *p = points + i * channels;
        double *sum = sums + (int64_t)j * channels;
        for (int64_t c = 0; c < channels; c++)
            sum[c] += w * (double)p[c];
    }
    return 0;
}

/* coord[i] = values[i] as doubles, for count values. */
static void KMC_NAME(plusplus_coords)(const KMC_T *values, int64_t count, double *coord)
{
    for (int64_t i = 0; i < count; i++)
        coord[i] = (double)values[i];
}

#undef KMC_NAME
#undef KMC_NAME1
#undef KMC_NAME2
#undef KMC_T
#undef KMC_SUFFIX

/* Label coding lab (issue 17): the ideal code length of a strip's labels under variants of the cm model.
 *
 * Not part of the library and not a coder: it walks a strip the way cm.c's code_strip does, with the
 * model of kmcodec/csrc/cm_model.h (included, not copied), and sums -log2 p of every decision
 * instead of coding it.  The baseline (no flags) is today's cm, or cmm with *match*, with the
 * 12-bit probabilities the range coder is given; tools/model_lab.py checks it against the real
 * coder's output.  The flags add, one by one, what issue 17 asks to measure:
 *
 *   LAB_MIX   every decision's probability from a logistic mixer (stretch / squash, weights
 *             trained online, a weight set chosen by the decision's kind) of the inputs, then an
 *             APM (SSE) stage, instead of the mean of the two counters;
 *   LAB_2D    a 2-D match model: four recent offsets are kept (of earlier pixels whose
 *             neighbourhood hash and label were the same, and of cmm's matches that ran 8 labels),
 *             each pixel takes the one under which most of W, N, NW, NE agree, and its label P2 feeds every
 *             decision one more input (counters keyed on agreement, run and "P2 = this answer");
 *   LAB_GEO   palette geometry: the colour distance between W's and N's entries (and between
 *             a candidate's and W's) keys one more input of the candidate decisions, and the
 *             escape tree gets a third counter row keyed on G, the palette entry nearest to the
 *             gradient W + N - NW (a lookup table the caller builds);
 *   LAB_ESC2  two more escape inputs: hashed counter rows keyed on the pairs (W, N) and (N, NE)
 *             (for palettes above 32 colours today's rows are keyed on W alone and N alone), and
 *             one more candidate input keyed on (rank, W, N, candidate, candidate = WW, = NN);
 *   LAB_RANK  an escaped label coded not bit by bit of its index but as its rank r in the list of
 *             palette entries by distance from G (or, with LAB_RANK_W, from W), the refused
 *             neighbours skipped: r + 1 in Elias gamma, every bit a modelled decision;
 *   LAB_2D_DEC the 2-D match model's label P2 as one decision of its own, "label = P2", when three
 *             or four of the neighbours agree under its offset, coded like cmm's match decision
 *             (mean of two counters); a refused P2 is no longer a candidate.  The cheap form.
 *
 * Mixing and the extra inputs are floating point: a measurement of what pays, not a format.
 * Counters: flags >> 16, if not 0, is the limit of every counter's count (today's is 30): a
 * parameter, not a structure, so it costs decoding nothing.
 *
 * lab_bits() returns the bits; *ns* gets the thread CPU nanoseconds the walk took, *parts* the
 * bits by decision kind.
 *
 * Build: tools/model_lab.py compiles it with the system C compiler (-O2 -Wall -Wextra).
 */
#define _POSIX_C_SOURCE 200809L

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cm_model.h"

/* The variants (flags of lab_bits; bits 16 and up: the counter limit). */
#define LAB_MIX 1u        /* a logistic mixer and an APM stage instead of the mean of two counters */
#define LAB_2D 2u         /* with LAB_MIX: the 2-D match model as one more input of every decision */
#define LAB_GEO 4u        /* with LAB_MIX: palette-geometry inputs */
#define LAB_APM_OFF 8u    /* with LAB_MIX: the mixer alone */
#define LAB_2D_DEC 16u    /* the 2-D match model as a decision of its own, before the others (no mixer needed) */
#define LAB_ESC2 32u      /* with LAB_MIX: inputs keyed on label pairs (escape) and labels (candidates) */
#define LAB_2D_STRICT 64u /* with LAB_2D_DEC: only when all four neighbours agree and P2 was right last time */
#define LAB_RANK 128u     /* an escaped label as its rank among the entries nearest to G (Elias gamma, modelled) */
#define LAB_RANK_W 256u   /* with LAB_RANK: ranked by distance from W's entry instead of G's */

/* Decision kinds: the mixer's weight sets and the APM's contexts. */
enum { K_MATCH, K_FLAT, K_OFFER0, K_ESC0 = K_OFFER0 + 4, K_KINDS = K_ESC0 + 8 };

#define N_IN 8         /* most inputs a decision has: two counters, 2-D, geometry, G row, bias */
#define OFFSETS 4      /* 2-D match offsets kept */
#define X_SIZE (1 << 16)
#define XH_BITS 22 /* the hashed pair rows of LAB_ESC2 */

typedef struct {
    unsigned flags;
    double bits;
    size_t ih; /* LAB_ESC2's input for a candidate decision (SIZE_MAX: none) */
    double parts[4]; /* bits by kind: match decisions (cmm's and 2-D), flat, candidates, escape */
    int part;
    /* mixer */
    float in[N_IN];
    int n;
    float w[K_KINDS * 4][N_IN];
    float apm[K_KINDS * 4][33];
    float lr, apm_rate;
    /* extra counters: 2-D, geometry; the G escape rows */
    uint32_t *x2d, *xgeo, *esc_g, *d2, *xh, *rk;
    int32_t *t2; /* the 2-D model's own hash of neighbourhoods: position last seen */
    uint16_t *flat; /* the labels coded so far, a row after another without padding */
    /* 2-D match state */
    int64_t off[OFFSETS];
    int run; /* correct predictions in a row under the chosen offset */
    int64_t P2;
    int score;
} lab;

static float stretch_tab[4096];
static double cost_tab[4096];

static void lab_tables(void)
{
    for (int i = 0; i < 4096; i++) {
        double p = (i + 0.5) / 4096.0;
        stretch_tab[i] = (float)log(p / (1 - p));
        cost_tab[i] = i ? -log2(i / 4096.0) : 12.0;
    }
}

/* The counter limit of this call: 0 for today's (KMC_CM_LIMIT), else up to 1023 (flags >> 16). */
static int lab_limit;

/* A counter's update: today's, or with a later limit on its count (a slower floor on its rate). */
static inline uint32_t lab_updated(uint32_t e, int bit)
{
    if (lab_limit == 0)
        return kmc_cm_updated(e, bit);
    uint32_t n = e & 1023;
    int64_t p = (int64_t)(e >> 10);
    p += kmc_cm_floor16((((int64_t)bit << KMC_CM_P_BITS) - p) * (131072 / (2 * (int64_t)n + 3)));
    if (n < (uint32_t)lab_limit)
        n += 1;
    return ((uint32_t)p << 10) | n;
}

static inline float squash(float x)
{
    if (x > 20)
        x = 20;
    if (x < -20)
        x = -20;
    return 1.0f / (1.0f + expf(-x));
}

static inline float st22(uint32_t word) /* a counter word's stretched probability */
{
    return stretch_tab[word >> 20];
}

/* Account a decision of 12-bit probability p (of a 1). */
static inline void account(lab *s, uint32_t p, int bit)
{
    const double c = bit ? cost_tab[p] : cost_tab[4096 - p];
    s->bits += c;
    s->parts[s->part] += c;
}

/* The mixed (and APM'd) probability of the inputs in s->in, accounted and trained with *bit*. */
static void mix_code(lab *s, int kind, int sub, int bit)
{
    const int set = kind * 4 + sub;
    float *w = s->w[set];
    float dot = 0;
    for (int i = 0; i < s->n; i++)
        dot += w[i] * s->in[i];
    float p = squash(dot);
    float err = (float)bit - p;
    for (int i = 0; i < s->n; i++)
        w[i] += s->lr * err * s->in[i];
    float pf = p;
    if (!(s->flags & LAB_APM_OFF)) {
        float x = dot < -7.99f ? -7.99f : dot > 7.99f ? 7.99f : dot;
        float pos = (x + 8) * 2; /* 33 buckets over -8 ..= 8 */
        int j = (int)pos;
        float f = pos - (float)j;
        float *a = s->apm[set];
        float pa = a[j] * (1 - f) + a[j + 1] * f;
        a[j] += s->apm_rate * (1 - f) * ((float)bit - a[j]);
        a[j + 1] += s->apm_rate * f * ((float)bit - a[j + 1]);
        pf = 0.25f * p + 0.75f * pa;
    }
    int q = (int)(pf * 4096.0f + 0.5f);
    q = q < 1 ? 1 : q > 4095 ? 4095 : q;
    account(s, (uint32_t)q, bit);
    s->n = 0;
}

static inline void add_in(lab *s, float x)
{
    s->in[s->n++] = x;
}

/* One binary decision from counters a[ia] and b[ib], plus the extra counters the flags give
 * (x2d[i2], xgeo[ig]: SIZE_MAX for none); all of them updated with the bit. */
static inline void decide(lab *s, int kind, int sub, uint32_t *a, size_t ia, uint32_t *b, size_t ib, size_t i2,
                          size_t ig, int bit)
{
    s->part = kind == K_MATCH ? 0 : kind < K_ESC0 ? 2 : 3;
    if (s->flags & LAB_MIX) {
        add_in(s, st22(a[ia]));
        add_in(s, st22(b[ib]));
        if (i2 != SIZE_MAX)
            add_in(s, st22(s->x2d[i2]));
        if (ig != SIZE_MAX)
            add_in(s, st22(s->xgeo[ig]));
        if (s->ih != SIZE_MAX)
            add_in(s, st22(s->xh[s->ih]));
        add_in(s, 0.3f);
        mix_code(s, kind, sub, bit);
    } else {
        account(s, kmc_cm_p12_mean(a, ia, b, ib), bit);
    }
    a[ia] = lab_updated(a[ia], bit);
    b[ib] = lab_updated(b[ib], bit);
    if (i2 != SIZE_MAX)
        s->x2d[i2] = lab_updated(s->x2d[i2], bit);
    if (ig != SIZE_MAX)
        s->xgeo[ig] = lab_updated(s->xgeo[ig], bit);
    if (s->ih != SIZE_MAX)
        s->xh[s->ih] = lab_updated(s->xh[s->ih], bit);
    s->ih = SIZE_MAX;
}

/* The flat decision: one counter. */
static inline void decide1(lab *s, uint32_t *a, size_t ia, size_t i2, size_t ig, int sub, int bit)
{
    s->part = 1;
    if (s->flags & LAB_MIX) {
        add_in(s, st22(a[ia]));
        if (i2 != SIZE_MAX)
            add_in(s, st22(s->x2d[i2]));
        if (ig != SIZE_MAX)
            add_in(s, st22(s->xgeo[ig]));
        add_in(s, 0.3f);
        mix_code(s, K_FLAT, sub, bit);
    } else {
        account(s, kmc_cm_p12(kmc_cm_p22(a, ia)), bit);
    }
    a[ia] = lab_updated(a[ia], bit);
    if (i2 != SIZE_MAX)
        s->x2d[i2] = lab_updated(s->x2d[i2], bit);
    if (ig != SIZE_MAX)
        s->xgeo[ig] = lab_updated(s->xgeo[ig], bit);
}

static inline size_t hx(uint32_t key)
{
    return kmc_cm_hash(key, 16);
}

/* 2-D context of a decision whose answer "is label c" (c < 0: no such answer), kind *kind*. */
static inline size_t ctx2d(const lab *s, int kind, int64_t c)
{
    if (s->P2 < 0)
        return hx((uint32_t)kind << 8 | 255);
    int runq = s->run < 2 ? s->run : s->run < 8 ? 2 : 3;
    return hx((uint32_t)(kind << 8 | s->score << 4 | runq << 2 | (c == s->P2)) + 0x1000000u);
}

/* The distance bucket (0 ..= 3) of two palette entries. */
static inline int dist_q(const uint8_t *pal, int64_t a, int64_t b)
{
    int d = abs(pal[3 * a] - pal[3 * b]) + abs(pal[3 * a + 1] - pal[3 * b + 1]) + abs(pal[3 * a + 2] - pal[3 * b + 2]);
    return d == 0 ? 0 : d < 24 ? 1 : d < 96 ? 2 : 3;
}


static double now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

/* The ideal code length in bits of the strip in the padded *L* (cm_model.h's layout) of palette
 * size *k* (2 ..= 65536), cm or with *match* cmm, under the variants *flags*.  *pal* (k x 3 RGB)
 * and *glut* (32^3 entries: the palette entry nearest to each 8-level-step colour) serve LAB_GEO;
 * *nbr* (k x k: row e is the palette by distance from entry e, e first) serves LAB_RANK.
 * Returns -1 when out of memory. */
double lab_bits(const uint16_t *L, int64_t h, int64_t w, int64_t k, int match, unsigned flags, const uint8_t *pal,
                const uint16_t *glut, const uint16_t *nbr, float lr, double *ns, double parts[4])
{
    static int ready = 0;
    if (!ready) {
        lab_tables();
        ready = 1;
    }
    kmc_cm_model m;
    if (kmc_cm_model_init(&m, k, h * w, w, match, 0) < 0)
        return -1;
    lab *s = calloc(1, sizeof *s);
    if (s == NULL) {
        kmc_cm_model_free(&m);
        return -1;
    }
    s->flags = flags;
    s->ih = SIZE_MAX;
    lab_limit = (int)(flags >> 16) & 1023;
    s->lr = lr;
    s->apm_rate = 0.02f;
    for (int i = 0; i < K_KINDS * 4; i++) {
        s->w[i][0] = s->w[i][1] = 0.5f;
        for (int j = 0; j < 33; j++)
            s->apm[i][j] = squash((float)(j - 16) / 2);
    }
    const int bits = m.bits;
    const size_t g_size = (size_t)k << bits;
    s->x2d = malloc(X_SIZE * sizeof(uint32_t));
    s->xgeo = malloc(X_SIZE * sizeof(uint32_t));
    s->esc_g = malloc(g_size * sizeof(uint32_t));
    s->d2 = malloc(X_SIZE * sizeof(uint32_t));
    s->rk = malloc(X_SIZE * sizeof(uint32_t));
    const size_t xh_size = flags & LAB_ESC2 ? (size_t)1 << XH_BITS : 1;
    s->xh = malloc(xh_size * sizeof(uint32_t));
    for (int i = 0; i < OFFSETS; i++)
        s->off[i] = 0;
    s->flat = malloc((size_t)(h * w) * sizeof(uint16_t));
    const int t2_bits = kmc_cm_match_table_bits(h * w);
    s->t2 = malloc(((size_t)1 << t2_bits) * sizeof(int32_t));
    if (s->x2d == NULL || s->xgeo == NULL || s->esc_g == NULL || s->d2 == NULL || s->rk == NULL || s->xh == NULL || s->flat == NULL || s->t2 == NULL) {
        free(s->x2d);
        free(s->xgeo);
        free(s->esc_g);
        free(s->d2);
        free(s->rk);
        free(s->xh);
        free(s->flat);
        free(s->t2);
        free(s);
        kmc_cm_model_free(&m);
        return -1;
    }
    memset(s->t2, 0xFF, ((size_t)1 << t2_bits) * sizeof(int32_t));
    for (size_t i = 0; i < X_SIZE; i++)
        s->x2d[i] = s->xgeo[i] = s->d2[i] = s->rk[i] = KMC_CM_COUNTER_INIT;
    for (size_t i = 0; i < g_size; i++)
        s->esc_g[i] = KMC_CM_COUNTER_INIT;
    for (size_t i = 0; i < xh_size; i++)
        s->xh[i] = KMC_CM_COUNTER_INIT;

    const int use2d = (flags & (LAB_2D | LAB_2D_DEC)) != 0, in2d = (flags & LAB_2D) != 0;
    const int esc2 = (flags & LAB_ESC2) && (flags & LAB_MIX);
    const int rank = (flags & LAB_RANK) != 0;
    const int dec2d = (flags & LAB_2D_DEC) != 0, geo = (flags & LAB_GEO) != 0;

    const double t0 = now_ns();
    const int64_t stride = w + 3;
    const int64_t top = kmc_cm_escape_top(k, bits);
    int64_t mp = -1, my = 0, mx = 0, ml = 0;
    for (int64_t y = 0; y < h; y++) {
        const uint16_t *row = L + (y + 2) * stride;
        uint64_t *const above = m.above;
        kmc_cm_nb nb = kmc_cm_nb_start(above, y, y ? row[2 - stride] : 0);
        for (int64_t x = 0; x < w; x++) {
            const int64_t v = row[x + 2];
            const int64_t pos = y * w + x;
#define at(p) ((int64_t)s->flat[(p)])
            int64_t label = -1, state = 0;
            const int64_t pat = kmc_cm_pattern(&nb);
            const int flat = kmc_cm_is_flat(pat);
            int64_t M = -1, lq = 0;
            /* 2-D match: the offset under which most of W, N, NW, NE agree */
            s->P2 = -1;
            const uint32_t key2 = use2d && !flat ? kmc_cm_match_key(nb.W, nb.N, nb.NW, nb.NE, nb.WW, nb.NN) : 0;
            if (use2d && y > 0 && x > 0 && x + 1 < w) {
                int best = -1, bi = 0;
                for (int i = 0; i < OFFSETS; i++) {
                    const int64_t o = s->off[i];
                    if (o < 2 || pos - o - w - 1 < 0)
                        continue; /* W's offset is W itself; all four counterparts coded */
                    int sc = (at(pos - 1 - o) == nb.W) + (at(pos - w - o) == nb.N) +
                             (at(pos - w - 1 - o) == nb.NW) +
                             (at(pos - w + 1 - o) == nb.NE);
                    if (sc > best) {
                        best = sc;
                        bi = i;
                    }
                }
                if (best >= 0) {
                    if (bi != 0) { /* move to front; the run restarts */
                        int64_t o = s->off[bi];
                        memmove(s->off + 1, s->off, (size_t)bi * sizeof s->off[0]);
                        s->off[0] = o;
                        s->run = 0;
                    }
                    s->P2 = at(pos - s->off[0]);
                    s->score = best;
                }
            }
            int dwn = geo ? dist_q(pal, nb.W, nb.N) : 0;
            if (match) {
                if (!flat) {
                    uint32_t slot = kmc_cm_match_key(nb.W, nb.N, nb.NW, nb.NE, nb.WW, nb.NN) >> (32 - m.t_bits);
                    if (mp < 0) {
                        mp = m.m_pos[slot];
                        ml = 0;
                        if (mp >= 0) {
                            my = mp / w;
                            mx = mp - my * w;
                        }
                    }
                    m.m_pos[slot] = (int32_t)pos;
                }
                if (mp >= 0)
                    M = L[(my + 2) * stride + mx + 2];
                lq = ml < KMC_CM_MATCH_LEVELS - 1 ? ml : KMC_CM_MATCH_LEVELS - 1;
                if (M >= 0 && !(flat && M == nb.W)) {
                    size_t ia = kmc_cm_match_index_a(lq, &nb, M, flat);
                    size_t ib = kmc_cm_match_index_b(lq, &nb, M);
                    int bit = v == M;
                    decide(s, K_MATCH, (int)nb.s_w, m.m_a, ia, m.m_b, ib, in2d ? ctx2d(s, K_MATCH, M) : SIZE_MAX,
                           SIZE_MAX, bit);
                    if (bit) {
                        label = M;
                        state = 3;
                    }
                }
            }
            int64_t X = -1; /* the 2-D prediction, refused */
            const int gate = flags & LAB_2D_STRICT ? s->score == 4 && s->run >= 1 : s->score >= 3;
            if (dec2d && label < 0 && s->P2 >= 0 && gate && s->P2 != M && !(flat && s->P2 == nb.W)) {
                const int64_t P2 = s->P2;
                const int runq = s->run < 2 ? s->run : s->run < 8 ? 2 : 3;
                const size_t ia = (size_t)((s->score - 3) << 6 | runq << 4 | flat << 3 | (P2 == nb.W) << 2 |
                                           (P2 == nb.N) << 1 | (M >= 0));
                const size_t ib = 128 + hx((uint32_t)(P2 << 8 | (s->score - 3) << 4 | runq << 2 | (int)nb.s_w)) %
                                            (X_SIZE - 128);
                const int bit = v == P2;
                decide(s, K_MATCH, 2 + (s->score - 3), s->d2, ia, s->d2, ib, SIZE_MAX, SIZE_MAX, bit);
                if (bit) {
                    label = P2;
                    state = 3;
                } else {
                    X = P2;
                }
            }
            if (label >= 0) {
            } else if (flat && X == nb.W) {
                /* W refused already: the escape codes it */
            } else if (flat) {
                int64_t ctx = kmc_cm_flat_ctx(pat);
                if (match)
                    ctx = kmc_cm_match_flat_ctx(ctx, lq, M, &nb);
                int bit = v == nb.W;
                decide1(s, m.flat, (size_t)ctx, in2d ? ctx2d(s, K_FLAT, nb.W) : SIZE_MAX,
                        geo ? hx((uint32_t)(ctx << 2 | dist_q(pal, nb.W, nb.NN)) + 77u) : SIZE_MAX, (int)nb.s_w, bit);
                if (bit)
                    label = nb.W;
            } else {
                const uint32_t key_b = kmc_cm_key_b(m.pair_flags, &nb, pat);
                int64_t cand[4];
                const int nc = kmc_cm_candidates(&nb, pat, match, M, cand);
                int64_t j = 0;
                for (int c = 0; c < nc; c++) {
                    if (cand[c] == X)
                        continue;
                    cand[j] = cand[c];
                    const size_t ia = kmc_cm_cand_index_a(j, pat, cand[j]);
                    const size_t ib = kmc_cm_cand_index_b(m.pair_flags, key_b, j, pat);
                    const int bit = v == cand[j];
                    size_t ig = SIZE_MAX;
                    if (geo)
                        ig = hx((uint32_t)(j << 20 | (pat & 31) << 8 | dwn << 4 | dist_q(pal, cand[j], nb.W) << 2 |
                                           (j > 0 ? dist_q(pal, cand[j], cand[0]) : 0)) +
                                0x2000000u);
                    if (esc2) /* the candidate with W, N and whether it is WW or NN */
                        s->ih = kmc_cm_hash((uint32_t)(((((j << 2 | (cand[j] == nb.WW) << 1 | (cand[j] == nb.NN)) * k +
                                                          nb.W) *
                                                             k +
                                                         nb.N) *
                                                            k +
                                                        cand[j]) ^
                                                       0x27d4eb2du),
                                            XH_BITS);
                    decide(s, K_OFFER0 + (int)j, (int)nb.s_w, m.cand_a, ia, m.cand_b, ib,
                           in2d ? ctx2d(s, K_OFFER0 + (int)j, cand[j]) : SIZE_MAX, ig, bit);
                    j++;
                    if (bit) {
                        label = cand[j - 1];
                        break;
                    }
                }
                state = j > 1;
            }
            if (label < 0) { /* escape */
                size_t row_a, row_b;
                kmc_cm_escape_rows(&m, &nb, &row_a, &row_b);
                uint32_t *ea = m.esc_a + row_a, *eb = m.esc_b + row_b;
                int64_t G = -1;
                if (geo || rank) {
                    int c[3];
                    for (int i = 0; i < 3; i++) {
                        int g = pal[3 * nb.W + i] + pal[3 * nb.N + i] - pal[3 * nb.NW + i];
                        c[i] = (g < 0 ? 0 : g > 255 ? 255 : g) >> 3;
                    }
                    G = glut[(c[0] << 10) | (c[1] << 5) | c[2]];
                }
                uint32_t *eg = geo ? s->esc_g + ((size_t)G << bits) : NULL;
                int64_t node = 1;
                if (rank) {
                    const int64_t R = flags & LAB_RANK_W ? nb.W : G;
                    const uint16_t *list = nbr + (size_t)R * (size_t)k;
                    int64_t r = 0;
                    for (int64_t i = 0; list[i] != v; i++) {
                        const int64_t e = list[i];
                        r += !(e == nb.W || e == nb.N || e == nb.NW || e == nb.NE || e == M || e == X);
                    }
                    const int64_t r1 = r + 1;
                    int n = 0, nmax = 0;
                    while (r1 >> (n + 1))
                        n++;
                    while (k >> (nmax + 1))
                        nmax++;
                    const int ctx = dwn << 1 | (R == nb.W);
                    for (int i = 0; i < nmax; i++) { /* unary: is n above i? */
                        const int bit = n > i;
                        const size_t ib = 4096 + hx((uint32_t)(i << 20 | (int)nb.W << 4 | ctx)) % (X_SIZE - 4096);
                        decide(s, K_ESC0 + (i < 7 ? i : 7), dwn, s->rk, (size_t)(i << 4 | ctx), s->rk, ib, SIZE_MAX,
                               SIZE_MAX, bit);
                        if (!bit)
                            break;
                    }
                    for (int b = n - 1; b >= 0; b--) { /* the bits below the top one, most significant first */
                        const int bit = (int)((r1 >> b) & 1);
                        const int pos = n - 1 - b;
                        const int prefix = pos < 2 ? (int)((r1 >> (b + 1)) & ((1 << pos) - 1)) : 0;
                        const size_t ia = 512 + (size_t)(n << 6 | (pos < 7 ? pos : 7) << 3 | prefix << 1 | (R == nb.W));
                        const size_t ib = 4096 + hx((uint32_t)(n << 20 | pos << 16 | prefix << 12 | dwn) + 99u) %
                                                     (X_SIZE - 4096);
                        decide(s, K_ESC0 + 7, 0, s->rk, ia, s->rk, ib, SIZE_MAX, SIZE_MAX, bit);
                    }
                }
                for (int shift = bits - 1; !rank && shift >= 0; shift--) {
                    const int64_t child = node << 1;
                    if (kmc_cm_escape_skip(child, shift, top)) {
                        node = child;
                        continue;
                    }
                    const int bit = (int)((v >> shift) & 1);
                    const int depth = bits - 1 - shift;
                    const int kind = K_ESC0 + (depth < 7 ? depth : 7);
                    s->part = 3;
                    if (flags & LAB_MIX) {
                        add_in(s, st22(ea[node]));
                        add_in(s, st22(eb[node]));
                        size_t i2 = SIZE_MAX;
                        if (in2d) {
                            /* does P2 lie under this node, and which way does it go */
                            int64_t pnode = s->P2 >= 0 ? (s->P2 + ((int64_t)1 << bits)) >> (shift + 1) : -1;
                            int dir = pnode == node ? 1 + (int)((s->P2 >> shift) & 1) : 0;
                            int runq = s->run < 2 ? s->run : s->run < 8 ? 2 : 3;
                            i2 = hx((uint32_t)(depth << 8 | dir << 6 | s->score << 2 | runq) + 0x3000000u);
                            add_in(s, st22(s->x2d[i2]));
                        }
                        if (geo)
                            add_in(s, st22(eg[node]));
                        size_t h1 = 0, h2 = 0;
                        if (esc2) {
                            h1 = kmc_cm_hash((uint32_t)((nb.W * k + nb.N) << bits | node), XH_BITS);
                            h2 = kmc_cm_hash((uint32_t)((nb.N * k + nb.NE) << bits | node) ^ 0x5bd1e995u, XH_BITS);
                            add_in(s, st22(s->xh[h1]));
                            add_in(s, st22(s->xh[h2]));
                        }
                        add_in(s, 0.3f);
                        mix_code(s, kind, dwn, bit);
                        if (i2 != SIZE_MAX)
                            s->x2d[i2] = lab_updated(s->x2d[i2], bit);
                        if (esc2) {
                            s->xh[h1] = lab_updated(s->xh[h1], bit);
                            s->xh[h2] = lab_updated(s->xh[h2], bit);
                        }
                    } else {
                        account(s, kmc_cm_p12_of(ea[node], eb[node]), bit);
                    }
                    ea[node] = lab_updated(ea[node], bit);
                    eb[node] = lab_updated(eb[node], bit);
                    if (geo)
                        eg[node] = lab_updated(eg[node], bit);
                    node = child | bit;
                }
                label = v;
                state = 2;
            }
            s->flat[pos] = (uint16_t)label;
            kmc_cm_nb_next(&nb, above, y, x, label, state);
            if (match) {
                if (M >= 0 && label == M) {
                    ml++;
                    mp++;
                    if (++mx == w) {
                        mx = 0;
                        my++;
                    }
                } else {
                    mp = -1;
                }
            }
            if (use2d) {
                if (!flat) { /* a neighbourhood seen before whose label repeats: its offset joins, last */
                    uint32_t slot = key2 >> (32 - t2_bits);
                    int64_t q = s->t2[slot];
                    s->t2[slot] = (int32_t)pos;
                    if (q >= 0 && at(q) == label) {
                        int64_t o = pos - q;
                        int i = 0;
                        while (i < OFFSETS && s->off[i] != o)
                            i++;
                        if (i == OFFSETS)
                            s->off[OFFSETS - 1] = o;
                    }
                }
                if (s->P2 >= 0)
                    s->run = s->P2 == label ? s->run + 1 : 0;
                /* a left match that has run 8 labels long gives its offset to the 2-D model */
                if (match && ml == 8 && mp >= 0) {
                    int64_t o = pos + 1 - mp;
                    int i = 0;
                    while (i < OFFSETS - 1 && s->off[i] != o)
                        i++;
                    memmove(s->off + 1, s->off, (size_t)i * sizeof s->off[0]);
                    s->off[0] = o;
                    s->run = 0;
                }
            }
        }
        kmc_cm_row_last(&nb, above, w);
    }
#undef at
    *ns = now_ns() - t0;
    double result = s->bits;
    memcpy(parts, s->parts, sizeof s->parts);
    free(s->x2d);
    free(s->xgeo);
    free(s->esc_g);
    free(s->d2);
    free(s->rk);
    free(s->xh);
    free(s->t2);
    free(s->flat);
    free(s);
    kmc_cm_model_free(&m);
    return result;
}

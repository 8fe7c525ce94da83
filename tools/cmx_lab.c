/* Label coding lab, round 2 (issue 17): the cm model (or cm2d's) with an integer mixer and an APM
 * stage, in a real range coder, encoded, decoded, checked and timed against kmcodec's own decoder.
 *
 * tools/model_lab.c measured what mixing saves as ideal code lengths with a float mixer; this lab
 * asks what it costs at decode time once it is integer arithmetic in the range coder itself.  It
 * includes kmcodec/csrc/cm.c (the range coder and today's cm kernels) and cm_model.h (the model),
 * and walks a strip as method cm does, with every decision's probability from one of:
 *
 *   LAB_NULL        the mean of the two counters, as cm: the same bytes as cm (checked), so its
 *                   time is this lab's own overhead (no specialised escape walk, tables set up)
 *   LAB_APM         the mean, then an APM of 32 buckets without interpolation (one load), half
 *   LAB_APM_INTERP  the mean, then an APM of 33 buckets interpolated on the stretched mean, half
 *   LAB_MIX         a logistic mixer of the two counters and a bias (weights 16.16, one set per
 *                   decision kind), then the interpolated APM, half
 *   LAB_PAIRS       (with LAB_MIX) one more mixer input, a counter in a 2^h_bits table hashed on
 *                   label pairs: (W, WW, NN, flat context) for the flat decision, (W, N, NW, NE,
 *                   rank) for a candidate, (W, N, NE, tree node) for an escape bit
 *   LAB_NO_APM      (with LAB_MIX) no APM: the mixer's probability as it is
 *
 * and with LAB_CM2D the walk is method cm2d's (§10: the 2-D match decision, a refused P no
 * candidate), the comparison cm2d's own coder, and these more (all with LAB_MIX):
 *
 *   LAB_PAIRS       as above, and for the 2-D decision a counter hashed on (P, W, N, NE, score)
 *   LAB_PPAIR       one more input, a counter in a second 2^h_bits table hashed on the 2-D
 *                   prediction P (-1 for none, at any score): (P, W, flat context) for the flat
 *                   decision, (P, candidate, rank, W) for a candidate, (P, W, tree node) for an
 *                   escape bit, (P, NW, NE, run) for the 2-D decision
 *   LAB_PDIRECT     one more input from a small direct table (cached): for a candidate (rank,
 *                   candidate = P, score, run), for an escape bit (depth, where P's path goes:
 *                   off it, or its next bit, score), for the flat decision (P = W, P < 0, score,
 *                   flat context's sW); the 2-D decision has none
 *   LAB_FLAT_DIRECT the flat decision as cm2d codes it (its counter, no mixer, no pair input)
 *   LAB_2D_DIRECT   the 2-D decision as cm2d codes it (the mean of DA and DB)
 *   LAB_WIDE        (instead of LAB_PPAIR, in its table) a counter hashed on a wider neighbourhood:
 *                   W, N, NW, NE, WW, NN, NWW, NNE, with the flat context, the rank, the tree node
 *                   or P
 *   LAB_WIDER       (with LAB_WIDE) NNW and NEE in its key too
 *   LAB_CONF        (with LAB_WIDE) the weight set also by how often the wide counter was updated
 *                   (0, 1-2, 3-9, 10 or more times)
 *   LAB_ESC_DIRECT  the escape bits as cm2d codes them (no mixer, no pair input)
 *
 * stretch / squash: squash(d) = 4096 / (1 + e^(-d / 256)) interpolated between 33 points
 * (d = -2048, -1920, ..., 2048), stretch its inverse as a 4096-entry table.  Mixer update
 * w += x * err * lr >> 16 with err = (bit << 12) - p; APM buckets move by 1 / 2^rate.
 *
 * Built and driven by tools/cmx_lab.py; results in docs/label-coding-research.md.
 */
#include <time.h>

#include "cm.c"

#define LAB_NULL 0
#define LAB_APM 1
#define LAB_APM_INTERP 2
#define LAB_MIX 4
#define LAB_PAIRS 8
#define LAB_NO_APM 16
#define LAB_CM2D 32
#define LAB_PPAIR 64
#define LAB_PDIRECT 128
#define LAB_FLAT_DIRECT 256
#define LAB_2D_DIRECT 512
#define LAB_WIDE 1024
#define LAB_WIDER 2048
#define LAB_CONF 4096
#define LAB_ESC_DIRECT 8192

/* Counters of the LAB_PDIRECT table: 4 kinds x 256 */
#define PD_SIZE 1024
#define N_IN 6 /* mixer weights: counters a and b, pair, bias, P pair, P direct */

#define N_SETS 512
#define N_APM 256

typedef struct {
    int mode;
    int h_bits; /* slots (log2) of the pair table */
    int lr;   /* mixer learning rate (16 = about 0.004 in real units) */
    int rate; /* APM rate shift */
} lab_config;

typedef struct {
    int16_t st[4096];
    int16_t sq[4096];
    int32_t w[N_SETS][N_IN];
    uint16_t apm[N_APM][33];
    uint32_t *h;  /* LAB_PAIRS */
    uint32_t *hp; /* LAB_PPAIR or LAB_WIDE */
    uint32_t pd[PD_SIZE];
} lab_mixer;

static const int SQUASH_POINTS[33] = {1,    2,    4,    6,    10,   17,   27,   45,   74,   120,  194,
                                      311,  488,  747,  1102, 1546, 2048, 2550, 2994, 3349, 3608, 3785,
                                      3902, 3976, 4022, 4051, 4069, 4079, 4086, 4090, 4092, 4094, 4095};

static int squash(int d)
{
    if (d > 2047)
        d = 2047;
    if (d < -2047)
        d = -2047;
    const int w = d & 127, i = (d >> 7) + 16;
    return (SQUASH_POINTS[i] * (128 - w) + SQUASH_POINTS[i + 1] * w + 64) >> 7;
}

static int mixer_init(lab_mixer *m, const lab_config *cfg)
{
    int next = 0;
    for (int d = -2047; d <= 2047; d++) {
        const int v = squash(d);
        for (int j = next; j <= v; j++)
            m->st[j] = (int16_t)d;
        next = v + 1;
    }
    for (int j = next; j < 4096; j++)
        m->st[j] = 2047;
    for (int d = -2048; d < 2048; d++)
        m->sq[d + 2048] = (int16_t)squash(d);
    for (int s = 0; s < N_SETS; s++) {
        memset(m->w[s], 0, sizeof m->w[s]);
        m->w[s][0] = m->w[s][1] = 32768;
    }
    for (int j = 0; j < PD_SIZE; j++)
        m->pd[j] = KMC_CM_COUNTER_INIT;
    for (int j = 0; j < 33; j++)
        m->apm[0][j] = (cfg->mode & LAB_APM) ? (uint16_t)(((j << 7) + 64) << 4)
                                             : (uint16_t)(squash((j - 16) * 128) << 4);
    for (int a = 1; a < N_APM; a++)
        memcpy(m->apm[a], m->apm[0], sizeof m->apm[0]);
    m->h = m->hp = NULL;
    const size_t slots = (size_t)1 << cfg->h_bits;
    if (cfg->mode & LAB_PAIRS)
        m->h = malloc(slots * sizeof(uint32_t));
    if (cfg->mode & (LAB_PPAIR | LAB_WIDE))
        m->hp = malloc(slots * sizeof(uint32_t));
    if (((cfg->mode & LAB_PAIRS) && m->h == NULL) || ((cfg->mode & (LAB_PPAIR | LAB_WIDE)) && m->hp == NULL)) {
        free(m->h);
        free(m->hp);
        return -1;
    }
    for (size_t i = 0; m->h && i < slots; i++)
        m->h[i] = KMC_CM_COUNTER_INIT;
    for (size_t i = 0; m->hp && i < slots; i++)
        m->hp[i] = KMC_CM_COUNTER_INIT;
    return 0;
}

KMC_ALWAYS_INLINE uint32_t pair_key(uint32_t key, int64_t v)
{
    return (key ^ (uint32_t)v) * KMC_CM_GOLDEN + 0x7F4A7C15u;
}

KMC_ALWAYS_INLINE int lab_code(const int enc, const int flat, rc_range *r, rc_output *o, rc_code *d, rc_input *in,
                               uint32_t p, int bit)
{
    if (!flat)
        return code_bit(enc, r, o, d, in, p, bit);
    if (enc) {
        encode_bit_flat(r, o, p, bit);
        return bit;
    }
    return decode_bit_flat(d, in, p);
}

/* One decision with the counters a[ia] and b[ib] (and the pair counters h[ih], hp[ihp], pd[ipd]):
 * weight set s, APM row c; *coin* (escape bits) codes it without a branch on the bit, as cm's
 * escape does. */
KMC_ALWAYS_INLINE int lab_bit(const int enc, const int coin, rc_range *r, rc_output *o, rc_code *d, rc_input *in,
                              lab_mixer *m, const lab_config *cfg, uint32_t *a, size_t ia, uint32_t *b, size_t ib,
                              size_t ih, size_t ihp, size_t ipd, int s, int c, int bit, const int mode)
{
    const uint32_t ea = a[ia], eb = b[ib];
    int p;
    if (mode == LAB_NULL) {
        bit = lab_code(enc, coin, r, o, d, in, kmc_cm_p12_of(ea, eb), bit);
    } else if (mode == LAB_APM) {
        const int pm = (int)kmc_cm_p12_of(ea, eb);
        uint16_t *t = m->apm[c] + (pm >> 7);
        p = (pm + (*t >> 4)) >> 1;
        bit = lab_code(enc, coin, r, o, d, in, (uint32_t)(p < 1 ? 1 : p), bit);
        *t += ((bit << 16) - *t) >> cfg->rate;
    } else {
        const int pairs = (mode & LAB_PAIRS) != 0, pdir = (mode & LAB_PDIRECT) != 0;
        const int ppair = (mode & (LAB_PPAIR | LAB_WIDE)) != 0; /* the second table's input */
        const uint32_t eh = pairs ? m->h[ih] : 0, ehp = ppair ? m->hp[ihp] : 0, epd = pdir ? m->pd[ipd] : 0;
        int pm, dot;
        int x0 = 0, x1 = 0, x2 = 0, x4 = 0, x5 = 0;
        if (mode & LAB_CONF) {
            const uint32_t n = ehp & 1023;
            s = s * 4 + (n == 0 ? 0 : n < 3 ? 1 : n < 10 ? 2 : 3);
        }
        int32_t *w = m->w[s];
        if (mode & LAB_MIX) {
            x0 = m->st[kmc_cm_p12(ea >> 10)];
            x1 = m->st[kmc_cm_p12(eb >> 10)];
            x2 = pairs ? m->st[kmc_cm_p12(eh >> 10)] : 0;
            x4 = ppair ? m->st[kmc_cm_p12(ehp >> 10)] : 0;
            x5 = pdir ? m->st[kmc_cm_p12(epd >> 10)] : 0;
            int64_t acc = (int64_t)w[0] * x0 + (int64_t)w[1] * x1 + (int64_t)w[2] * x2 + (int64_t)w[3] * 256;
            if (ppair)
                acc += (int64_t)w[4] * x4;
            if (pdir)
                acc += (int64_t)w[5] * x5;
            dot = (int)(acc >> 16);
            dot = dot > 2047 ? 2047 : dot < -2047 ? -2047 : dot;
            pm = m->sq[dot + 2048];
        } else {
            pm = (int)kmc_cm_p12_of(ea, eb);
            dot = m->st[pm];
        }
        const int s2 = dot + 2048, lo = s2 >> 7, f = s2 & 127;
        uint16_t *t = m->apm[c];
        if (mode & LAB_NO_APM) {
            p = pm;
        } else {
            const int pa = (t[lo] * (128 - f) + t[lo + 1] * f) >> 11;
            p = (pm + pa) >> 1;
        }
        p = p < 1 ? 1 : p > 4095 ? 4095 : p;
        bit = lab_code(enc, coin, r, o, d, in, (uint32_t)p, bit);
        if (mode & LAB_MIX) {
            const int err = ((bit << 12) - pm) * cfg->lr;
            w[0] += (x0 * err) >> 16;
            w[1] += (x1 * err) >> 16;
            w[2] += (x2 * err) >> 16;
            w[3] += (256 * err) >> 16;
            if (ppair)
                w[4] += (x4 * err) >> 16;
            if (pdir)
                w[5] += (x5 * err) >> 16;
        }
        if (!(mode & LAB_NO_APM)) {
            uint16_t *nearer = t + lo + (f >> 6); /* the nearer bucket, without a branch on a coin flip */
            *nearer += ((bit << 16) - *nearer) >> cfg->rate;
        }
        if (pairs)
            m->h[ih] = kmc_cm_updated(eh, bit);
        if (ppair)
            m->hp[ihp] = kmc_cm_updated(ehp, bit);
        if (pdir)
            m->pd[ipd] = kmc_cm_updated(epd, bit);
    }
    a[ia] = kmc_cm_updated(ea, bit);
    if (b != a || ib != ia)
        b[ib] = kmc_cm_updated(eb, bit);
    return bit;
}

/* With LAB_CM2D: ask for the slots of the pair and wide inputs at hashes *x* and *y* before they are
 * needed, so that their loads run beside the decisions before them (they miss the cache in a 2^18
 * table): the next candidate's, both children's in the escape tree.  The cm variants keep section
 * e's walk. */
KMC_ALWAYS_INLINE void lab_prefetch(const lab_mixer *m, int hb, uint32_t x, uint32_t y, const int mode)
{
    if (!(mode & LAB_CM2D))
        return;
    if (mode & LAB_PAIRS)
        KMC_PREFETCH(m->h + kmc_cm_hash(x, hb));
    if (mode & LAB_WIDE)
        KMC_PREFETCH(m->hp + kmc_cm_hash(y, hb));
}

/* The 2-D prediction as a key: P, or all ones for none. */
KMC_ALWAYS_INLINE uint32_t p_key(const kmc_cm_2d *t)
{
    return t->P >= 0 ? (uint32_t)t->P : 0xFFFFFFFFu;
}

/* The score as a 3-bit field of the LAB_PDIRECT index: 0 ..= 4, or 5 for no prediction. */
KMC_ALWAYS_INLINE size_t pd_score(const kmc_cm_2d *t)
{
    return t->P >= 0 ? (size_t)t->score : 5;
}

/* Method cm's walk (§5), or with LAB_CM2D in *mode* method cm2d's (§10), with lab_bit for every
 * decision.  Returns the bytes written (encoder) or read (decoder), or KMC_CM_NO_MEMORY. */
KMC_ALWAYS_INLINE int64_t lab_walk(const uint16_t *L, uint16_t *dst, int64_t h, int64_t w, int64_t k, const int enc,
                                   const int pair_flags, const lab_config *cfg, uint8_t *out, int64_t cap,
                                   const uint8_t *data, int64_t n, const int mode)
{
    const int twod = (mode & LAB_CM2D) != 0;
    /* lab_bit's mode for most decisions, for the flat one, for the 2-D one */
    const int bm = mode & ~(LAB_CM2D | LAB_FLAT_DIRECT | LAB_2D_DIRECT | LAB_ESC_DIRECT);
    const int fm = (mode & LAB_FLAT_DIRECT) ? LAB_NULL : bm;
    const int dm = (mode & LAB_2D_DIRECT) ? LAB_NULL : bm;
    const int em = (mode & LAB_ESC_DIRECT) ? LAB_NULL : bm;
    kmc_cm_model m;
    if (kmc_cm_model_init(&m, k, h * w, w, 0, twod) < 0)
        return KMC_CM_NO_MEMORY;
    lab_mixer *mx = malloc(sizeof *mx);
    if (mx == NULL || mixer_init(mx, cfg) < 0) {
        free(mx);
        kmc_cm_model_free(&m);
        return KMC_CM_NO_MEMORY;
    }
    const int bits = m.bits, hb = cfg->h_bits;
    const int64_t stride = w + 3, top = kmc_cm_escape_top(k, bits);
    kmc_cm_2d t2; /* §10.1 */
    kmc_cm_2d_init(&t2);
    rc_range e = {0, 0xFFFFFFFFu};
    rc_output o = {0, 0, 0, out, cap};
    rc_input in = {0, data, n};
    rc_code d = enc ? (rc_code){0xFFFFFFFFu, 0} : decoder_start(&in);
    for (int64_t y = 0; y < h; y++) {
        const uint16_t *row = L + (y + 2) * stride;
        uint16_t *out_row = enc ? NULL : dst + (y + 2) * stride;
        kmc_cm_nb nb = kmc_cm_nb_start(m.above, y, y ? row[2 - stride] : 0);
        for (int64_t x = 0; x < w; x++) {
            const int64_t v = enc ? row[x + 2] : 0;
            int64_t label = -1, state = 0;
            const int64_t pat = kmc_cm_pattern(&nb);
            const int flat = kmc_cm_is_flat(pat);
            const int64_t i = y * w + x;
            int64_t q = -1, X = -1; /* §10.2 what T held at the pixel's slot; §10.3 the refused P */
            uint32_t wide = 0;           /* LAB_WIDE's key */
            if (mode & LAB_WIDE) {
                const int64_t nww = y >= 1 && x >= 2 ? m.lin[i - w - 2] : -1;
                const int64_t nne = y >= 2 && x + 1 < w ? m.lin[i - 2 * w + 1] : -1;
                wide = pair_key(pair_key(pair_key(pair_key(9, nb.N), nb.NW), nb.NE), nb.WW);
                wide = pair_key(pair_key(pair_key(wide, nb.NN), nww), nne);
                if (mode & LAB_WIDER) {
                    const int64_t nnw = y >= 2 && x >= 1 ? m.lin[i - 2 * w - 1] : -1;
                    const int64_t nee = y >= 1 && x + 2 < w ? m.lin[i - w + 2] : -1;
                    wide = pair_key(pair_key(wide, nnw), nee);
                }
                wide = pair_key(wide, nb.W); /* the label just coded last: one multiply on the critical path */
            }
            const int64_t ctx = kmc_cm_flat_ctx(pat);
            /* the pair keys; with LAB_CM2D with W last, as the wide key (the cm variants keep section e's) */
            const uint32_t hf = (twod ? pair_key(pair_key(pair_key(1, nb.WW), nb.NN), nb.W)
                                      : pair_key(pair_key(pair_key(1, nb.W), nb.WW), nb.NN)) ^
                                (uint32_t)ctx;
            const uint32_t hn = twod ? pair_key(pair_key(pair_key(pair_key(2, nb.N), nb.NW), nb.NE), nb.W)
                                     : pair_key(pair_key(pair_key(pair_key(2, nb.W), nb.N), nb.NW), nb.NE);
            if (!flat || !(mode & LAB_FLAT_DIRECT)) /* the first decision after the 2-D one */
                lab_prefetch(mx, hb, flat ? hf : hn, flat ? wide ^ (uint32_t)ctx : wide + 1, mode);
            if (twod) { /* §10.2 */
                q = kmc_cm_2d_begin(&t2, &m, &nb, i, y, x, w, flat);
                if (kmc_cm_2d_decides(&t2, &nb, flat)) { /* §10.3 */
                    const size_t ia = kmc_cm_2d_index_a(&t2, &nb, flat), ib = kmc_cm_2d_index_b(&t2, &nb);
                    const int64_t sc = t2.score - 3, rq = kmc_cm_2d_runq(&t2);
                    const uint32_t hd =
                        pair_key(pair_key(pair_key(pair_key(4, t2.P), nb.W), nb.N), nb.NE) + (uint32_t)sc;
                    const uint32_t hp = (mode & LAB_WIDE)
                                            ? pair_key(wide, t2.P)
                                            : pair_key(pair_key(pair_key(8, t2.P), nb.NW), nb.NE) + (uint32_t)rq;
                    if (lab_bit(enc, 0, &e, &o, &d, &in, mx, cfg, m.d_a, ia, m.d_b, ib, kmc_cm_hash(hd, hb),
                                kmc_cm_hash(hp, hb), 0, 96 + (int)((sc << 3) | (rq << 1) | flat), 0, v == t2.P, dm)) {
                        label = t2.P;
                        state = 3;
                    } else {
                        X = t2.P;
                    }
                }
            }
            if (label >= 0) {
                /* §10.3: the 2-D decision coded it */
            } else if (flat) {
                const uint32_t hp = (mode & LAB_WIDE) ? wide ^ (uint32_t)ctx
                                                      : pair_key(pair_key(pair_key(5, p_key(&t2)), nb.W), (int64_t)ctx);
                const size_t ipd = t2.P < 0 ? 0
                                            : (size_t)128 | (size_t)(t2.P == nb.W) << 6 | pd_score(&t2) << 3 |
                                                  (size_t)kmc_cm_2d_runq(&t2) << 1 | (size_t)(ctx & 1);
                if (lab_bit(enc, 0, &e, &o, &d, &in, mx, cfg, m.flat, (size_t)ctx, m.flat, (size_t)ctx,
                            kmc_cm_hash(hf, hb), kmc_cm_hash(hp, hb), ipd, (int)ctx, (int)ctx, v == nb.W, fm))
                    label = nb.W;
            } else {
                const uint32_t key_b = kmc_cm_key_b(pair_flags, &nb, pat);
                unsigned set = kmc_cm_candidate_set(&nb, pat, 0, -1);
                if (twod) /* §10.4: a refused P is no candidate */
                    set &= kmc_cm_2d_candidate_mask(&nb, X);
                int64_t cand[4];
                int nc = 0;
                if (set & 1)
                    cand[nc++] = nb.W;
                if (set & 2)
                    cand[nc++] = nb.N;
                if (set & 4)
                    cand[nc++] = nb.NW;
                if (set & 8)
                    cand[nc++] = nb.NE;
                const uint32_t hp = pair_key(pair_key(6, p_key(&t2)), nb.W);
                const size_t pd = 256 | pd_score(&t2) << 2 | (size_t)kmc_cm_2d_runq(&t2);
                int j;
                for (j = 0; j < nc; j++) {
                    const size_t ia = kmc_cm_cand_index_a(j, pat, cand[j]);
                    const size_t ib = kmc_cm_cand_index_b(pair_flags, key_b, j, pat);
                    const size_t ih = kmc_cm_hash(hn + (uint32_t)j, hb);
                    const size_t ihp = kmc_cm_hash((mode & LAB_WIDE) ? wide + (uint32_t)j + 1
                                                                     : pair_key(hp, cand[j]) + (uint32_t)j,
                                                   hb);
                    const size_t ipd = pd | (size_t)j << 6 | (size_t)(cand[j] == t2.P) << 5;
                    if (j + 1 < nc)
                        lab_prefetch(mx, hb, hn + (uint32_t)j + 1, wide + (uint32_t)j + 2, mode);
                    if (lab_bit(enc, 0, &e, &o, &d, &in, mx, cfg, m.cand_a, ia, m.cand_b, ib, ih, ihp, ipd,
                                64 + j * 4 + (int)nb.s_w, 64 + (int)((j << 4) | (pat >> 7)), v == cand[j], bm)) {
                        label = cand[j];
                        break;
                    }
                }
                state = label >= 0 && j >= 1;
            }
            if (label < 0) {
                size_t ra, rb;
                kmc_cm_escape_rows(&m, &nb, &ra, &rb);
                uint32_t *ea = m.esc_a + ra, *eb = m.esc_b + rb;
                const uint32_t he = twod ? pair_key(pair_key(pair_key(3, nb.N), nb.NE), nb.W)
                                         : pair_key(pair_key(pair_key(3, nb.W), nb.N), nb.NE);
                const uint32_t hp = (mode & LAB_WIDE) ? wide * 3 : pair_key(pair_key(7, p_key(&t2)), nb.W);
                const int64_t pnode = t2.P >= 0 ? t2.P + ((int64_t)1 << bits) : -1; /* P's leaf */
                int64_t node = 1;
                for (int shift = bits - 1; shift >= 0; shift--) {
                    const int64_t child = node << 1;
                    if (kmc_cm_escape_skip(child, shift, top)) {
                        node = child;
                        continue;
                    }
                    const int depth = bits - 1 - shift;
                    /* where P's path goes from here: 0 off it (or no P), 1 + its next bit */
                    const size_t where =
                        pnode >= 0 && (pnode >> (shift + 1)) == node ? 1 + (size_t)((pnode >> shift) & 1) : 0;
                    const size_t ipd = (size_t)512 | (size_t)(depth & 15) << 5 | where << 3 | pd_score(&t2);
                    const uint32_t nk = (uint32_t)node * KMC_CM_GOLDEN;
                    if (shift > 0 && !(mode & LAB_ESC_DIRECT)) {
                        const uint32_t c0 = (uint32_t)child * KMC_CM_GOLDEN, c1 = c0 + KMC_CM_GOLDEN;
                        lab_prefetch(mx, hb, he + c0, hp + c0, mode);
                        lab_prefetch(mx, hb, he + c1, hp + c1, mode);
                    }
                    const int bit = lab_bit(enc, 1, &e, &o, &d, &in, mx, cfg, ea, (size_t)node, eb, (size_t)node,
                                            kmc_cm_hash(he + nk, hb), kmc_cm_hash(hp + nk, hb), ipd, 80 + depth,
                                            128 + depth * 8 + (int)(node & 7), (int)((v >> shift) & 1), em);
                    node = child | bit;
                }
                label = node - ((int64_t)1 << bits);
                state = 2;
            }
            if (!enc)
                out_row[x + 2] = (uint16_t)label;
            if (twod)
                m.lin[i] = (uint16_t)label;
            kmc_cm_nb_next(&nb, m.above, y, x, label, state);
            if (twod) /* §10.5 */
                kmc_cm_2d_after(&t2, m.lin, i, label, q);
        }
        kmc_cm_row_last(&nb, m.above, w);
    }
    const int64_t result = enc ? encoder_finish(&e, &o) : in.pos;
    kmc_cm_model_free(&m);
    free(mx->h);
    free(mx->hp);
    free(mx);
    return result;
}

/* lab_walk with the mode a constant: each mode gets a kernel of its own, as the real ones do. */
static int64_t lab_strip(const uint16_t *L, uint16_t *dst, int64_t h, int64_t w, int64_t k, const int enc,
                         const int pair_flags, const lab_config *cfg, uint8_t *out, int64_t cap, const uint8_t *data,
                         int64_t n)
{
#define LAB_WALK(mode)                                                                                                 \
    (enc ? (pair_flags ? lab_walk(L, dst, h, w, k, 1, 1, cfg, out, cap, data, n, mode)                                \
                       : lab_walk(L, dst, h, w, k, 1, 0, cfg, out, cap, data, n, mode))                               \
         : (pair_flags ? lab_walk(L, dst, h, w, k, 0, 1, cfg, out, cap, data, n, mode)                                \
                       : lab_walk(L, dst, h, w, k, 0, 0, cfg, out, cap, data, n, mode)))
    switch (cfg->mode) {
    case LAB_NULL:
        return LAB_WALK(LAB_NULL);
    case LAB_CM2D:
        return LAB_WALK(LAB_CM2D);
#define CM2D_MIX (LAB_CM2D | LAB_MIX | LAB_NO_APM)
    case CM2D_MIX | LAB_WIDE | LAB_PDIRECT | LAB_FLAT_DIRECT: /* method cmx's model (spec §11) */
        return LAB_WALK(CM2D_MIX | LAB_WIDE | LAB_PDIRECT | LAB_FLAT_DIRECT);
#ifndef LAB_FEW /* the tests build these three only: every variant costs compile time */
    case LAB_APM:
        return LAB_WALK(LAB_APM);
    case LAB_APM_INTERP:
        return LAB_WALK(LAB_APM_INTERP);
    case LAB_MIX:
        return LAB_WALK(LAB_MIX);
    case LAB_MIX | LAB_NO_APM:
        return LAB_WALK(LAB_MIX | LAB_NO_APM);
    case LAB_MIX | LAB_PAIRS | LAB_NO_APM:
        return LAB_WALK(LAB_MIX | LAB_PAIRS | LAB_NO_APM);
    case LAB_MIX | LAB_PAIRS:
        return LAB_WALK(LAB_MIX | LAB_PAIRS);
    case CM2D_MIX:
        return LAB_WALK(CM2D_MIX);
    case CM2D_MIX | LAB_PAIRS:
        return LAB_WALK(CM2D_MIX | LAB_PAIRS);
    case CM2D_MIX | LAB_PAIRS | LAB_PPAIR:
        return LAB_WALK(CM2D_MIX | LAB_PAIRS | LAB_PPAIR);
    case CM2D_MIX | LAB_PAIRS | LAB_PDIRECT:
        return LAB_WALK(CM2D_MIX | LAB_PAIRS | LAB_PDIRECT);
    case CM2D_MIX | LAB_PAIRS | LAB_PPAIR | LAB_PDIRECT:
        return LAB_WALK(CM2D_MIX | LAB_PAIRS | LAB_PPAIR | LAB_PDIRECT);
    case CM2D_MIX | LAB_PAIRS | LAB_FLAT_DIRECT:
        return LAB_WALK(CM2D_MIX | LAB_PAIRS | LAB_FLAT_DIRECT);
    case CM2D_MIX | LAB_PAIRS | LAB_FLAT_DIRECT | LAB_2D_DIRECT:
        return LAB_WALK(CM2D_MIX | LAB_PAIRS | LAB_FLAT_DIRECT | LAB_2D_DIRECT);
    case CM2D_MIX | LAB_PAIRS | LAB_PDIRECT | LAB_FLAT_DIRECT:
        return LAB_WALK(CM2D_MIX | LAB_PAIRS | LAB_PDIRECT | LAB_FLAT_DIRECT);
    case CM2D_MIX | LAB_PAIRS | LAB_WIDE:
        return LAB_WALK(CM2D_MIX | LAB_PAIRS | LAB_WIDE);
    case CM2D_MIX | LAB_PAIRS | LAB_WIDE | LAB_PDIRECT:
        return LAB_WALK(CM2D_MIX | LAB_PAIRS | LAB_WIDE | LAB_PDIRECT);
    case CM2D_MIX | LAB_PAIRS | LAB_WIDE | LAB_PDIRECT | LAB_FLAT_DIRECT:
        return LAB_WALK(CM2D_MIX | LAB_PAIRS | LAB_WIDE | LAB_PDIRECT | LAB_FLAT_DIRECT);
    case CM2D_MIX | LAB_PAIRS | LAB_WIDE | LAB_PDIRECT | LAB_FLAT_DIRECT | LAB_CONF:
        return LAB_WALK(CM2D_MIX | LAB_PAIRS | LAB_WIDE | LAB_PDIRECT | LAB_FLAT_DIRECT | LAB_CONF);
    case CM2D_MIX | LAB_WIDE | LAB_PDIRECT | LAB_FLAT_DIRECT | LAB_CONF:
        return LAB_WALK(CM2D_MIX | LAB_WIDE | LAB_PDIRECT | LAB_FLAT_DIRECT | LAB_CONF);
    case CM2D_MIX | LAB_PAIRS | LAB_WIDE | LAB_PDIRECT | LAB_FLAT_DIRECT | LAB_ESC_DIRECT:
        return LAB_WALK(CM2D_MIX | LAB_PAIRS | LAB_WIDE | LAB_PDIRECT | LAB_FLAT_DIRECT | LAB_ESC_DIRECT);
    case CM2D_MIX | LAB_WIDE:
        return LAB_WALK(CM2D_MIX | LAB_WIDE);
    case CM2D_MIX | LAB_WIDE | LAB_PDIRECT:
        return LAB_WALK(CM2D_MIX | LAB_WIDE | LAB_PDIRECT);
    case CM2D_MIX | LAB_PAIRS | LAB_WIDE | LAB_WIDER | LAB_PDIRECT:
        return LAB_WALK(CM2D_MIX | LAB_PAIRS | LAB_WIDE | LAB_WIDER | LAB_PDIRECT);
#endif
#undef CM2D_MIX
    default:
        return KMC_CM_BAD_LABEL; /* a mode without a kernel: lab_run reports it */
    }
#undef LAB_WALK
}

static double thread_seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* Run one padded strip L ((h + 2) x (w + 3) uint16) with *mode*: encode with the base method (cm,
 * or cm2d with LAB_CM2D) and with the lab, decode both *repeat* times (alternating), check the lab's
 * decode.  Fills result[0..5]: base bytes, lab bytes, base decode seconds (best), lab decode seconds
 * (best), 1 if the lab decoded the labels exactly, 1 if the lab wrote the very bytes the base
 * method wrote.  Returns 0, or a KMC_CM_* error (KMC_CM_BAD_LABEL for a mode without a kernel). */
int lab_run(const uint16_t *L, int64_t h, int64_t w, int64_t k, int mode, int lr, int rate, int h_bits, int repeat,
            double *result)
{
    const lab_config cfg = {mode, h_bits, lr, rate};
    const int64_t stride = w + 3, cap = 2 * h * w * (5 + kmc_cm_bits(k)) + 64;
    uint8_t *base_buf = malloc((size_t)cap), *lab_buf = malloc((size_t)cap);
    uint16_t *D = calloc((size_t)((h + 2) * stride), sizeof(uint16_t));
    int64_t status = 0;
    if (base_buf == NULL || lab_buf == NULL || D == NULL) {
        status = KMC_CM_NO_MEMORY;
        goto done;
    }
    const int pf = kmc_cm_pair_flags(k);
    const int model = (mode & LAB_CM2D) ? KMC_CM_MODEL_CM2D : KMC_CM_MODEL_CM; /* the base method */
    const int64_t n_base = kmc_cm_encode(L, h, w, k, model, base_buf, cap);
    const int64_t n_lab = pf ? lab_strip(L, NULL, h, w, k, 1, 1, &cfg, lab_buf, cap, NULL, 0)
                             : lab_strip(L, NULL, h, w, k, 1, 0, &cfg, lab_buf, cap, NULL, 0);
    if (n_base < 0 || n_lab < 0) {
        status = n_base < 0 ? n_base : n_lab;
        goto done;
    }
    double best_base = 1e30, best_lab = 1e30;
    uint32_t code;
    for (int r = 0; r < repeat; r++) {
        const double t0 = thread_seconds();
        kmc_cm_decode(D, h, w, k, model, base_buf, n_base, &code);
        const double t1 = thread_seconds();
        if (pf)
            lab_strip(D, D, h, w, k, 0, 1, &cfg, NULL, 0, lab_buf, n_lab);
        else
            lab_strip(D, D, h, w, k, 0, 0, &cfg, NULL, 0, lab_buf, n_lab);
        const double t2 = thread_seconds();
        best_base = t1 - t0 < best_base ? t1 - t0 : best_base;
        best_lab = t2 - t1 < best_lab ? t2 - t1 : best_lab;
    }
    int exact = 1;
    for (int64_t y = 0; y < h && exact; y++)
        exact = memcmp(D + (y + 2) * stride + 2, L + (y + 2) * stride + 2, (size_t)w * sizeof(uint16_t)) == 0;
    result[0] = (double)n_base;
    result[1] = (double)n_lab;
    result[2] = best_base;
    result[3] = best_lab;
    result[4] = exact;
    result[5] = n_base == n_lab && memcmp(base_buf, lab_buf, (size_t)n_base) == 0;
done:
    free(base_buf);
    free(lab_buf);
    free(D);
    return (int)status;
}

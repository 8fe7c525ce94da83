/* The RDO labeller (rdo.h) over the cm coder's model, cm_model.h.
 *
 * label_strip() is always inlined into four specialisations: uint8 or uint16 labels, and with or
 * without the sum of the chosen labels' bits (*measure*).  Section numbers (§) are those of
 * spec/kmc-method-cm.md.  Floating point: the sums and the comparisons are the same operations in
 * the same order as the labeller always made them, so the labels chosen are the same everywhere.
 */
#include "rdo.h"

#include "cm_model.h"

KMC_ALWAYS_INLINE int64_t load_label(const void *labels, const int wide, int64_t i)
{
    return wide ? (int64_t)((const uint16_t *)labels)[i] : (int64_t)((const uint8_t *)labels)[i];
}

KMC_ALWAYS_INLINE void store_label(void *labels, const int wide, int64_t i, int64_t v)
{
    if (wide)
        ((uint16_t *)labels)[i] = (uint16_t)v;
    else
        ((uint8_t *)labels)[i] = (uint8_t)v;
}

/* The bits of a decision of 12-bit probability *p* of a 1 that comes out *bit*: cost[p] for a 1,
 * cost[4096 - p] for a 0, chosen without a branch (an escape's bits are coin flips). */
KMC_ALWAYS_INLINE double decision_bits(const double *cost, uint32_t p, int bit)
{
    const uint32_t one = 0u - (uint32_t)bit;
    return cost[(p & one) | ((4096 - p) & ~one)];
}

/* §5.5: walk the escape tree along *label*'s bits, most significant first.  With *price*, returns
 * *b* plus the bits the coder would spend on the walk, added one decision at a time (else *b*);
 * with *update*, moves the counters as the coder does.  A bit whose 1 branch holds only labels
 * >= k is 0 and not coded, so it is skipped. */
KMC_ALWAYS_INLINE double escape_walk(const kmc_cm_model *m, size_t row_a, size_t row_b, int64_t label,
                                     const double *cost, double b, const int price, const int update)
{
    const int64_t top = kmc_cm_escape_top(m->k, m->bits);
    int64_t node = 1;
    for (int shift = m->bits - 1; shift >= 0; shift--) {
        const int64_t child = node << 1;
        if (kmc_cm_escape_skip(child, shift, top)) {
            node = child;
            continue;
        }
        const int bit = (int)((label >> shift) & 1);
        if (price) {
            uint32_t p = kmc_cm_p12_mean(m->esc_a, row_a + (size_t)node, m->esc_b, row_b + (size_t)node);
            b += decision_bits(cost, p, bit);
        }
        if (update) {
            kmc_cm_update(m->esc_a, row_a + (size_t)node, bit);
            kmc_cm_update(m->esc_b, row_b + (size_t)node, bit);
        }
        node = child | bit;
    }
    return b;
}

KMC_ALWAYS_INLINE int64_t label_strip(const uint8_t *pix, int64_t h, int64_t w, int64_t channels,
                                      const uint8_t *palette, int64_t k, const void *near, void *out, const int wide,
                                      double lam, int64_t alpha, const double *cost, double ahead,
                                      const uint8_t *weight, const int measure, double *bits_out)
{
    for (int64_t i = 0; i < h * w; i++)
        if (load_label(near, wide, i) >= k)
            return KMC_RDO_BAD_LABEL;
    kmc_cm_model m;
    if (kmc_cm_model_init(&m, k, h * w, w, 0, 0) < 0)
        return KMC_RDO_NO_MEMORY;
    const int pair_flags = m.pair_flags;
    uint32_t *const flat_t = m.flat, *const cand_a = m.cand_a, *const cand_b = m.cand_b;
    int64_t cand[4];
    uint32_t cand_p[4];
    size_t cand_ia[4], cand_ib[4];
    int64_t opts[5];
    int64_t total = 0;
    double coded = 0.0;

    for (int64_t y = 0; y < h; y++) {
        uint64_t *const above = m.above;
        kmc_cm_nb nb = kmc_cm_nb_start(above, y, y ? load_label(out, wide, (y - 1) * w) : 0);
        for (int64_t x = 0; x < w; x++) {
            const int64_t i = y * w + x;
            const int64_t q = load_label(near, wide, i);
            const uint8_t *px = pix + i * channels;
            const int clear = alpha >= 0 && px[alpha] == 0;
            const double seen = weight != NULL ? (double)weight[i] : 1.0; /* how much its error counts */

            /* The choices: q first (it wins ties), then the distinct neighbours allowed. */
            opts[0] = q;
            int n_opts = 1;
            if (!clear) {
                const int q_clear = alpha >= 0 && palette[q * channels + alpha] == 0;
                const int64_t around[4] = {nb.W, nb.N, nb.NW, nb.NE};
                for (int a = 0; a < 4; a++) {
                    const int64_t o = around[a];
                    if (o == q || (alpha >= 0 && (palette[o * channels + alpha] == 0) != q_clear))
                        continue;
                    int dup = 0;
                    for (int j = 1; j < n_opts; j++)
                        dup = dup || opts[j] == o;
                    if (!dup)
                        opts[n_opts++] = o;
                }
            }

            const int64_t pat = kmc_cm_pattern(&nb);
            const int flat = kmc_cm_is_flat(pat);
            int64_t ctx = 0;
            uint32_t p_flat = 0;
            int nc = 0;
            if (flat) { /* §5.3 */
                ctx = kmc_cm_flat_ctx(pat);
                p_flat = kmc_cm_p12(kmc_cm_p22(flat_t, (size_t)ctx));
            } else { /* §5.4 */
                const uint32_t key_b = kmc_cm_key_b(pair_flags, &nb, pat);
                nc = kmc_cm_candidates(&nb, pat, 0, -1, cand);
                for (int j = 0; j < nc; j++) {
                    cand_ia[j] = kmc_cm_cand_index_a(j, pat, cand[j]);
                    cand_ib[j] = kmc_cm_cand_index_b(pair_flags, key_b, j, pat);
                    cand_p[j] = kmc_cm_p12_mean(cand_a, cand_ia[j], cand_b, cand_ib[j]);
                }
            }
            size_t row_a, row_b; /* §5.5 */
            kmc_cm_escape_rows(&m, &nb, &row_a, &row_b);

            int64_t best = q;
            double best_bits = 0.0;
            if (n_opts > 1 || measure) {
                double best_j = 0.0;
                for (int o_i = 0; o_i < n_opts; o_i++) {
                    const int64_t o = opts[o_i];
                    const uint8_t *entry = palette + o * channels;
                    int64_t d = 0;
                    for (int64_t ch = 0; ch < channels; ch++) {
                        const int64_t e = (clear ? 0 : (int64_t)px[ch]) - (int64_t)entry[ch];
                        d += e * e;
                    }
                    const double error = seen * (double)d;
                    if (!measure && o_i > 0 && error >= best_j)
                        continue; /* its bits cannot make up for its error: bits are >= 0 */
                    /* §5.3-§5.5: the bits the coder would spend on o, with the counters as they are */
                    double b = 0.0;
                    int escape = 1;
                    if (flat) {
                        if (o == nb.W) {
                            b = cost[p_flat];
                            escape = 0;
                        } else {
                            b = cost[4096 - p_flat];
                        }
                    } else {
                        for (int j = 0; j < nc; j++) {
                            if (cand[j] == o) {
                                b += cost[cand_p[j]];
                                escape = 0;
                                break;
                            }
                            b += cost[4096 - cand_p[j]];
                        }
                    }
                    if (escape)
                        b = escape_walk(&m, row_a, row_b, o, cost, b, 1, 0);
                    const double own = b;
                    /* The label is also the context of the pixels to the right and below:
                     * where their nearest entry differs, they will likely cost more. */
                    if (x + 1 < w && load_label(near, wide, i + 1) != o)
                        b += ahead;
                    if (y + 1 < h && load_label(near, wide, i + w) != o)
                        b += ahead;
                    const double j_cost = error + lam * b;
                    if (o_i == 0 || j_cost < best_j) {
                        best_j = j_cost;
                        best = o;
                        best_bits = own;
                    }
                }
            }

            /* The coder's updates for the label chosen (§5.3-§5.5). */
            const int64_t v = best;
            coded += best_bits;
            int64_t label = -1;
            int64_t state = 2;
            if (flat) {
                const int hit = v == nb.W;
                kmc_cm_update(flat_t, (size_t)ctx, hit);
                if (hit) {
                    label = v;
                    state = 0;
                }
            } else {
                for (int j = 0; j < nc; j++) {
                    const int hit = v == cand[j];
                    kmc_cm_update(cand_a, cand_ia[j], hit);
                    kmc_cm_update(cand_b, cand_ib[j], hit);
                    if (hit) {
                        label = v;
                        state = j ? 1 : 0;
                        break;
                    }
                }
            }
            if (label < 0)
                escape_walk(&m, row_a, row_b, v, cost, 0.0, 0, 1);
            const uint8_t *entry = palette + v * channels;
            int64_t d = 0;
            for (int64_t ch = 0; ch < channels; ch++) {
                const int64_t e = (clear ? 0 : (int64_t)px[ch]) - (int64_t)entry[ch];
                d += e * e;
            }
            total += d;
            store_label(out, wide, i, v);
            kmc_cm_nb_next(&nb, above, y, x, v, state);
        }
        kmc_cm_row_last(&nb, above, w);
    }
    kmc_cm_model_free(&m);
    if (measure)
        *bits_out = coded;
    return total;
}

int64_t kmc_rdo_label(const uint8_t *pix, int64_t h, int64_t w, int64_t channels, const uint8_t *palette, int64_t k,
                      const void *near, void *out, int wide, double lam, int64_t alpha, const double *cost,
                      double ahead, const uint8_t *weight, double *bits)
{
    if (wide) {
        if (bits != NULL)
            return label_strip(pix, h, w, channels, palette, k, near, out, 1, lam, alpha, cost, ahead, weight, 1, bits);
        return label_strip(pix, h, w, channels, palette, k, near, out, 1, lam, alpha, cost, ahead, weight, 0, NULL);
    }
    if (bits != NULL)
        return label_strip(pix, h, w, channels, palette, k, near, out, 0, lam, alpha, cost, ahead, weight, 1, bits);
    return label_strip(pix, h, w, channels, palette, k, near, out, 0, lam, alpha, cost, ahead, weight, 0, NULL);
}

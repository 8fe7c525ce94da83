/* Label coding methods cm and cmm: LZMA's binary range coder driven by the model of cm_model.h.
 *
 * One function, code_strip(), runs the model over a strip; with *enc* it encodes the labels it
 * reads, without it decodes the labels it writes; with *match* it is method cmm (the match model
 * of §9), without it method cm.  Both flags are constants at each of its four call sites and it
 * is always inlined, so the compiler builds four kernels, each with only the code its flags take.
 * Every choice the model makes depends only on labels already coded, so encoder and decoder
 * cannot drift apart.  Section numbers (§) are those of spec/kmc-method-cm.md.
 */
#include "cm.h"

#include "cm_model.h"

/* ---------------------------------------------------------------------------
 * §2.2 Encoder (LZMA's)
 * ------------------------------------------------------------------------- */
typedef struct {
    uint64_t low; /* 33 bits: a 32-bit number and a carry */
    uint32_t rng;
    uint32_t cache;
    int64_t pending; /* 0xFF bytes held back */
    int64_t pos;     /* bytes written (or that would have been: see put_byte) */
    uint8_t *out;
    int64_t cap;
} rc_encoder;

/* Write one byte; a write past *cap* is dropped (kmc_cm_encode then reports out of room). */
KMC_ALWAYS_INLINE void put_byte(rc_encoder *e, uint32_t byte)
{
    if (e->pos < e->cap)
        e->out[e->pos] = (uint8_t)byte;
    e->pos++;
}

static inline void shift_low(rc_encoder *e)
{
    if (e->low < 0xFF000000u || e->low >= 0x100000000u) {
        uint32_t carry = (uint32_t)(e->low >> 32);
        put_byte(e, e->cache + carry);
        for (; e->pending; e->pending--)
            put_byte(e, 0xFFu + carry);
        e->cache = (uint32_t)(e->low >> 24) & 0xFF;
    } else {
        e->pending++;
    }
    e->low = (e->low & 0x00FFFFFFu) << 8;
}

KMC_ALWAYS_INLINE void encode_bit(rc_encoder *e, uint32_t p, int bit)
{
    uint32_t bound = (e->rng >> 12) * p;
    if (bit) {
        e->rng = bound;
    } else {
        e->low += bound;
        e->rng -= bound;
    }
    while (e->rng < 0x1000000u) {
        e->rng <<= 8;
        shift_low(e);
    }
}

/* ---------------------------------------------------------------------------
 * §2.1 Decoder
 * ------------------------------------------------------------------------- */
typedef struct {
    uint32_t rng;
    uint32_t code;
    int64_t pos; /* index of the next byte; passes n when the data ran out */
    const uint8_t *data;
    int64_t n;
} rc_decoder;

/* The next byte, or 0 past the end (§2.1): reads never leave the buffer. */
KMC_ALWAYS_INLINE uint32_t next_byte(rc_decoder *d)
{
    uint32_t byte = d->pos < d->n ? d->data[d->pos] : 0;
    d->pos++;
    return byte;
}

KMC_ALWAYS_INLINE void normalize(rc_decoder *d)
{
    while (d->rng < 0x1000000u) {
        d->rng <<= 8;
        d->code = (d->code << 8) | next_byte(d); /* uint32_t: the mod 2^32 a corrupt stream needs */
    }
}

KMC_ALWAYS_INLINE int decode_bit(rc_decoder *d, uint32_t p)
{
    uint32_t bound = (d->rng >> 12) * p;
    int bit;
    if (d->code < bound) {
        d->rng = bound;
        bit = 1;
    } else {
        d->code -= bound;
        d->rng -= bound;
        bit = 0;
    }
    normalize(d);
    return bit;
}

/* decode_bit without a branch on the bit: for the escape tree, whose bits are coin flips. */
KMC_ALWAYS_INLINE int decode_bit_flat(rc_decoder *d, uint32_t p)
{
    uint32_t bound = (d->rng >> 12) * p;
    uint32_t bit = d->code < bound;
    uint32_t keep = 0u - bit; /* all ones on a 1 */
    d->code -= bound & ~keep;
    d->rng = (bound & keep) | ((d->rng - bound) & ~keep);
    normalize(d);
    return (int)bit;
}

/* One decision of probability *p*: the encoder codes *bit*, the decoder returns the bit it reads. */
KMC_ALWAYS_INLINE int code_bit(const int enc, rc_encoder *e, rc_decoder *d, uint32_t p, int bit)
{
    if (enc) {
        encode_bit(e, p, bit);
        return bit;
    }
    return decode_bit(d, p);
}

/* ---------------------------------------------------------------------------
 * §5 and §9: the model over one strip
 * ------------------------------------------------------------------------- */
/* Code the strip in the padded *L* (see cm.h): encode into out[0 .. cap) with *enc*, else decode
 * data[0 .. n) into L, setting *code_out*.  Returns what kmc_cm_encode / kmc_cm_decode return. */
KMC_ALWAYS_INLINE int64_t code_strip(uint16_t *L, int64_t h, int64_t w, int64_t k, const int enc, const int match,
                                     uint8_t *out, int64_t cap, const uint8_t *data, int64_t n, uint32_t *code_out)
{
    kmc_cm_model m;
    if (kmc_cm_model_init(&m, k, h * w, w, match) < 0)
        return KMC_CM_NO_MEMORY;
    const int bits = m.bits;
    const int pair_flags = m.pair_flags;
    uint32_t *const flat_t = m.flat;
    uint32_t *const cand_a = m.cand_a;
    uint32_t *const cand_b = m.cand_b;
    uint32_t *const esc_a = m.esc_a;
    uint32_t *const esc_b = m.esc_b;
    uint32_t *const m_a = m.m_a;
    uint32_t *const m_b = m.m_b;
    int32_t *const m_pos = m.m_pos;
    const int t_bits = m.t_bits;
    const int64_t stride = w + 3;
    int64_t cand[4];
    int64_t mp = -1; /* §9.1 match position, kept as row my and column mx too */
    int64_t my = 0, mx = 0, ml = 0;

    rc_encoder e = {0, 0xFFFFFFFFu, 0, 0, 0, out, cap};
    rc_decoder d = {0xFFFFFFFFu, 0, 0, data, n};
    if (!enc) { /* §2.1: the first five bytes */
        for (int i = 0; i < 5; i++)
            d.code = (d.code << 8) | next_byte(&d);
    }

    /* most bytes one row and the flush can add: two shift_low calls a decision (§2.2) */
    const int64_t row_bytes = 2 * w * (4 + (match ? 1 : 0) + bits) + 5;
    int64_t result = 0;
    for (int64_t y = 0; y < h; y++) {
        if (enc && e.pos + e.pending + row_bytes > cap) {
            result = KMC_CM_OUT_OF_ROOM; /* the caller retries with a bigger buffer */
            goto done;
        }
        kmc_cm_row_start(L, y, w);
        uint16_t *row = L + (y + 2) * stride;
        uint8_t *s_row = m.states + (y & 1) * w;
        const uint8_t *s_up = m.states + ((y + 1) & 1) * w;
        int64_t s_w = 0;
        for (int64_t x = 0; x < w; x++) {
            if (!enc && d.pos > n)
                goto done; /* §6: the bytes ran out, so the strip is truncated whatever follows */
            const kmc_cm_nb nb = kmc_cm_neighbours(row, w, y, x, s_up, s_w);
            const int64_t v = enc ? row[x + 2] : 0;
            int64_t label = -1;
            int64_t state = 0;
            const int flat = kmc_cm_is_flat(&nb);
            int64_t M = -1; /* §9.2 the predicted label, -1 for none */
            int64_t lq = 0;
            if (match) {
                if (!flat) {
                    uint32_t slot = kmc_cm_match_key(nb.W, nb.N, nb.NW, nb.NE, nb.WW, nb.NN) >> (32 - t_bits);
                    if (mp < 0) {
                        mp = m_pos[slot];
                        ml = 0;
                        if (mp >= 0) { /* one division per match found, none per pixel it runs */
                            my = mp / w;
                            mx = mp - my * w;
                        }
                    }
                    m_pos[slot] = (int32_t)(y * w + x);
                }
                if (mp >= 0)
                    M = L[(my + 2) * stride + mx + 2];
                lq = ml < KMC_CM_MATCH_LEVELS - 1 ? ml : KMC_CM_MATCH_LEVELS - 1;
                if (M >= 0 && !(flat && M == nb.W)) { /* §9.3 */
                    size_t ia = kmc_cm_match_index_a(lq, &nb, M, flat);
                    size_t ib = kmc_cm_match_index_b(lq, &nb, M);
                    int bit = code_bit(enc, &e, &d, kmc_cm_p12_mean(m_a, ia, m_b, ib), v == M);
                    kmc_cm_update(m_a, ia, bit);
                    kmc_cm_update(m_b, ib, bit);
                    if (bit) {
                        label = M;
                        state = 3;
                    }
                }
            }

            if (label >= 0) {
                /* §9.3: the match decision coded it */
            } else if (flat) { /* §5.3 flat neighbourhood: one decision, "label = W" */
                int64_t ctx = kmc_cm_flat_ctx(&nb);
                if (match)
                    ctx = kmc_cm_match_flat_ctx(ctx, lq, M, &nb);
                int bit = code_bit(enc, &e, &d, kmc_cm_p12(kmc_cm_p22(flat_t, (size_t)ctx)), v == nb.W);
                kmc_cm_update(flat_t, (size_t)ctx, bit);
                if (bit)
                    label = nb.W;
            } else { /* §5.4 candidates without repeats (nor M); one decision each until a hit */
                const int64_t pat = kmc_cm_pattern(&nb);
                const uint32_t key_b = kmc_cm_key_b(&m, &nb, pat);
                const int nc = kmc_cm_candidates(&nb, M, cand);
                for (int j = 0; j < nc; j++) {
                    const int64_t cj = cand[j];
                    const size_t ia = kmc_cm_cand_index_a(j, pat, cj);
                    const size_t ib = kmc_cm_cand_index_b(pair_flags, key_b, j, pat);
                    int bit = code_bit(enc, &e, &d, kmc_cm_p12_mean(cand_a, ia, cand_b, ib), v == cj);
                    kmc_cm_update(cand_a, ia, bit);
                    kmc_cm_update(cand_b, ib, bit);
                    if (bit) {
                        label = cj;
                        state = j ? 1 : 0;
                        break;
                    }
                }
            }

            if (label < 0) { /* §5.5 escape: the label's bits, most significant first */
                size_t row_a, row_b;
                kmc_cm_escape_rows(&m, &nb, &row_a, &row_b);
                int64_t node = 1;
                if (enc) {
                    for (int dd = 0; dd < bits; dd++) {
                        const int64_t child = node << 1;
                        if (kmc_cm_escape_skip(child, dd, bits, k)) {
                            node = child; /* every label under the 1 branch is >= k: the bit is 0, not coded */
                            continue;
                        }
                        const size_t ia = row_a + (size_t)node;
                        const size_t ib = row_b + (size_t)node;
                        const int bit = (int)((v >> (bits - 1 - dd)) & 1);
                        encode_bit(&e, kmc_cm_p12_mean(esc_a, ia, esc_b, ib), bit);
                        kmc_cm_update(esc_a, ia, bit);
                        kmc_cm_update(esc_b, ib, bit);
                        node = child | bit;
                    }
                } else {
                    /* The same walk, but each step also fetches both children's probabilities
                     * before its bit is known, so that the next step need not wait for the tables. */
                    uint32_t p = kmc_cm_p12_mean(esc_a, row_a + 1, esc_b, row_b + 1);
                    for (int dd = 0; dd < bits; dd++) {
                        const int64_t child = node << 1;
                        uint32_t p0 = 1, p1 = 1;
                        if (dd + 1 < bits) {
                            p0 = kmc_cm_p12_mean(esc_a, row_a + (size_t)child, esc_b, row_b + (size_t)child);
                            p1 = kmc_cm_p12_mean(esc_a, row_a + (size_t)child + 1, esc_b, row_b + (size_t)child + 1);
                        }
                        if (kmc_cm_escape_skip(child, dd, bits, k)) {
                            node = child;
                            p = p0;
                            continue;
                        }
                        const int bit = decode_bit_flat(&d, p);
                        kmc_cm_update(esc_a, row_a + (size_t)node, bit);
                        kmc_cm_update(esc_b, row_b + (size_t)node, bit);
                        node = child | bit;
                        p = bit ? p1 : p0;
                    }
                }
                label = node - ((int64_t)1 << bits);
                state = 2;
            }
            if (!enc)
                row[x + 2] = (uint16_t)label;
            s_w = state;
            s_row[x] = (uint8_t)state;
            if (match) { /* §9.5 */
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
        }
        kmc_cm_row_end(L, y, w);
    }

    if (enc) { /* §2.2 flush */
        for (int i = 0; i < 5; i++)
            shift_low(&e);
        result = e.pos <= cap ? e.pos : KMC_CM_OUT_OF_ROOM; /* the row check makes the latter impossible */
    }
done:
    kmc_cm_model_free(&m);
    if (!enc) {
        *code_out = d.code;
        return d.pos;
    }
    return result;
}

int64_t kmc_cm_encode(uint16_t *L, int64_t h, int64_t w, int64_t k, int match, uint8_t *out, int64_t cap)
{
    const int64_t stride = w + 3;
    for (int64_t y = 0; y < h; y++) {
        const uint16_t *row = L + (y + 2) * stride + 2;
        uint32_t top = 0;
        for (int64_t x = 0; x < w; x++)
            top = row[x] > top ? row[x] : top;
        if (top >= k)
            return KMC_CM_BAD_LABEL;
    }
    if (match)
        return code_strip(L, h, w, k, 1, 1, out, cap, NULL, 0, NULL);
    return code_strip(L, h, w, k, 1, 0, out, cap, NULL, 0, NULL);
}

int64_t kmc_cm_decode(uint16_t *L, int64_t h, int64_t w, int64_t k, int match, const uint8_t *data, int64_t n,
                      uint32_t *code)
{
    if (match)
        return code_strip(L, h, w, k, 0, 1, NULL, 0, data, n, code);
    return code_strip(L, h, w, k, 0, 0, NULL, 0, data, n, code);
}

/* ---------------------------------------------------------------------------
 * Palette expansion, fused into decoding
 * ------------------------------------------------------------------------- */
int kmc_cm_palette(const uint16_t *L, int64_t h, int64_t w, const uint8_t *palette, int64_t k, int64_t channels,
                   uint8_t *out)
{
    const int64_t stride = w + 3;
    for (int64_t y = 0; y < h; y++) {
        const uint16_t *row = L + (y + 2) * stride + 2;
        uint8_t *pixels = out + y * w * channels;
        if (channels == 3) {
            for (int64_t x = 0; x < w; x++) {
                const int64_t v = row[x];
                if (v >= k)
                    return KMC_CM_BAD_LABEL;
                const uint8_t *entry = palette + 3 * v;
                pixels[3 * x] = entry[0];
                pixels[3 * x + 1] = entry[1];
                pixels[3 * x + 2] = entry[2];
            }
        } else {
            for (int64_t x = 0; x < w; x++) {
                const int64_t v = row[x];
                if (v >= k)
                    return KMC_CM_BAD_LABEL;
                memcpy(pixels + x * channels, palette + v * channels, (size_t)channels);
            }
        }
    }
    return 0;
}

/* ---------------------------------------------------------------------------
 * Encoder heuristic (not part of the format): is the match model worth trying?
 * ------------------------------------------------------------------------- */
KMC_ALWAYS_INLINE int64_t label_at(const void *labels, const int wide, int64_t i)
{
    return wide ? (int64_t)((const uint16_t *)labels)[i] : (int64_t)((const uint8_t *)labels)[i];
}

KMC_ALWAYS_INLINE int match_probe(const void *labels, const int wide, int64_t h, int64_t w, int64_t row_step,
                                  int64_t *hits_out, int64_t *seen_out)
{
    const int t_bits = kmc_cm_match_table_bits(h * w);
    int64_t *m_pos = malloc(((size_t)1 << t_bits) * sizeof(int64_t));
    if (m_pos == NULL)
        return KMC_CM_NO_MEMORY;
    for (size_t i = 0; i < (size_t)1 << t_bits; i++)
        m_pos[i] = -1;
    int64_t hits = 0, seen = 0;
    if (row_step > h)
        row_step = h; /* the same rows, and y + row_step cannot overflow */
    for (int64_t y = 2; y < h; y += row_step) {
        const int64_t up = (y - 1) * w, cur = y * w, up2 = (y - 2) * w;
        int64_t mp = -1, ml = 0;
        for (int64_t x = 2; x < w - 1; x++) {
            const int64_t W = label_at(labels, wide, cur + x - 1);
            const int64_t N = label_at(labels, wide, up + x);
            const int64_t NW = label_at(labels, wide, up + x - 1);
            const int64_t NE = label_at(labels, wide, up + x + 1);
            const int64_t v = label_at(labels, wide, cur + x);
            if (!(W == N && N == NW && N == NE)) {
                seen++;
                if (mp < 0) {
                    const int64_t WW = label_at(labels, wide, cur + x - 2);
                    const int64_t NN = label_at(labels, wide, up2 + x);
                    uint32_t slot = kmc_cm_match_key(W, N, NW, NE, WW, NN) >> (32 - t_bits);
                    mp = m_pos[slot];
                    ml = 0;
                    m_pos[slot] = cur + x;
                }
            }
            if (mp >= 0 && label_at(labels, wide, mp) == v) { /* mp is an earlier position */
                if (ml >= KMC_CM_PROBE_RUN && v != W)
                    hits++;
                mp++;
                ml++;
            } else {
                mp = -1;
            }
        }
    }
    free(m_pos);
    *hits_out = hits;
    *seen_out = seen;
    return 0;
}

int kmc_cm_match_probe(const void *labels, int wide, int64_t h, int64_t w, int64_t row_step, int64_t *hits,
                       int64_t *seen)
{
    if (wide)
        return match_probe(labels, 1, h, w, row_step, hits, seen);
    return match_probe(labels, 0, h, w, row_step, hits, seen);
}

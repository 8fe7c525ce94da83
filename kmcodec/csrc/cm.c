/* Label coding methods cm, cmm, cm2d and cmx: LZMA's binary range coder driven by the model of cm_model.h.
 *
 * One function, code_strip(), runs the model over a strip; with *enc* it encodes the labels it
 * reads, without it decodes the labels it writes; with *match* it is method cmm (the match model
 * of §9), with *twod* method cm2d (the 2-D match model of §10), with neither method cm.  With
 * *pair_flags* table B is keyed on (W, N) (palettes of up to 64 colours, §5.4).  The flags are
 * constants at each of its twelve call sites and it is always inlined, so the compiler builds
 * twelve kernels, each with only the code its flags take.  Method cmx (cm2d with the mixer of
 * §11) has a walk of its own, code_strip_cmx(), built the same way (four kernels), so that the
 * others' stay as they were.
 * Every choice the model makes depends only on labels already coded, so encoder and decoder
 * cannot drift apart.  Section numbers (§) are those of spec/kmc-method-cm.md.
 */
#include "cm.h"

#include "cm_model.h"

#if defined(__GNUC__) || defined(__clang__)
#define KMC_NOINLINE __attribute__((noinline))
#elif defined(_MSC_VER)
#define KMC_NOINLINE __declspec(noinline)
#else
#define KMC_NOINLINE
#endif

/* The coders' state is split in two: what every decision needs (the range and low or code),
 * passed and returned by value so that it stays in registers, and what only the normalisation
 * needs, about once a byte (the output or input and the position in it), kept in memory.  Each
 * decision's chain of dependencies then runs through registers only.  The encoder normalises in
 * a function of its own, which measured faster; the decoder in line, since a call, even on a
 * rare path, leaves a loop only the few registers a call preserves (and the decoder's loops
 * wait on every bit). */

/* ---------------------------------------------------------------------------
 * §2.2 Encoder (LZMA's)
 * ------------------------------------------------------------------------- */
typedef struct {
    uint64_t low; /* 33 bits: a 32-bit number and a carry */
    uint32_t rng;
} rc_range;

typedef struct {
    uint32_t cache;
    int64_t pending; /* 0xFF bytes held back */
    int64_t pos;     /* bytes written (or that would have been: see put_byte) */
    uint8_t *out;
    int64_t cap;
} rc_output;

/* Write one byte; a write past *cap* is dropped (kmc_cm_encode then reports out of room). */
KMC_ALWAYS_INLINE void put_byte(rc_output *o, uint32_t byte)
{
    if (o->pos < o->cap)
        o->out[o->pos] = (uint8_t)byte;
    o->pos++;
}

static uint64_t shift_low(uint64_t low, rc_output *o)
{
    if (low < 0xFF000000u || low >= 0x100000000u) {
        uint32_t carry = (uint32_t)(low >> 32);
        put_byte(o, o->cache + carry);
        for (; o->pending; o->pending--)
            put_byte(o, 0xFFu + carry);
        o->cache = (uint32_t)(low >> 24) & 0xFF;
    } else {
        o->pending++;
    }
    return (low & 0x00FFFFFFu) << 8;
}

/* §2.2 flush after the last decision: the bytes written, or KMC_CM_OUT_OF_ROOM if they passed
 * the buffer (the walks' room check before each row makes that impossible). */
static int64_t encoder_finish(rc_range *r, rc_output *o)
{
    for (int i = 0; i < 5; i++)
        r->low = shift_low(r->low, o);
    return o->pos <= o->cap ? o->pos : KMC_CM_OUT_OF_ROOM;
}

/* Whether the buffer may lack room for *row_bytes* more bytes: the most one row and the flush
 * can add (two shift_low calls a decision, §2.2). */
KMC_ALWAYS_INLINE int out_of_room(const rc_output *o, int64_t row_bytes)
{
    return o->pos + o->pending + row_bytes > o->cap;
}

static KMC_NOINLINE rc_range encoder_normalize(rc_range r, rc_output *o)
{
    while (r.rng < 0x1000000u) {
        r.rng <<= 8;
        r.low = shift_low(r.low, o);
    }
    return r;
}

KMC_ALWAYS_INLINE void encode_bit(rc_range *r, rc_output *o, uint32_t p, int bit)
{
    uint32_t bound = (r->rng >> 12) * p;
    if (bit) {
        r->rng = bound;
    } else {
        r->low += bound;
        r->rng -= bound;
    }
    if (r->rng < 0x1000000u)
        *r = encoder_normalize(*r, o);
}

/* encode_bit without a branch on the bit: for the escape tree, whose bits are coin flips. */
KMC_ALWAYS_INLINE void encode_bit_flat(rc_range *r, rc_output *o, uint32_t p, int bit)
{
    uint32_t bound = (r->rng >> 12) * p;
    uint32_t keep = 0u - (uint32_t)bit; /* all ones on a 1 */
    r->low += bound & ~keep;
    r->rng = (bound & keep) | ((r->rng - bound) & ~keep);
    if (r->rng < 0x1000000u)
        *r = encoder_normalize(*r, o);
}

/* ---------------------------------------------------------------------------
 * §2.1 Decoder
 * ------------------------------------------------------------------------- */
typedef struct {
    uint32_t rng;
    uint32_t code;
} rc_code;

typedef struct {
    int64_t pos; /* index of the next byte; passes n when the data ran out */
    const uint8_t *data;
    int64_t n;
} rc_input;

/* The next byte, or 0 past the end (§2.1): reads never leave the buffer. */
KMC_ALWAYS_INLINE uint32_t next_byte(rc_input *in)
{
    uint32_t byte = in->pos < in->n ? in->data[in->pos] : 0;
    in->pos++;
    return byte;
}

/* §2.1 initialisation: range all ones, code the first five bytes (the first, always 0, shifts out). */
KMC_ALWAYS_INLINE rc_code decoder_start(rc_input *in)
{
    rc_code c = {0xFFFFFFFFu, 0};
    for (int i = 0; i < 5; i++)
        c.code = (c.code << 8) | next_byte(in);
    return c;
}

KMC_ALWAYS_INLINE rc_code normalize_code(rc_code c, rc_input *in)
{
    while (c.rng < 0x1000000u) {
        c.rng <<= 8;
        c.code = (c.code << 8) | next_byte(in); /* uint32_t: the mod 2^32 a corrupt stream needs */
    }
    return c;
}

KMC_ALWAYS_INLINE int decode_bit(rc_code *c, rc_input *in, uint32_t p)
{
    uint32_t bound = (c->rng >> 12) * p;
    int bit;
    if (c->code < bound) {
        c->rng = bound;
        bit = 1;
    } else {
        c->code -= bound;
        c->rng -= bound;
        bit = 0;
    }
    if (c->rng < 0x1000000u)
        *c = normalize_code(*c, in);
    return bit;
}

/* decode_bit without a branch on the bit: for the escape tree, whose bits are coin flips. */
KMC_ALWAYS_INLINE int decode_bit_flat(rc_code *c, rc_input *in, uint32_t p)
{
    uint32_t bound = (c->rng >> 12) * p;
    uint32_t bit = c->code < bound;
    uint32_t keep = 0u - bit; /* all ones on a 1 */
    c->code -= bound & ~keep;
    c->rng = (bound & keep) | ((c->rng - bound) & ~keep);
    if (c->rng < 0x1000000u)
        *c = normalize_code(*c, in);
    return (int)bit;
}

/* One decision of probability *p*: the encoder codes *bit*, the decoder returns the bit it reads. */
KMC_ALWAYS_INLINE int code_bit(const int enc, rc_range *r, rc_output *o, rc_code *c, rc_input *in, uint32_t p,
                               int bit)
{
    if (enc) {
        encode_bit(r, o, p, bit);
        return bit;
    }
    return decode_bit(c, in, p);
}

/* ---------------------------------------------------------------------------
 * §5.5 Escape
 * ------------------------------------------------------------------------- */
/* §5.5: encode *v* bit by bit, most significant first, walking the tree of E1 and E2 whose rows
 * start at *ea* and *eb* (top = k + 2^B, kmc_cm_escape_top).  A function of its own (not
 * inlined), whose few values all fit in registers. */
static KMC_NOINLINE rc_range encode_escape(rc_range r, rc_output *o, uint32_t *ea, uint32_t *eb, int bits,
                                           int64_t top, int64_t v)
{
    int64_t node = 1;
    for (int shift = bits - 1; shift >= 0; shift--) {
        const int64_t child = node << 1;
        if (kmc_cm_escape_skip(child, shift, top)) {
            node = child; /* every label under the 1 branch is >= k: the bit is 0, not coded */
            continue;
        }
        const int bit = (int)((v >> shift) & 1);
        const uint32_t a = ea[node], b = eb[node];
        encode_bit_flat(&r, o, kmc_cm_p12_of(a, b), bit);
        ea[node] = kmc_cm_updated(a, bit);
        eb[node] = kmc_cm_updated(b, bit);
        node = child | bit;
    }
    return r;
}

typedef struct {
    rc_code c;
    int64_t label;
} rc_escaped;

/* Counter *i* (0 or 1) of the two adjacent ones read as one 8-byte word (in memory order). */
KMC_ALWAYS_INLINE uint32_t child_counter(uint64_t pair, int i)
{
    const union {
        uint16_t word;
        uint8_t bytes[2];
    } probe = {1};
    const int first_low = probe.bytes[0]; /* little-endian: the first counter is the low half */
    return (uint32_t)(pair >> (32 * (i ^ !first_low)));
}

/* §5.5: decode a label bit by bit (see encode_escape).  Each step also loads both children's
 * counters before its bit is known, so that the next step need not wait for the tables.  With
 * *pow2* (k = 2^B), no bit is ever skipped, and the test is left out. */
KMC_ALWAYS_INLINE rc_escaped decode_escape_walk(rc_code c, rc_input *in, uint32_t *ea, uint32_t *eb, int bits,
                                                int64_t top, const int pow2)
{
    int64_t node = 1;
    uint32_t a = ea[1], b = eb[1]; /* the counters of node */
    for (int shift = bits - 1; shift >= 0; shift--) {
        const int64_t child = node << 1;
        uint64_t pa = 0, pb = 0; /* both children's counters: child is even, they are one 8-byte word */
        if (shift > 0) {         /* the last step's children would be past the row */
            memcpy(&pa, ea + child, sizeof pa);
            memcpy(&pb, eb + child, sizeof pb);
        }
        if (!pow2 && kmc_cm_escape_skip(child, shift, top)) {
            node = child;
            a = child_counter(pa, 0);
            b = child_counter(pb, 0);
            continue;
        }
        const int bit = decode_bit_flat(&c, in, kmc_cm_p12_of(a, b));
        ea[node] = kmc_cm_updated(a, bit);
        eb[node] = kmc_cm_updated(b, bit);
        node = child | bit;
        a = child_counter(pa, bit);
        b = child_counter(pb, bit);
    }
    rc_escaped result = {c, node - ((int64_t)1 << bits)};
    return result;
}

static KMC_NOINLINE rc_escaped decode_escape(rc_code c, rc_input *in, uint32_t *ea, uint32_t *eb, int bits,
                                             int64_t top)
{
    return decode_escape_walk(c, in, ea, eb, bits, top, 0);
}

static KMC_NOINLINE rc_escaped decode_escape_pow2(rc_code c, rc_input *in, uint32_t *ea, uint32_t *eb, int bits)
{
    return decode_escape_walk(c, in, ea, eb, bits, 0, 1);
}

/* §5.4: offer candidate *cj* of rank *j*, one decision; returns its bit (1: the label is cj). */
KMC_ALWAYS_INLINE int offer(const int enc, rc_range *e, rc_output *o, rc_code *d, rc_input *in, uint32_t *cand_a,
                            uint32_t *cand_b, const int pair_flags, uint32_t key_b, int64_t pat, int64_t j, int64_t cj,
                            int64_t v)
{
    const size_t ia = kmc_cm_cand_index_a(j, pat, cj);
    const size_t ib = kmc_cm_cand_index_b(pair_flags, key_b, j, pat);
    const int bit = code_bit(enc, e, o, d, in, kmc_cm_p12_mean(cand_a, ia, cand_b, ib), v == cj);
    kmc_cm_update(cand_a, ia, bit);
    kmc_cm_update(cand_b, ib, bit);
    return bit;
}

/* ---------------------------------------------------------------------------
 * §5 and §9: the model over one strip
 * ------------------------------------------------------------------------- */
/* Code the strip in the padded *L* (see cm.h): encode into out[0 .. cap) with *enc*, else decode
 * data[0 .. n) into *dst* (the decoder's L, NULL for the encoder), setting *code_out*.  Returns
 * what kmc_cm_encode / kmc_cm_decode return. */
KMC_ALWAYS_INLINE int64_t code_strip(const uint16_t *L, uint16_t *dst, int64_t h, int64_t w, int64_t k, const int enc,
                                     const int match, const int twod, const int pair_flags, uint8_t *out,
                                     int64_t cap, const uint8_t *data, int64_t n, uint32_t *code_out)
{
    kmc_cm_model m;
    if (kmc_cm_model_init(&m, k, h * w, w, match, twod) < 0)
        return KMC_CM_NO_MEMORY;
    const int bits = m.bits;
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
    const int64_t top = kmc_cm_escape_top(k, bits);
    const int pow2 = k == ((int64_t)1 << bits); /* no escape bit is ever skipped */
    int64_t mp = -1; /* §9.1 match position, kept as row my and column mx too */
    int64_t my = 0, mx = 0, ml = 0;
    kmc_cm_2d t2; /* §10.1 */
    kmc_cm_2d_init(&t2);
    uint16_t *const lin = m.lin;
    uint32_t *const d_a = m.d_a;
    uint32_t *const d_b = m.d_b;

    rc_range e = {0, 0xFFFFFFFFu};
    rc_output o = {0, 0, 0, out, cap};
    rc_input in = {0, data, n};
    rc_code d = enc ? (rc_code){0xFFFFFFFFu, 0} : decoder_start(&in);

    /* most bytes one row and the flush can add: two shift_low calls a decision (§2.2) */
    const int64_t row_bytes = 2 * w * (4 + (match || twod ? 1 : 0) + bits) + 5;
    int64_t result = 0;
    for (int64_t y = 0; y < h; y++) {
        if (enc && out_of_room(&o, row_bytes)) {
            result = KMC_CM_OUT_OF_ROOM; /* the caller retries with a bigger buffer */
            goto done;
        }
        const uint16_t *row = L + (y + 2) * stride;
        uint16_t *out_row = enc ? NULL : dst + (y + 2) * stride;
        uint64_t *const above = m.above;
        kmc_cm_nb nb = kmc_cm_nb_start(above, y, y ? row[2 - stride] : 0);
        for (int64_t x = 0; x < w; x++) {
            if (!enc && in.pos > n)
                goto done; /* §6: the bytes ran out, so the strip is truncated whatever follows */
            const int64_t v = enc ? row[x + 2] : 0;
            int64_t label = -1;
            int64_t state = 0;
            const int64_t pat = kmc_cm_pattern(&nb);
            const int flat = kmc_cm_is_flat(pat);
            int64_t M = -1; /* §9.2 the predicted label, -1 for none */
            int64_t lq = 0;
            int64_t q = -1; /* §10.2 what T held at this pixel's slot */
            const int64_t i = y * w + x;
            if (twod) /* §10.2 */
                q = kmc_cm_2d_begin(&t2, &m, &nb, i, y, x, w, flat);
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
                    m_pos[slot] = (int32_t)i;
                }
                if (mp >= 0)
                    M = L[(my + 2) * stride + mx + 2];
                lq = ml < KMC_CM_MATCH_LEVELS - 1 ? ml : KMC_CM_MATCH_LEVELS - 1;
                if (M >= 0 && !(flat && M == nb.W)) { /* §9.3 */
                    size_t ia = kmc_cm_match_index_a(lq, &nb, M, flat);
                    size_t ib = kmc_cm_match_index_b(lq, &nb, M);
                    int bit = code_bit(enc, &e, &o, &d, &in, kmc_cm_p12_mean(m_a, ia, m_b, ib), v == M);
                    kmc_cm_update(m_a, ia, bit);
                    kmc_cm_update(m_b, ib, bit);
                    if (bit) {
                        label = M;
                        state = 3;
                    }
                }
            }
            int64_t X = -1; /* §10.3 the 2-D prediction, refused; -1 for none */
            if (twod && kmc_cm_2d_decides(&t2, &nb, flat)) { /* §10.3 */
                size_t ia = kmc_cm_2d_index_a(&t2, &nb, flat);
                size_t ib = kmc_cm_2d_index_b(&t2, &nb);
                int bit = code_bit(enc, &e, &o, &d, &in, kmc_cm_p12_mean(d_a, ia, d_b, ib), v == t2.P);
                kmc_cm_update(d_a, ia, bit);
                kmc_cm_update(d_b, ib, bit);
                if (bit) {
                    label = t2.P;
                    state = 3;
                } else {
                    X = t2.P;
                }
            }

            if (label >= 0) {
                /* §9.3 or §10.3: the match decision or the 2-D one coded it */
            } else if (flat) { /* §5.3 flat neighbourhood: one decision, "label = W" */
                int64_t ctx = kmc_cm_flat_ctx(pat);
                if (match)
                    ctx = kmc_cm_match_flat_ctx(ctx, lq, M, &nb);
                int bit = code_bit(enc, &e, &o, &d, &in, kmc_cm_p12(kmc_cm_p22(flat_t, (size_t)ctx)), v == nb.W);
                kmc_cm_update(flat_t, (size_t)ctx, bit);
                if (bit)
                    label = nb.W;
            } else { /* §5.4 candidates without repeats (nor M); one decision each until a hit */
                const uint32_t key_b = kmc_cm_key_b(pair_flags, &nb, pat);
                unsigned set = kmc_cm_candidate_set(&nb, pat, match, M);
                if (twod) /* §10.4: a refused P is no candidate */
                    set &= kmc_cm_2d_candidate_mask(&nb, X);
                /* in rank order, unrolled: each candidate straight from the window */
                int64_t j = 0;
                if ((set & 1) && offer(enc, &e, &o, &d, &in, cand_a, cand_b, pair_flags, key_b, pat, j++, nb.W, v))
                    label = nb.W;
                else if ((set & 2) &&
                         offer(enc, &e, &o, &d, &in, cand_a, cand_b, pair_flags, key_b, pat, j++, nb.N, v))
                    label = nb.N;
                else if ((set & 4) &&
                         offer(enc, &e, &o, &d, &in, cand_a, cand_b, pair_flags, key_b, pat, j++, nb.NW, v))
                    label = nb.NW;
                else if ((set & 8) &&
                         offer(enc, &e, &o, &d, &in, cand_a, cand_b, pair_flags, key_b, pat, j++, nb.NE, v))
                    label = nb.NE;
                state = j > 1; /* the rank of a hit was j - 1: state 0 for rank 0, else 1 */
            }

            if (label < 0) { /* §5.5 escape: the label's bits, most significant first */
                size_t row_a, row_b;
                kmc_cm_escape_rows(&m, &nb, &row_a, &row_b);
                if (enc) {
                    e = encode_escape(e, &o, esc_a + row_a, esc_b + row_b, bits, top, v);
                    label = v;
                } else {
                    const rc_escaped escaped = pow2 ? decode_escape_pow2(d, &in, esc_a + row_a, esc_b + row_b, bits)
                                                    : decode_escape(d, &in, esc_a + row_a, esc_b + row_b, bits, top);
                    d = escaped.c;
                    label = escaped.label;
                }
                state = 2;
            }
            if (!enc)
                out_row[x + 2] = (uint16_t)label;
            if (twod)
                lin[i] = (uint16_t)label;
            kmc_cm_nb_next(&nb, above, y, x, label, state);
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
            if (twod) /* §10.5 */
                kmc_cm_2d_after(&t2, lin, i, label, q);
        }
        kmc_cm_row_last(&nb, above, w);
    }

    if (enc)
        result = encoder_finish(&e, &o);
done:
    kmc_cm_model_free(&m);
    if (!enc) {
        *code_out = d.code;
        return in.pos;
    }
    return result;
}

/* ---------------------------------------------------------------------------
 * §11: method cmx over one strip
 * ------------------------------------------------------------------------- */
/* §11: one mixed decision over the counters a[ia], b[ib], X[ix] and PD[ipd] with weight set *set*:
 * the encoder codes *bit*, the decoder returns the bit it reads (with *coin*, the escape bits,
 * without a branch on the bit); then the weights learn and every counter used is updated (§3). */
KMC_ALWAYS_INLINE int cmx_bit(const int enc, const int coin, rc_range *r, rc_output *o, rc_code *c, rc_input *in,
                              kmc_cmx *mx, uint32_t *a, size_t ia, uint32_t *b, size_t ib, size_t ix, size_t ipd,
                              int set, int bit)
{
    const uint32_t ea = a[ia], eb = b[ib], ex = mx->wide[ix], ep = mx->pd[ipd];
    const int32_t x[4] = {kmc_cmx_input(mx, ea), kmc_cmx_input(mx, eb), kmc_cmx_input(mx, ex),
                          kmc_cmx_input(mx, ep)};
    int32_t *const w = mx->weight[set];
    const int32_t p = kmc_cmx_mix(mx, w, x);
    if (!coin)
        bit = code_bit(enc, r, o, c, in, (uint32_t)p, bit);
    else if (enc)
        encode_bit_flat(r, o, (uint32_t)p, bit);
    else
        bit = decode_bit_flat(c, in, (uint32_t)p);
    kmc_cmx_learn(w, x, p, bit);
    mx->wide[ix] = kmc_cm_updated(ex, bit);
    mx->pd[ipd] = kmc_cm_updated(ep, bit);
    a[ia] = kmc_cm_updated(ea, bit);
    b[ib] = kmc_cm_updated(eb, bit);
    return bit;
}

/* Method cmx (§11) over the strip, as code_strip with *twod*: cm2d's walk (§10), its flat decision
 * as cm2d codes it, every other decision through cmx_bit.  The slots of X a decision will read are
 * asked for ahead (the first candidate's at the pixel's start, the next candidate's, both children's
 * in the escape tree), since X is too large for the cache.  Arguments and result as code_strip's. */
KMC_ALWAYS_INLINE int64_t code_strip_cmx(const uint16_t *L, uint16_t *dst, int64_t h, int64_t w, int64_t k,
                                         const int enc, const int pair_flags, uint8_t *out, int64_t cap,
                                         const uint8_t *data, int64_t n, uint32_t *code_out)
{
    kmc_cm_model m;
    if (kmc_cm_model_init(&m, k, h * w, w, 0, 1) < 0)
        return KMC_CM_NO_MEMORY;
    kmc_cmx *const mx = kmc_cmx_new(h * w);
    if (mx == NULL) {
        kmc_cm_model_free(&m);
        return KMC_CM_NO_MEMORY;
    }
    const int bits = m.bits, xb = mx->wide_bits;
    uint32_t *const wide = mx->wide;
    uint16_t *const lin = m.lin;
    const int64_t stride = w + 3;
    const int64_t top = kmc_cm_escape_top(k, bits);
    kmc_cm_2d t2; /* §10.1 */
    kmc_cm_2d_init(&t2);

    rc_range e = {0, 0xFFFFFFFFu};
    rc_output o = {0, 0, 0, out, cap};
    rc_input in = {0, data, n};
    rc_code d = enc ? (rc_code){0xFFFFFFFFu, 0} : decoder_start(&in);

    /* most bytes one row and the flush can add: two shift_low calls a decision (§2.2), 1 + 4 + B a pixel */
    const int64_t row_bytes = 2 * w * (5 + bits) + 5;
    int64_t result = 0;
    for (int64_t y = 0; y < h; y++) {
        if (enc && out_of_room(&o, row_bytes)) {
            result = KMC_CM_OUT_OF_ROOM; /* the caller retries with a bigger buffer */
            goto done;
        }
        const uint16_t *row = L + (y + 2) * stride;
        uint16_t *out_row = enc ? NULL : dst + (y + 2) * stride;
        uint64_t *const above = m.above;
        kmc_cm_nb nb = kmc_cm_nb_start(above, y, y ? row[2 - stride] : 0);
        for (int64_t x = 0; x < w; x++) {
            if (!enc && in.pos > n)
                goto done; /* §6: the bytes ran out, so the strip is truncated whatever follows */
            const int64_t v = enc ? row[x + 2] : 0;
            int64_t label = -1;
            int64_t state = 0;
            const int64_t pat = kmc_cm_pattern(&nb);
            const int flat = kmc_cm_is_flat(pat);
            const int64_t i = y * w + x;
            uint32_t base = 0; /* §11 the wide key; a flat pixel makes it only if a mixed decision needs it */
            if (!flat) {       /* the first candidate's slot of X asked for first, as early as it is known */
                base = kmc_cmx_wide_key(&nb, lin, i, y, x, w);
                KMC_PREFETCH(wide + kmc_cm_hash(kmc_cmx_key_cand(base, 0), xb));
            }
            const int64_t q = kmc_cm_2d_begin(&t2, &m, &nb, i, y, x, w, flat); /* §10.2: what T held here */
            int64_t X = -1; /* §10.3 the 2-D prediction, refused; -1 for none */
            if (kmc_cm_2d_decides(&t2, &nb, flat)) { /* §10.3, mixed */
                if (flat)
                    base = kmc_cmx_wide_key(&nb, lin, i, y, x, w);
                const size_t ia = kmc_cm_2d_index_a(&t2, &nb, flat), ib = kmc_cm_2d_index_b(&t2, &nb);
                const size_t ix = kmc_cm_hash(kmc_cmx_key_2d(base, t2.P), xb);
                if (cmx_bit(enc, 0, &e, &o, &d, &in, mx, m.d_a, ia, m.d_b, ib, ix, 0, kmc_cmx_set_2d(&t2, flat),
                            v == t2.P)) {
                    label = t2.P;
                    state = 3;
                } else {
                    X = t2.P;
                }
            }

            if (label >= 0) {
                /* §10.3: the 2-D decision coded it */
            } else if (flat) { /* §5.3 flat neighbourhood: one decision, "label = W", as cm2d */
                const size_t ctx = (size_t)kmc_cm_flat_ctx(pat);
                const int bit = code_bit(enc, &e, &o, &d, &in, kmc_cm_p12(kmc_cm_p22(m.flat, ctx)), v == nb.W);
                kmc_cm_update(m.flat, ctx, bit);
                if (bit)
                    label = nb.W;
            } else { /* §5.4 candidates without repeats nor the refused P (§10.4), mixed */
                const uint32_t key_b = kmc_cm_key_b(pair_flags, &nb, pat);
                int64_t cand[4];
                const int nc = kmc_cm_candidates(&nb, pat, 1, X, cand);
                int j;
                for (j = 0; j < nc; j++) {
                    if (j + 1 < nc)
                        KMC_PREFETCH(wide + kmc_cm_hash(kmc_cmx_key_cand(base, j + 1), xb));
                    const size_t ia = kmc_cm_cand_index_a(j, pat, cand[j]);
                    const size_t ib = kmc_cm_cand_index_b(pair_flags, key_b, j, pat);
                    const size_t ix = kmc_cm_hash(kmc_cmx_key_cand(base, j), xb);
                    if (cmx_bit(enc, 0, &e, &o, &d, &in, mx, m.cand_a, ia, m.cand_b, ib, ix,
                                kmc_cmx_pd_cand(&t2, j, cand[j]), 4 * j + (int)nb.s_w, v == cand[j])) {
                        label = cand[j];
                        break;
                    }
                }
                state = j >= 1; /* rank 0: state 0, else 1 (an escape sets 2 below) */
            }

            if (label < 0) { /* §5.5 escape, mixed: the label's bits, most significant first */
                if (flat)
                    base = kmc_cmx_wide_key(&nb, lin, i, y, x, w);
                size_t row_a, row_b;
                kmc_cm_escape_rows(&m, &nb, &row_a, &row_b);
                uint32_t *const ea = m.esc_a + row_a, *const eb = m.esc_b + row_b;
                const int64_t pnode = t2.P >= 0 ? t2.P + ((int64_t)1 << bits) : -1; /* P's leaf */
                int64_t node = 1;
                for (int shift = bits - 1; shift >= 0; shift--) {
                    const int64_t child = node << 1;
                    if (kmc_cm_escape_skip(child, shift, top)) {
                        node = child; /* every label under the 1 branch is >= k: the bit is 0, not coded */
                        continue;
                    }
                    const int depth = bits - 1 - shift;
                    if (shift > 0) { /* both children's counters, whichever the bit picks */
                        KMC_PREFETCH(wide + kmc_cm_hash(kmc_cmx_key_escape(base, child), xb));
                        KMC_PREFETCH(wide + kmc_cm_hash(kmc_cmx_key_escape(base, child | 1), xb));
                        KMC_PREFETCH(ea + child);
                        KMC_PREFETCH(eb + child);
                    }
                    const size_t ix = kmc_cm_hash(kmc_cmx_key_escape(base, node), xb);
                    const int bit = cmx_bit(enc, 1, &e, &o, &d, &in, mx, ea, (size_t)node, eb, (size_t)node, ix,
                                            kmc_cmx_pd_escape(&t2, depth, node, shift, pnode),
                                            KMC_CMX_SET_ESCAPE + depth, (int)((v >> shift) & 1));
                    node = child | bit;
                }
                label = node - ((int64_t)1 << bits);
                state = 2;
            }
            if (!enc)
                out_row[x + 2] = (uint16_t)label;
            lin[i] = (uint16_t)label;
            kmc_cm_nb_next(&nb, above, y, x, label, state);
            kmc_cm_2d_after(&t2, lin, i, label, q); /* §10.5 */
        }
        kmc_cm_row_last(&nb, above, w);
    }

    if (enc)
        result = encoder_finish(&e, &o);
done:
    kmc_cmx_free(mx);
    kmc_cm_model_free(&m);
    if (!enc) {
        *code_out = d.code;
        return in.pos;
    }
    return result;
}

int64_t kmc_cm_encode(const uint16_t *L, int64_t h, int64_t w, int64_t k, int model, uint8_t *out, int64_t cap)
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
    /* eight encoders: method cm, cmm, cm2d or cmx, and table B keyed on (W, N) or not */
    const int pair = kmc_cm_pair_flags(k);
    if (model == KMC_CM_MODEL_CMX)
        return pair ? code_strip_cmx(L, NULL, h, w, k, 1, 1, out, cap, NULL, 0, NULL)
                    : code_strip_cmx(L, NULL, h, w, k, 1, 0, out, cap, NULL, 0, NULL);
    if (model == KMC_CM_MODEL_CM2D)
        return pair ? code_strip(L, NULL, h, w, k, 1, 0, 1, 1, out, cap, NULL, 0, NULL)
                    : code_strip(L, NULL, h, w, k, 1, 0, 1, 0, out, cap, NULL, 0, NULL);
    if (model == KMC_CM_MODEL_CMM)
        return pair ? code_strip(L, NULL, h, w, k, 1, 1, 0, 1, out, cap, NULL, 0, NULL)
                    : code_strip(L, NULL, h, w, k, 1, 1, 0, 0, out, cap, NULL, 0, NULL);
    return pair ? code_strip(L, NULL, h, w, k, 1, 0, 0, 1, out, cap, NULL, 0, NULL)
                : code_strip(L, NULL, h, w, k, 1, 0, 0, 0, out, cap, NULL, 0, NULL);
}

int64_t kmc_cm_decode(uint16_t *L, int64_t h, int64_t w, int64_t k, int model, const uint8_t *data, int64_t n,
                      uint32_t *code)
{
    /* eight decoders, as the encoders */
    const int pair = kmc_cm_pair_flags(k);
    if (model == KMC_CM_MODEL_CMX)
        return pair ? code_strip_cmx(L, L, h, w, k, 0, 1, NULL, 0, data, n, code)
                    : code_strip_cmx(L, L, h, w, k, 0, 0, NULL, 0, data, n, code);
    if (model == KMC_CM_MODEL_CM2D)
        return pair ? code_strip(L, L, h, w, k, 0, 0, 1, 1, NULL, 0, data, n, code)
                    : code_strip(L, L, h, w, k, 0, 0, 1, 0, NULL, 0, data, n, code);
    if (model == KMC_CM_MODEL_CMM)
        return pair ? code_strip(L, L, h, w, k, 0, 1, 0, 1, NULL, 0, data, n, code)
                    : code_strip(L, L, h, w, k, 0, 1, 0, 0, NULL, 0, data, n, code);
    return pair ? code_strip(L, L, h, w, k, 0, 0, 0, 1, NULL, 0, data, n, code)
                : code_strip(L, L, h, w, k, 0, 0, 0, 0, NULL, 0, data, n, code);
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

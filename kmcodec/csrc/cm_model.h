/* The context model of label coding methods cm, cmm, cm2d and cmx, written once (spec/kmc-method-cm.md).
 *
 * The range coder of cm.c (encoder and decoder, methods cm and cmm) and the
 * RDO labeller of rdo.c (which prices labels with the model and then moves
 * its counters as the coder will) both include this header: counters and
 * their update (§3), the hash and the tables (§4), the neighbours and the
 * virtual labels around a strip (§5.1), the flat context (§5.3), the
 * pattern, candidates and candidate counters (§5.4), the escape tree (§5.5)
 * the match model's contexts (§9), the 2-D match model of method cm2d (§10) and the mixer of
 * method cmx (§11).  There is no second copy to keep in step: a change here changes both.
 *
 * Everything is static inline over plain pointers; section numbers (§) are
 * those of the spec.  Labels are below k <= 65536, so int64_t arithmetic
 * on them never overflows; hashes are uint32_t, whose arithmetic wraps as
 * the spec's "mod 2^32" asks.
 *
 * The label array of a strip (the layout both users share) is padded: h + 2
 * rows of w + 3 uint16 labels, label (y, x) at L[(y + 2) * (w + 3) + x + 2].
 * The padding is a leftover of the numba kernels, which kept the virtual
 * labels of §5.1 there; these kernels neither read nor write it.
 */
#ifndef KMC_CM_MODEL_H
#define KMC_CM_MODEL_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kmc_compiler.h"

/* ---------------------------------------------------------------------------
 * §3 Probability counters
 * ------------------------------------------------------------------------- */
/* Probability bits kept by a counter (the coder uses the top 12). */
#define KMC_CM_P_BITS 22
/* A counter's adaptation count stops here: its rate never falls below 1 / (LIMIT + 1.5). */
#define KMC_CM_LIMIT 30
/* Initial counter word: probability one half, count zero. */
#define KMC_CM_COUNTER_INIT 0x80000000u

/* RATE[n] = 131072 // (2n + 3) = floor(2^16 / (n + 1.5)): the counter's step after n updates. */
static const int32_t kmc_cm_rate[KMC_CM_LIMIT + 1] = {
    43690, 26214, 18724, 14563, 11915, 10082, 8738, 7710, 6898, 6241, 5698, 5242, 4854, 4519, 4228, 3971,
    3744,  3542,  3360,  3196,  3048,  2912,  2788, 2674, 2570, 2473, 2383, 2299, 2221, 2148, 2080,
};

/* The counter update needs >> of a negative number to be the floor, an arithmetic shift: what C
 * leaves to the implementation, and what every compiler the codec is built with does. */
_Static_assert((-3 >> 1) == -2 && ((int64_t)-65537 >> 16) == -2, "signed >> must be an arithmetic shift");

/* x >> 16, the floor also for negative x (see the assertion above). */
KMC_ALWAYS_INLINE int64_t kmc_cm_floor16(int64_t x)
{
    return x >> 16;
}

/* §3: a counter's probability of a 1, in 22 bits. */
KMC_ALWAYS_INLINE uint32_t kmc_cm_p22(const uint32_t *table, size_t i)
{
    return table[i] >> 10;
}

/* §3: a 22-bit probability as the coder's 12-bit one, at least 1. */
KMC_ALWAYS_INLINE uint32_t kmc_cm_p12(uint32_t p22)
{
    uint32_t p = p22 >> 10;
    return p > 0 ? p : 1;
}

/* §3: the 12-bit probability of a decision from the mean of two counter words. */
KMC_ALWAYS_INLINE uint32_t kmc_cm_p12_of(uint32_t a, uint32_t b)
{
    return kmc_cm_p12(((a >> 10) + (b >> 10)) >> 1);
}

/* §3: the 12-bit probability of a decision from the mean of two counters. */
KMC_ALWAYS_INLINE uint32_t kmc_cm_p12_mean(const uint32_t *a, size_t ia, const uint32_t *b, size_t ib)
{
    return kmc_cm_p12_of(a[ia], b[ib]);
}

/* §3: the counter word *e* moved towards *bit* (0 or 1) by its rate, its update counted. */
KMC_ALWAYS_INLINE uint32_t kmc_cm_updated(uint32_t e, int bit)
{
    uint32_t n = e & 1023;
    int64_t p = (int64_t)(e >> 10);
    p += kmc_cm_floor16((((int64_t)bit << KMC_CM_P_BITS) - p) * kmc_cm_rate[n]);
    if (n < KMC_CM_LIMIT)
        n += 1;
    return ((uint32_t)p << 10) | n;
}

/* §3: update the counter table[i] with *bit*. */
KMC_ALWAYS_INLINE void kmc_cm_update(uint32_t *table, size_t i, int bit)
{
    table[i] = kmc_cm_updated(table[i], bit);
}

/* ---------------------------------------------------------------------------
 * §4 Hash and context tables
 * ------------------------------------------------------------------------- */
/* Slots (log2) of the hashed candidate tables A and B. */
#define KMC_CM_HASH_BITS 16
/* Palettes of up to 2^SMALL_BITS colours key the escape tables on pairs of labels (§5.5). */
#define KMC_CM_SMALL_BITS 5
/* Palettes of up to 2^PAIR_FLAG_BITS colours key candidate table B on (W, N) (§5.4). */
#define KMC_CM_PAIR_FLAG_BITS 6
/* Cap (log2) on the slots of each escape table for large palettes. */
#define KMC_CM_TREE_BITS 20
#define KMC_CM_GOLDEN 0x9E3779B1u
/* Slots (log2) of the match model's position table: enough for the strip's labels, within these bounds. */
#define KMC_CM_MATCH_MIN_BITS 10
#define KMC_CM_MATCH_BITS 18
/* Match lengths the model tells apart: 0 ..= MATCH_LEVELS - 1 (longer ones count as the last). */
#define KMC_CM_MATCH_LEVELS 16
/* Counters of the match tables MA, MB and F' (§9.1). */
#define KMC_CM_MATCH_A_SIZE (KMC_CM_MATCH_LEVELS << 3)
#define KMC_CM_FLAT_SIZE 64
#define KMC_CM_MATCH_FLAT_SIZE (64 * (KMC_CM_MATCH_LEVELS + 1))
/* The 2-D match model (§10): offsets kept, counters of tables DA and DB. */
#define KMC_CM_2D_OFFSETS 4
#define KMC_CM_2D_A_SIZE 64
#define KMC_CM_2D_B_SIZE ((size_t)1 << KMC_CM_HASH_BITS)

/* §4: the top *bits* bits of the low 32 bits of x * 0x9E3779B1 (hash16 with bits = 16). */
KMC_ALWAYS_INLINE uint32_t kmc_cm_hash(uint32_t x, int bits)
{
    return (uint32_t)(x * KMC_CM_GOLDEN) >> (32 - bits);
}

/* B = ceil(log2 k): the bits of the largest label (0 for k = 1). */
KMC_ALWAYS_INLINE int kmc_cm_bits(int64_t k)
{
    int bits = 0;
    while (((int64_t)1 << bits) < k)
        bits++;
    return bits;
}

/* §9.1 t: slots (log2) of the match model's position table T for a strip of *labels* labels. */
KMC_ALWAYS_INLINE int kmc_cm_match_table_bits(int64_t labels)
{
    int t_bits = KMC_CM_MATCH_MIN_BITS;
    while (t_bits < KMC_CM_MATCH_BITS && ((int64_t)1 << t_bits) < labels)
        t_bits++;
    return t_bits;
}

/* Whether table B is keyed on (W, N) for palette size k (§5.4): B <= PAIR_FLAG_BITS. */
KMC_ALWAYS_INLINE int kmc_cm_pair_flags(int64_t k)
{
    return kmc_cm_bits(k) <= KMC_CM_PAIR_FLAG_BITS;
}

/* The model's state for one strip: its tables (§4, §9.1) and what the palette size decides. */
typedef struct {
    int64_t k;        /* palette size, 1 ..= 65536 */
    int bits;         /* B */
    int small;        /* B <= SMALL_BITS: escape rows on pairs of labels */
    int pair_flags;   /* B <= PAIR_FLAG_BITS: table B keyed on (W, N) */
    int64_t row_mask; /* escape rows on single labels: their mask M (§5.5) */
    uint32_t *flat;   /* F, 64 counters; with the match model F', 1088 (§9.4) */
    uint32_t *cand_a; /* A */
    uint32_t *cand_b; /* Bp */
    uint32_t *esc_a;  /* E1 */
    uint32_t *esc_b;  /* E2 */
    uint32_t *m_a;    /* MA (match model only, else NULL) */
    uint32_t *m_b;    /* MB (match model only) */
    int32_t *m_pos;   /* T (match or 2-D model only) */
    int t_bits;       /* t (match or 2-D model only) */
    uint32_t *d_a;    /* DA (2-D model only, else NULL) */
    uint32_t *d_b;    /* DB (2-D model only) */
    uint16_t *lin;    /* the strip's labels so far, row after row without padding (2-D model only):
                       * positions i - o are one index away, where the padded array would need a division */
    uint64_t *above;  /* what a row needs of the rows above, a word a column (kmc_cm_nb_next) */
    uint32_t *block;  /* the one allocation that holds the counters */
} kmc_cm_model;

/* Create the tables of a strip of *labels* labels, *w* a row, for palette size *k* (1 ..= 65536),
 * every counter at COUNTER_INIT and every T slot -1; with *match* the match model's too (method
 * cmm), with *twod* the 2-D model's (method cm2d; T is the one table they share).  Returns 0, or
 * -1 when out of memory (then nothing is left allocated). */
static inline int kmc_cm_model_init(kmc_cm_model *m, int64_t k, int64_t labels, int64_t w, int match, int twod)
{
    memset(m, 0, sizeof *m);
    m->k = k;
    m->bits = kmc_cm_bits(k);
    m->small = m->bits <= KMC_CM_SMALL_BITS;
    m->pair_flags = kmc_cm_pair_flags(k);
    int64_t tree_rows;
    if (m->small) {
        tree_rows = k * k;
        m->row_mask = 0;
    } else {
        int row_bits = m->bits < KMC_CM_TREE_BITS - m->bits ? m->bits : KMC_CM_TREE_BITS - m->bits;
        tree_rows = (int64_t)1 << row_bits;
        m->row_mask = tree_rows - 1;
    }
    size_t flat = match ? KMC_CM_MATCH_FLAT_SIZE : KMC_CM_FLAT_SIZE;
    size_t cand_a = (size_t)1 << KMC_CM_HASH_BITS;
    size_t cand_b = m->pair_flags ? (size_t)1 << KMC_CM_HASH_BITS : (size_t)4 << 11;
    size_t esc = (size_t)(tree_rows << m->bits);
    size_t m_a = match ? KMC_CM_MATCH_A_SIZE : 0;
    size_t m_b = match ? (size_t)1 << KMC_CM_HASH_BITS : 0;
    size_t d_a = twod ? KMC_CM_2D_A_SIZE : 0;
    size_t d_b = twod ? KMC_CM_2D_B_SIZE : 0;
    size_t counters = flat + cand_a + cand_b + 2 * esc + m_a + m_b + d_a + d_b;
    m->block = malloc(counters * sizeof(uint32_t));
    if (twod)
        m->lin = malloc(((size_t)labels > 0 ? (size_t)labels : 1) * sizeof(uint16_t));
    m->above = calloc((size_t)w + 2, sizeof(uint64_t)); /* columns -1 ..= w */
    const int positions = match || twod; /* table T */
    if (positions) {
        m->t_bits = kmc_cm_match_table_bits(labels);
        m->m_pos = malloc(((size_t)1 << m->t_bits) * sizeof(int32_t));
    }
    if (m->block == NULL || m->above == NULL || (positions && m->m_pos == NULL) || (twod && m->lin == NULL)) {
        free(m->block);
        free(m->above);
        free(m->m_pos);
        free(m->lin);
        memset(m, 0, sizeof *m);
        return -1;
    }
    for (size_t i = 0; i < counters; i++)
        m->block[i] = KMC_CM_COUNTER_INIT;
    if (positions)
        memset(m->m_pos, 0xFF, ((size_t)1 << m->t_bits) * sizeof(int32_t)); /* every slot -1 */
    uint32_t *t = m->block;
    m->flat = t;
    t += flat;
    m->cand_a = t;
    t += cand_a;
    m->cand_b = t;
    t += cand_b;
    m->esc_a = t;
    t += esc;
    m->esc_b = t;
    t += esc;
    if (match) {
        m->m_a = t;
        t += m_a;
        m->m_b = t;
        t += m_b;
    }
    if (twod) {
        m->d_a = t;
        t += d_a;
        m->d_b = t;
    }
    return 0;
}

/* Free what kmc_cm_model_init() allocated. */
static inline void kmc_cm_model_free(kmc_cm_model *m)
{
    free(m->block);
    free(m->above);
    free(m->m_pos);
    free(m->lin);
    memset(m, 0, sizeof *m);
}

/* ---------------------------------------------------------------------------
 * §5.1 Neighbours, and the virtual labels around the strip
 * ------------------------------------------------------------------------- */
/* The neighbours of a pixel and the states of its left and upper pixels (§5.1).
 *
 * A row's walk keeps them as a window that slides one pixel right at a time.  The label just
 * coded becomes W without a trip through memory, and of the rows above only NE, NN and sN are
 * new: they come in one word per column, above[x + 1] for column x, that the row above wrote as
 * it went (kmc_cm_nb_next).  The virtual labels of §5.1 are in the window and in these words, so
 * the label array holds only the strip's labels. */
typedef struct {
    int64_t W, N, NW, NE, WW, NN;
    int64_t s_w, s_n;
} kmc_cm_nb;

/* The word of column x for the row below row y: NE = L(y, x + 1), sN = s(y, x), NN = L(y - 1, x). */
KMC_ALWAYS_INLINE uint64_t kmc_cm_above_word(int64_t ne, int64_t s_n, int64_t nn)
{
    return (uint64_t)ne | (uint64_t)s_n << 16 | (uint64_t)nn << 32;
}

/* Take NE, sN and NN from a column's word. */
KMC_ALWAYS_INLINE void kmc_cm_nb_above(kmc_cm_nb *nb, uint64_t word)
{
    nb->NE = (int64_t)(word & 0xFFFF);
    nb->s_n = (int64_t)((word >> 16) & 0xFFFF);
    nb->NN = (int64_t)(word >> 32);
}

/* The window at pixel (y, 0): *first_above* is L(y - 1, 0) (anything on row 0), *above* the
 * words the row above wrote. */
KMC_ALWAYS_INLINE kmc_cm_nb kmc_cm_nb_start(const uint64_t *above, int64_t y, int64_t first_above)
{
    kmc_cm_nb nb;
    nb.s_w = 0;
    if (y == 0) { /* left of row 0: 0; N, NW, NE, NN = W */
        nb.W = nb.WW = nb.N = nb.NW = nb.NE = nb.NN = 0;
        nb.s_n = 0;
    } else {
        nb.W = nb.WW = nb.N = first_above; /* the virtual column left of row y: L(y - 1, 0), twice */
        kmc_cm_nb_above(&nb, above[1]);
        nb.NW = y >= 2 ? nb.NN : 0; /* L(y - 2, 0), or 0 */
    }
    return nb;
}

/* Slide the window from pixel (y, x), now coded as *label* with state *state*, to (y, x + 1),
 * first writing the word of column x - 1 for the row below: NE = *label*, sN = s(y, x - 1), NN =
 * NW (on row 0, NW = W: the virtual row above row 0 repeats row 0).  After the row's last pixel
 * the window reads the word of column w, which is not used; kmc_cm_row_last writes column w - 1. */
KMC_ALWAYS_INLINE void kmc_cm_nb_next(kmc_cm_nb *nb, uint64_t *above, int64_t y, int64_t x, int64_t label,
                                      int64_t state)
{
    above[x] = kmc_cm_above_word(label, nb->s_w, nb->NW);
    nb->WW = nb->W;
    nb->W = label;
    nb->s_w = state;
    if (y == 0) {
        nb->N = nb->NW = nb->NE = nb->NN = label;
    } else {
        nb->NW = nb->N;
        nb->N = nb->NE;
        kmc_cm_nb_above(nb, above[x + 2]);
    }
}

/* After the row's last pixel (the window slid past it): the word of column w - 1 for the row
 * below, whose NE is the virtual label right of the row, a repeat of its last one. */
KMC_ALWAYS_INLINE void kmc_cm_row_last(const kmc_cm_nb *nb, uint64_t *above, int64_t w)
{
    above[w] = kmc_cm_above_word(nb->W, nb->s_w, nb->NW);
}

/* §5.4: the pattern, 11 bits: which neighbours agree, and the states sW and sN.  Every pixel's
 * path starts from it: it also says whether the neighbourhood is flat (§5.2), holds the flat
 * context (§5.3) and which neighbours repeat an earlier candidate. */
KMC_ALWAYS_INLINE int64_t kmc_cm_pattern(const kmc_cm_nb *nb)
{
    return (int64_t)(nb->W == nb->N) | ((int64_t)(nb->W == nb->NW) << 1) | ((int64_t)(nb->N == nb->NW) << 2) |
           ((int64_t)(nb->N == nb->NE) << 3) | ((int64_t)(nb->W == nb->NE) << 4) |
           ((int64_t)(nb->W == nb->WW) << 5) | ((int64_t)(nb->N == nb->NN) << 6) | (nb->s_w << 7) | (nb->s_n << 9);
}

/* §5.2: W = N = NW = NE, from the pattern: [W = N], [N = NW] and [N = NE] (bits 0, 2 and 3). */
KMC_ALWAYS_INLINE int kmc_cm_is_flat(int64_t pat)
{
    return (pat & 13) == 13;
}

/* §5.3: the flat context [W = WW] | [N = NN] << 1 | sW << 2 | sN << 4, 0 ..= 63: the pattern's bits
 * 5 to 10. */
KMC_ALWAYS_INLINE int64_t kmc_cm_flat_ctx(int64_t pat)
{
    return pat >> 5;
}

/* §5.4 (and §9.4): which of W, N, NW, NE (bits 0 to 3) are candidates: each is dropped if it
 * equals an earlier one (the pattern knows all but NE = NW) or, with *match*, the match model's
 * refused label *M* (-1 if none, which no label equals). */
KMC_ALWAYS_INLINE unsigned kmc_cm_candidate_set(const kmc_cm_nb *nb, int64_t pat, const int match, int64_t M)
{
    return (unsigned)(!match || nb->W != M) | (unsigned)(!(pat & 1) && (!match || nb->N != M)) << 1 |
           (unsigned)(!(pat & 6) && (!match || nb->NW != M)) << 2 |
           (unsigned)(!(pat & 24) && nb->NE != nb->NW && (!match || nb->NE != M)) << 3;
}

/* §5.4 (and §9.4): the candidates in rank order into cand[]; returns how many. */
KMC_ALWAYS_INLINE int kmc_cm_candidates(const kmc_cm_nb *nb, int64_t pat, const int match, int64_t M,
                                        int64_t cand[4])
{
    const unsigned set = kmc_cm_candidate_set(nb, pat, match, M);
    int nc = 0;
    if (set & 1)
        cand[nc++] = nb->W;
    if (set & 2)
        cand[nc++] = nb->N;
    if (set & 4)
        cand[nc++] = nb->NW;
    if (set & 8)
        cand[nc++] = nb->NE;
    return nc;
}

/* §5.4: the part of table B's key that does not depend on the rank (0 unless *pair_flags*). */
KMC_ALWAYS_INLINE uint32_t kmc_cm_key_b(int pair_flags, const kmc_cm_nb *nb, int64_t pat)
{
    return pair_flags ? (uint32_t)((((((pat & 31) << 6) | nb->W) << 6) | nb->N) << 2) : 0;
}

/* §5.4: the index into table A of candidate *cj* of rank *j*. */
KMC_ALWAYS_INLINE size_t kmc_cm_cand_index_a(int64_t j, int64_t pat, int64_t cj)
{
    return kmc_cm_hash((uint32_t)((((j << 11) | pat) << 16) | cj), KMC_CM_HASH_BITS);
}

/* §5.4: the index into table Bp of rank *j*. */
KMC_ALWAYS_INLINE size_t kmc_cm_cand_index_b(int pair_flags, uint32_t key_b, int64_t j, int64_t pat)
{
    return pair_flags ? kmc_cm_hash(key_b | (uint32_t)j, KMC_CM_HASH_BITS) : (size_t)((j << 11) | pat);
}

/* ---------------------------------------------------------------------------
 * §5.5 Escape
 * ------------------------------------------------------------------------- */
/* §5.5: the rows of E1 and E2 the escape tree of a pixel with these neighbours walks. */
KMC_ALWAYS_INLINE void kmc_cm_escape_rows(const kmc_cm_model *m, const kmc_cm_nb *nb, size_t *row_a, size_t *row_b)
{
    if (m->small) {
        *row_a = (size_t)((nb->W * m->k + nb->N) << m->bits);
        *row_b = (size_t)((nb->NW * m->k + nb->NE) << m->bits);
    } else {
        *row_a = (size_t)((nb->W & m->row_mask) << m->bits);
        *row_b = (size_t)((nb->N & m->row_mask) << m->bits);
    }
}

/* §5.5: the bound *top* = k + 2^B of kmc_cm_escape_skip. */
KMC_ALWAYS_INLINE int64_t kmc_cm_escape_top(int64_t k, int bits)
{
    return k + ((int64_t)1 << bits);
}

/* §5.5: whether every label under the 1 branch of the node *child* | 1 (child = 2 x node, node at
 * depth d, shift = B - 1 - d) is >= k, so that the bit is 0 and not coded.  The spec's test,
 * ((child | 1) - 2^(d + 1)) << shift >= k, with 2^(d + 1) << shift = 2^B moved to the right. */
KMC_ALWAYS_INLINE int kmc_cm_escape_skip(int64_t child, int shift, int64_t top)
{
    return ((child | 1) << shift) >= top;
}

/* ---------------------------------------------------------------------------
 * §9 The match model (method cmm)
 * ------------------------------------------------------------------------- */
/* §9.2: the hash of the neighbourhood W, N, NW, NE, WW, NN (32 bits; its top t bits are T's slot). */
KMC_ALWAYS_INLINE uint32_t kmc_cm_match_key(int64_t W, int64_t N, int64_t NW, int64_t NE, int64_t WW, int64_t NN)
{
    uint32_t key = 0;
    key = (key ^ (uint32_t)W) * KMC_CM_GOLDEN;
    key = (key ^ (uint32_t)N) * KMC_CM_GOLDEN;
    key = (key ^ (uint32_t)NW) * KMC_CM_GOLDEN;
    key = (key ^ (uint32_t)NE) * KMC_CM_GOLDEN;
    key = (key ^ (uint32_t)WW) * KMC_CM_GOLDEN;
    key = (key ^ (uint32_t)NN) * KMC_CM_GOLDEN;
    return key;
}

/* §9.3: the match decision's index into MA, lq = min(ml, 15). */
KMC_ALWAYS_INLINE size_t kmc_cm_match_index_a(int64_t lq, const kmc_cm_nb *nb, int64_t M, int flat)
{
    return (size_t)((lq << 3) | (int64_t)(M == nb->W) | ((int64_t)(M == nb->N) << 1) | ((int64_t)flat << 2));
}

/* §9.3: the match decision's index into MB. */
KMC_ALWAYS_INLINE size_t kmc_cm_match_index_b(int64_t lq, const kmc_cm_nb *nb, int64_t M)
{
    return kmc_cm_hash((uint32_t)((((lq << 3) | (nb->s_w << 1) | (int64_t)(M == nb->N)) << 16) | M),
                       KMC_CM_HASH_BITS);
}

/* §9.4: the flat context ctx' into F', from §5.3's ctx. */
KMC_ALWAYS_INLINE int64_t kmc_cm_match_flat_ctx(int64_t ctx, int64_t lq, int64_t M, const kmc_cm_nb *nb)
{
    return M == nb->W ? ctx + 64 * (1 + lq) : ctx;
}

/* ---------------------------------------------------------------------------
 * §10 The 2-D match model (method cm2d)
 * ------------------------------------------------------------------------- */
/* §10.1: the 2-D model's state: recent offsets, most recent first, and its prediction. */
typedef struct {
    int64_t off[KMC_CM_2D_OFFSETS]; /* positive offsets back from the pixel; 0 for none yet */
    int64_t run;                    /* right predictions in a row (0 again when an offset moves to the front) */
    int64_t score;                  /* how many of W, N, NW, NE agree under off[0] (3 or 4 where used) */
    int64_t P;                      /* the prediction, -1 for none */
} kmc_cm_2d;

/* §10.1: the state at the start of a strip. */
KMC_ALWAYS_INLINE void kmc_cm_2d_init(kmc_cm_2d *t)
{
    memset(t, 0, sizeof *t);
    t->P = -1;
}

/* §10.2: the prediction of pixel (y, x) at position *i* of a strip *w* wide, from the labels so
 * far *lin* (positions 0 ..= i - 1 written): the offset under which most of W, N, NW, NE agree
 * with their counterparts moves to the front and its label becomes P (else P = -1). */
KMC_ALWAYS_INLINE void kmc_cm_2d_predict(kmc_cm_2d *t, const uint16_t *lin, const kmc_cm_nb *nb, int64_t i,
                                         int64_t y, int64_t x, int64_t w)
{
    t->P = -1;
    if (y == 0 || x == 0 || x + 1 >= w)
        return;
    int64_t best = -1;
    int bi = 0;
    for (int j = 0; j < KMC_CM_2D_OFFSETS; j++) {
        const int64_t o = t->off[j];
        if (o < 2 || i - o - w - 1 < 0)
            continue; /* o = 1 is W itself; every counterpart must be a coded position */
        const int64_t q = i - o;
        const int64_t sc = (int64_t)(lin[q - 1] == nb->W) + (int64_t)(lin[q - w] == nb->N) +
                           (int64_t)(lin[q - w - 1] == nb->NW) + (int64_t)(lin[q - w + 1] == nb->NE);
        if (sc > best) {
            best = sc;
            bi = j;
            if (sc == 4)
                break; /* no later offset can score more: the first of equals wins */
        }
    }
    if (best < 0)
        return;
    if (bi != 0) { /* move to front; the run starts again */
        const int64_t o = t->off[bi];
        for (int j = bi; j > 0; j--)
            t->off[j] = t->off[j - 1];
        t->off[0] = o;
        t->run = 0;
    }
    t->P = lin[i - t->off[0]];
    t->score = best;
}

/* §10.2 for pixel (y, x) at position *i*: the prediction (kmc_cm_2d_predict), and, unless the pixel
 * is *flat*, the slot of T its neighbourhood hashes to, which takes i.  Returns what that slot held
 * (-1 if none, or if the pixel is flat): kmc_cm_2d_after's *q*. */
KMC_ALWAYS_INLINE int64_t kmc_cm_2d_begin(kmc_cm_2d *t, kmc_cm_model *m, const kmc_cm_nb *nb, int64_t i, int64_t y,
                                          int64_t x, int64_t w, int flat)
{
    kmc_cm_2d_predict(t, m->lin, nb, i, y, x, w);
    if (flat)
        return -1;
    const uint32_t slot = kmc_cm_match_key(nb->W, nb->N, nb->NW, nb->NE, nb->WW, nb->NN) >> (32 - m->t_bits);
    const int64_t q = m->m_pos[slot];
    m->m_pos[slot] = (int32_t)i;
    return q;
}

/* §10.3: the run quantised, 0 ..= 3. */
KMC_ALWAYS_INLINE int64_t kmc_cm_2d_runq(const kmc_cm_2d *t)
{
    return t->run < 2 ? t->run : t->run < 8 ? 2 : 3;
}

/* §10.3: whether the 2-D decision is coded. */
KMC_ALWAYS_INLINE int kmc_cm_2d_decides(const kmc_cm_2d *t, const kmc_cm_nb *nb, int flat)
{
    return t->P >= 0 && t->score >= 3 && !(flat && t->P == nb->W);
}

/* §10.3: the 2-D decision's index into DA. */
KMC_ALWAYS_INLINE size_t kmc_cm_2d_index_a(const kmc_cm_2d *t, const kmc_cm_nb *nb, int flat)
{
    return (size_t)(((t->score - 3) << 5) | (kmc_cm_2d_runq(t) << 3) | ((int64_t)flat << 2) |
                    ((int64_t)(t->P == nb->W) << 1) | (int64_t)(t->P == nb->N));
}

/* §10.3: the 2-D decision's index into DB. */
KMC_ALWAYS_INLINE size_t kmc_cm_2d_index_b(const kmc_cm_2d *t, const kmc_cm_nb *nb)
{
    return kmc_cm_hash((uint32_t)((t->P << 8) | ((t->score - 3) << 4) | (kmc_cm_2d_runq(t) << 2) | nb->s_w),
                       KMC_CM_HASH_BITS);
}

/* §10.4: which of W, N, NW, NE (bits 0 to 3, as kmc_cm_candidate_set) are not the refused P, *X*. */
KMC_ALWAYS_INLINE unsigned kmc_cm_2d_candidate_mask(const kmc_cm_nb *nb, int64_t X)
{
    return (unsigned)(nb->W != X) | (unsigned)(nb->N != X) << 1 | (unsigned)(nb->NW != X) << 2 |
           (unsigned)(nb->NE != X) << 3;
}

/* §10.5: after pixel i is known as *label*.  *q* is what T held at the pixel's slot before §10.2
 * wrote i there (-1 if none, or if the pixel was flat). */
KMC_ALWAYS_INLINE void kmc_cm_2d_after(kmc_cm_2d *t, const uint16_t *lin, int64_t i, int64_t label, int64_t q)
{
    if (q >= 0 && lin[q] == label) { /* a neighbourhood seen before whose label repeats: its offset joins, last */
        const int64_t o = i - q;
        int j = 0;
        while (j < KMC_CM_2D_OFFSETS && t->off[j] != o)
            j++;
        if (j == KMC_CM_2D_OFFSETS)
            t->off[KMC_CM_2D_OFFSETS - 1] = o;
    }
    if (t->P >= 0)
        t->run = t->P == label ? t->run + 1 : 0;
}

/* ---------------------------------------------------------------------------
 * §11 Method cmx: cm2d with a logistic mixer
 * ------------------------------------------------------------------------- */
/* cmx walks a strip exactly as cm2d does (§10), and codes its flat decision as cm2d does.  Every
 * other decision (the 2-D one, the candidates, the escape bits) takes its probability from a
 * logistic mixer over four counters (the two cm2d uses, a counter of table X hashed on a wide
 * neighbourhood, one of the direct table PD) and a bias; afterwards the weights learn, then every
 * counter used gets the update of §3. */

/* Slots (log2) of table X: enough for the strip's labels, within these bounds (XMAX is the upper). */
#define KMC_CMX_WIDE_MIN_BITS 12
#define KMC_CMX_WIDE_MAX_BITS 20
/* Counters of the direct table PD (candidates from 256, escape bits from 512). */
#define KMC_CMX_PD_SIZE 1024
/* Weight sets: candidate rank j at 4 j + sW, escape bit of depth d at 16 + d, the 2-D decision from 32. */
#define KMC_CMX_SETS 48
#define KMC_CMX_SET_ESCAPE 16
#define KMC_CMX_SET_2D 32
/* Inputs of a set: counters a and b, the bias, X's counter, PD's counter (weights in 16.16). */
#define KMC_CMX_INPUTS 5
#define KMC_CMX_WEIGHT_INIT 32768 /* a and b start at one half each: the mean of cm2d, in the stretched domain */
/* Weights stay within +-2^22 (64.0): far beyond what training reaches, and the dot product of
 * five inputs below 2^11 cannot overflow whatever corrupt data drives the updates. */
#define KMC_CMX_WEIGHT_MAX (1 << 22)
#define KMC_CMX_BIAS 256 /* the bias input, in the stretched domain */
#define KMC_CMX_RATE 64  /* learning rate, in 1 / 65536 */
/* Stretched probabilities (the mixer's domain) lie in -STRETCH_MAX ..= STRETCH_MAX. */
#define KMC_CMX_STRETCH_MAX 2047

/* §11: squash(d) = 4096 / (1 + e^(-d / 256)) at d = -2048, -1920, ..., 2048, rounded; squash
 * interpolates between these 33 points. */
static const int32_t kmc_cmx_squash_points[33] = {
    1,    2,    4,    6,    10,   17,   27,   45,   74,   120,  194,  311,  488,  747,  1102, 1546, 2048,
    2550, 2994, 3349, 3608, 3785, 3902, 3976, 4022, 4051, 4069, 4079, 4086, 4090, 4092, 4094, 4095,
};

/* §11: squash of a stretched probability d (clamped to -2047 ..= 2047): a 12-bit probability, 1 ..= 4095. */
KMC_ALWAYS_INLINE int32_t kmc_cmx_squash(int32_t d)
{
    d = d > KMC_CMX_STRETCH_MAX ? KMC_CMX_STRETCH_MAX : d < -KMC_CMX_STRETCH_MAX ? -KMC_CMX_STRETCH_MAX : d;
    const int32_t f = d & 127, i = (d >> 7) + 16; /* d >> 7 is the floor */
    return (kmc_cmx_squash_points[i] * (128 - f) + kmc_cmx_squash_points[i + 1] * f + 64) >> 7;
}

/* §11: the mixer's state for one strip: its tables, weights and the counters of X and PD. */
typedef struct {
    int16_t stretch[4096];                       /* stretch(p): the least d with squash(d) >= p, else 2047 */
    int16_t squash[2 * KMC_CMX_STRETCH_MAX + 1]; /* squash(d) at d + 2047 */
    int32_t weight[KMC_CMX_SETS][KMC_CMX_INPUTS];
    uint32_t pd[KMC_CMX_PD_SIZE]; /* PD */
    uint32_t *wide;               /* X, 2^wide_bits counters */
    int wide_bits;
} kmc_cmx;

/* §11: slots (log2) of X for a strip of *labels* labels: ceil(log2(labels)) within MIN_BITS ..= MAX_BITS. */
KMC_ALWAYS_INLINE int kmc_cmx_wide_bits(int64_t labels)
{
    int bits = KMC_CMX_WIDE_MIN_BITS;
    while (bits < KMC_CMX_WIDE_MAX_BITS && ((int64_t)1 << bits) < labels)
        bits++;
    return bits;
}

/* Create the mixer of a strip of *labels* labels: every weight set (32768, 32768, 0, 0, 0), every
 * counter of X and PD at COUNTER_INIT.  Returns a new mixer, or NULL when out of memory. */
static inline kmc_cmx *kmc_cmx_new(int64_t labels)
{
    kmc_cmx *c = malloc(sizeof *c);
    if (c == NULL)
        return NULL;
    c->wide_bits = kmc_cmx_wide_bits(labels);
    const size_t slots = (size_t)1 << c->wide_bits;
    c->wide = malloc(slots * sizeof(uint32_t));
    if (c->wide == NULL) {
        free(c);
        return NULL;
    }
    for (size_t i = 0; i < slots; i++)
        c->wide[i] = KMC_CM_COUNTER_INIT;
    for (size_t i = 0; i < KMC_CMX_PD_SIZE; i++)
        c->pd[i] = KMC_CM_COUNTER_INIT;
    for (int s = 0; s < KMC_CMX_SETS; s++) {
        memset(c->weight[s], 0, sizeof c->weight[s]);
        c->weight[s][0] = c->weight[s][1] = KMC_CMX_WEIGHT_INIT;
    }
    for (int32_t d = -KMC_CMX_STRETCH_MAX; d <= KMC_CMX_STRETCH_MAX; d++)
        c->squash[d + KMC_CMX_STRETCH_MAX] = (int16_t)kmc_cmx_squash(d);
    int32_t next = 0; /* squash is non-decreasing: fill stretch up to each value it reaches */
    for (int32_t d = -KMC_CMX_STRETCH_MAX; d <= KMC_CMX_STRETCH_MAX; d++) {
        for (const int32_t v = c->squash[d + KMC_CMX_STRETCH_MAX]; next <= v; next++)
            c->stretch[next] = (int16_t)d;
    }
    for (; next < 4096; next++)
        c->stretch[next] = KMC_CMX_STRETCH_MAX;
    return c;
}

/* Free what kmc_cmx_new() allocated. */
static inline void kmc_cmx_free(kmc_cmx *c)
{
    if (c != NULL)
        free(c->wide);
    free(c);
}

/* §11: a counter word as a mixer input: the stretch of its 12-bit probability (§3). */
KMC_ALWAYS_INLINE int32_t kmc_cmx_input(const kmc_cmx *c, uint32_t word)
{
    return c->stretch[kmc_cm_p12(word >> 10)];
}

/* §11: the mixed 12-bit probability (1 ..= 4095) of weight set *w* over the inputs *x* of the four
 * counters (a, b, X, PD): squash of floor(sum of w_i x_i / 2^16), the bias input 256. */
KMC_ALWAYS_INLINE int32_t kmc_cmx_mix(const kmc_cmx *c, const int32_t *w, const int32_t x[4])
{
    const int64_t dot = (int64_t)w[0] * x[0] + (int64_t)w[1] * x[1] + (int64_t)w[2] * KMC_CMX_BIAS +
                        (int64_t)w[3] * x[2] + (int64_t)w[4] * x[3];
    int64_t d = dot >> 16; /* the floor (arithmetic shift, asserted in §3) */
    d = d > KMC_CMX_STRETCH_MAX ? KMC_CMX_STRETCH_MAX : d < -KMC_CMX_STRETCH_MAX ? -KMC_CMX_STRETCH_MAX : d;
    return c->squash[d + KMC_CMX_STRETCH_MAX];
}

/* §11: one weight moved by input *x* times the error, within +-WEIGHT_MAX. */
KMC_ALWAYS_INLINE int32_t kmc_cmx_learned(int32_t w, int32_t x, int32_t err)
{
    int64_t v = (int64_t)w + kmc_cm_floor16((int64_t)x * err);
    v = v > KMC_CMX_WEIGHT_MAX ? KMC_CMX_WEIGHT_MAX : v < -KMC_CMX_WEIGHT_MAX ? -KMC_CMX_WEIGHT_MAX : v;
    return (int32_t)v;
}

/* §11: after a decision coded *bit* with the mixed probability *p*: weight set *w* learns,
 * err = ((bit << 12) - p) x RATE. */
KMC_ALWAYS_INLINE void kmc_cmx_learn(int32_t *w, const int32_t x[4], int32_t p, int bit)
{
    const int32_t err = (((int32_t)bit << 12) - p) * KMC_CMX_RATE;
    w[0] = kmc_cmx_learned(w[0], x[0], err);
    w[1] = kmc_cmx_learned(w[1], x[1], err);
    w[2] = kmc_cmx_learned(w[2], KMC_CMX_BIAS, err);
    w[3] = kmc_cmx_learned(w[3], x[2], err);
    w[4] = kmc_cmx_learned(w[4], x[3], err);
}

/* §11: one step of the wide key: (key ^ v) * 0x9E3779B1 + 0x7F4A7C15 mod 2^32 (v = -1 as all ones). */
KMC_ALWAYS_INLINE uint32_t kmc_cmx_step(uint32_t key, int64_t v)
{
    return (key ^ (uint32_t)v) * KMC_CM_GOLDEN + 0x7F4A7C15u;
}

/* §11: the wide key of pixel (y, x) at position *i* of a strip *w* wide: the neighbours of §5.1
 * (virtual ones included) and NWW = L(y - 1, x - 2), NNE = L(y - 2, x + 1) (-1 where there is no
 * such pixel), from the labels so far *lin*.  W comes last: one step after it is known. */
KMC_ALWAYS_INLINE uint32_t kmc_cmx_wide_key(const kmc_cm_nb *nb, const uint16_t *lin, int64_t i, int64_t y,
                                            int64_t x, int64_t w)
{
    const int64_t nww = y >= 1 && x >= 2 ? (int64_t)lin[i - w - 2] : -1;
    const int64_t nne = y >= 2 && x + 1 < w ? (int64_t)lin[i - 2 * w + 1] : -1;
    uint32_t key = kmc_cmx_step(kmc_cmx_step(kmc_cmx_step(kmc_cmx_step(9, nb->N), nb->NW), nb->NE), nb->WW);
    key = kmc_cmx_step(kmc_cmx_step(kmc_cmx_step(key, nb->NN), nww), nne);
    return kmc_cmx_step(key, nb->W);
}

/* §11: the keys into X of the 2-D decision, of candidate rank j, of escape node *node*. */
KMC_ALWAYS_INLINE uint32_t kmc_cmx_key_2d(uint32_t base, int64_t P)
{
    return kmc_cmx_step(base, P);
}

KMC_ALWAYS_INLINE uint32_t kmc_cmx_key_cand(uint32_t base, int64_t j)
{
    return base + (uint32_t)j + 1;
}

KMC_ALWAYS_INLINE uint32_t kmc_cmx_key_escape(uint32_t base, int64_t node)
{
    return base * 3u + (uint32_t)node * KMC_CM_GOLDEN;
}

/* §11: the 2-D model's score as a field of PD's index: 0 ..= 4, or 5 without a prediction. */
KMC_ALWAYS_INLINE size_t kmc_cmx_pd_score(const kmc_cm_2d *t)
{
    return t->P >= 0 ? (size_t)t->score : 5;
}

/* §11: PD's index for candidate *cj* of rank *j*: 256 | j << 6 | [cj = P] << 5 | score << 2 | runq. */
KMC_ALWAYS_INLINE size_t kmc_cmx_pd_cand(const kmc_cm_2d *t, int64_t j, int64_t cj)
{
    return (size_t)256 | (size_t)j << 6 | (size_t)(cj == t->P) << 5 | kmc_cmx_pd_score(t) << 2 |
           (size_t)kmc_cm_2d_runq(t);
}

/* §11: PD's index for the escape bit at depth *depth* (0 ..= 15) of node *node*, *shift* = B - 1 -
 * depth, with *pnode* = P + 2^B (P's leaf) or -1: 512 | depth << 5 | where << 3 | score, where
 * "where" is 0 if the node is not on P's path (or there is no P), else 1 + P's bit here. */
KMC_ALWAYS_INLINE size_t kmc_cmx_pd_escape(const kmc_cm_2d *t, int depth, int64_t node, int shift, int64_t pnode)
{
    const size_t where = pnode >= 0 && (pnode >> (shift + 1)) == node ? 1 + (size_t)((pnode >> shift) & 1) : 0;
    return (size_t)512 | (size_t)(depth & 15) << 5 | where << 3 | kmc_cmx_pd_score(t);
}

/* §11: the weight set of the 2-D decision: 32 + ((score - 3) << 3 | runq << 1 | [flat]). */
KMC_ALWAYS_INLINE int kmc_cmx_set_2d(const kmc_cm_2d *t, int flat)
{
    return KMC_CMX_SET_2D + (int)(((t->score - 3) << 3) | (kmc_cm_2d_runq(t) << 1) | flat);
}

#endif

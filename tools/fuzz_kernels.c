/* Coverage-guided fuzz target (libFuzzer) for kmcodec's C kernels, called directly, not through Python.
 *
 * tools/fuzz.py mutates whole .kmc files and runs them through the Python API: it tests the
 * container, the parsers and the contract of the decoder, but reaches a kernel only with what
 * a valid-looking file hands it.  This harness feeds the kernels themselves with arbitrary
 * arguments in the ranges their headers allow, in buffers of exactly the size the header
 * promises (so AddressSanitizer sees any access past them), and checks their outputs:
 *
 *   0  kmc_png_unfilter: against a plain byte-at-a-time unfilter with the specification's
 *      Paeth predictor (PNG §9.4, the three-distance form), every filter type, bpp 1..8,
 *      row strides, unknown filter types (the rows from the bad one on must stay unwritten);
 *   1  kmc_dither and kmc_dither_weighted: against a plain port of the numba kernel (error rows
 *      in memory, an exhaustive nearest-entry search), 1..6 channels, uint8 and uint16 labels,
 *      any carry (int64 values that wrap), any first row, alpha, strength and limit, and any
 *      dither map (the share of the arriving error each pixel takes) or none;
 *   2  kmc_dither_nearest_other: against brute force (sorted order), and any order within
 *      bounds (only memory safety then);
 *   3  kmc_masking_weights: against the definition written out pixel by pixel (Y, the
 *      Laplacian with edge columns repeated, its 5 x 5 box sum, 1 + span x scale / (scale + A)),
 *      1..4 channels, any span and scale the binding allows, and the sizes it refuses (too few
 *      rows, no columns, 0 or 5 channels: KMC_MASKING_ESIZE and nothing written);
 *   4  the distinct-colour kernels of quant.c: kmc_quant_mark, _rank, _count (with per-pixel
 *      weights and without), _keys_of and _lookup (1, 2 and 4-byte mappings), against a plain
 *      sort of the pixels' keys, 1..4 channels of 1..8 key bits (keys below 2^16), alpha, any
 *      pixel bytes (a byte wider than the key bits makes keys overlap or run past the bitmap),
 *      and bitmaps, counts, key lists and mappings one short (KMC_QUANT_ERANGE, nothing written
 *      out of bounds);
 *   5  kmc_cm_decode (methods cm, cmm, cm2d and cmx), when compiled with KMC_FUZZ_CM (tools/fuzz_kernels.sh
 *      does so when kmcodec/csrc/cm.c exists, or with KMC_CM_SRC): the strip's bytes are the
 *      fuzzer's; when the decoder did not run out of bytes, the decoded labels must all be below
 *      k, and encoding them again and decoding that must give them back; kmc_cm_palette
 *      expands them.  The interface is cm.h's.
 *
 * The first input byte picks the target, the next ones its parameters, the rest its data
 * (bytes past the end read as 0, like the decoder's reader).  Build and run:
 * tools/fuzz_kernels.sh.  Any finding aborts with the check that failed.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dither.h"
#include "masking.h"
#include "png_unfilter.h"
#include "quant.h"
#ifdef KMC_FUZZ_CM
#include "cm.h"
#endif

#define CHECK(cond)                                                                                                  \
    do {                                                                                                             \
        if (!(cond)) {                                                                                               \
            fprintf(stderr, "fuzz_kernels: check failed: %s (%s:%d)\n", #cond, __FILE__, __LINE__);                  \
            abort();                                                                                                 \
        }                                                                                                            \
    } while (0)

/* ------------------------------------------------------------------------------------------ */
/* The input, read from the front; 0 past its end. */

typedef struct {
    const uint8_t *p;
    size_t n;
} Input;

static unsigned take8(Input *in)
{
    if (in->n == 0)
        return 0;
    in->n--;
    return *in->p++;
}

static uint64_t take(Input *in, int bytes)
{
    uint64_t v = 0;
    for (int i = 0; i < bytes; i++)
        v |= (uint64_t)take8(in) << (8 * i);
    return v;
}

/* A new heap buffer of exactly len bytes (at least one allocated) filled from the input. */
static uint8_t *take_buffer(Input *in, size_t len)
{
    uint8_t *b = malloc(len ? len : 1);
    CHECK(b != NULL);
    for (size_t i = 0; i < len; i++)
        b[i] = (uint8_t)take8(in);
    return b;
}

static void *xmalloc(size_t len)
{
    void *b = malloc(len ? len : 1);
    CHECK(b != NULL);
    return b;
}

/* ------------------------------------------------------------------------------------------ */
/* 0: PNG unfilter */

static int paeth_spec(int a, int b, int c)
{
    int p = a + b - c;
    int pa = abs(p - a), pb = abs(p - b), pc = abs(p - c);
    if (pa <= pb && pa <= pc)
        return a;
    if (pb <= pc)
        return b;
    return c;
}

/* Byte at a time, as PNG §9.2-9.4 write it. */
static ptrdiff_t unfilter_reference(const uint8_t *filtered, size_t fstride, const uint8_t *previous, uint8_t *out,
                                    size_t ostride, size_t h, size_t n, size_t bpp)
{
    for (size_t r = 0; r < h; r++) {
        const uint8_t *f = filtered + r * fstride;
        const uint8_t *above = r ? out + (r - 1) * ostride : previous;
        uint8_t *row = out + r * ostride;
        if (f[0] > 4)
            return (ptrdiff_t)r;
        for (size_t i = 0; i < n; i++) {
            int a = i >= bpp ? row[i - bpp] : 0, b = above[i], c = i >= bpp ? above[i - bpp] : 0, pred = 0;
            switch (f[0]) {
            case 0: pred = 0; break;
            case 1: pred = a; break;
            case 2: pred = b; break;
            case 3: pred = (a + b) / 2; break;
            case 4: pred = paeth_spec(a, b, c); break;
            }
            row[i] = (uint8_t)(f[1 + i] + pred);
        }
    }
    return -1;
}

static void fuzz_unfilter(Input *in)
{
    const size_t bpp = 1 + take8(in) % KMC_PNG_MAX_BPP;
    const size_t n = take(in, 2) % 1025;
    const unsigned pads = take8(in);
    const size_t fstride = n + 1 + (pads & 3), ostride = n + ((pads >> 2) & 3);
    const int zero_previous = (pads >> 4) & 1;
    uint8_t *previous = zero_previous ? calloc(n ? n : 1, 1) : take_buffer(in, n);
    CHECK(previous != NULL);
    size_t h = in->n / fstride + ((pads >> 5) & 1); /* sometimes a row more than the data: zeros */
    if (h > 64)
        h = 64;
    const size_t flen = h ? (h - 1) * fstride + n + 1 : 0, olen = h ? (h - 1) * ostride + n : 0;
    uint8_t *filtered = take_buffer(in, flen);
    for (size_t r = 0; r < h; r++) { /* mostly known filter types, some unknown */
        uint8_t *kind = filtered + r * fstride;
        *kind = *kind < 240 ? *kind % 5 : *kind;
    }
    uint8_t *out = xmalloc(olen), *expect = xmalloc(olen);
    memset(out, 0x5A, olen);
    memset(expect, 0x5A, olen);
    ptrdiff_t got = kmc_png_unfilter(filtered, fstride, previous, out, ostride, h, n, bpp);
    ptrdiff_t want = unfilter_reference(filtered, fstride, previous, expect, ostride, h, n, bpp);
    CHECK(got == want);
    CHECK(memcmp(out, expect, olen) == 0); /* the rows from a bad one on are still 0x5A in both */
    free(previous);
    free(filtered);
    free(out);
    free(expect);
}

/* ------------------------------------------------------------------------------------------ */
/* 1: dither, against a plain port of the numba kernel */

static int64_t wrap_add(int64_t a, int64_t b)
{
    return (int64_t)((uint64_t)a + (uint64_t)b);
}

static int64_t floor_shift(int64_t v, unsigned s)
{
    return v < 0 ? ~(~v >> s) : v >> s;
}

static int64_t clamp(int64_t v, int64_t lo, int64_t hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

/* The lowest index at the smallest squared distance: what numba's pruned search returns. */
static size_t nearest_reference(const int64_t *target, const uint8_t *palette, size_t k, size_t channels)
{
    size_t best = 0;
    int64_t best_d = INT64_MAX;
    for (size_t i = 0; i < k; i++) {
        int64_t d = 0;
        for (size_t c = 0; c < channels; c++) {
            int64_t diff = target[c] - palette[i * channels + c];
            d += diff * diff;
        }
        if (d < best_d) {
            best_d = d;
            best = i;
        }
    }
    return best;
}

static int64_t dither_reference(const uint8_t *image, size_t h, size_t w, size_t channels, const uint8_t *palette,
                                size_t k, int64_t strength, int64_t limit, int alpha, const uint8_t *weights,
                                void *labels, int label_bytes, int64_t *carry, int64_t first_row)
{
    const int FRAC = KMC_DITHER_FRAC;
    const int64_t HALF = (int64_t)1 << (FRAC - 1), TOP = (int64_t)255 << FRAC;
    const size_t row_len = (w + 2) * channels;
    int64_t *here = xmalloc(row_len * sizeof *here), *below = xmalloc(row_len * sizeof *below);
    int64_t *target = xmalloc(channels * sizeof *target), *exact = xmalloc(channels * sizeof *exact);
    memcpy(here, carry, row_len * sizeof *here);
    memset(below, 0, row_len * sizeof *below);
    uint64_t sse = 0;
    for (size_t y = 0; y < h; y++) {
        int forward = (((uint64_t)first_row + y) & 1) == 0;
        ptrdiff_t step = forward ? 1 : -1;
        for (size_t nn = 0; nn < w; nn++) {
            size_t x = forward ? nn : w - 1 - nn, e = x + 1, i;
            const uint8_t *px = image + (y * w + x) * channels;
            if (alpha >= 0 && px[alpha] == 0) {
                memset(target, 0, channels * sizeof *target);
                i = nearest_reference(target, palette, k, channels);
                for (size_t c = 0; c < channels; c++)
                    sse += (uint64_t)palette[i * channels + c] * palette[i * channels + c];
            } else {
                /* the share of the arriving error the pixel takes, in 256ths (weight 255: all of it) */
                const int64_t share = weights ? weights[y * w + x] + (weights[y * w + x] >> 7) : 256;
                for (size_t c = 0; c < channels; c++) {
                    int64_t carried = clamp(here[e * channels + c], -limit, limit);
                    if (share < 256)
                        carried = floor_shift(carried, 8) * share;
                    int64_t wanted = clamp(((int64_t)px[c] << FRAC) + carried, 0, TOP);
                    exact[c] = wanted;
                    target[c] = (wanted + HALF) >> FRAC;
                }
                i = nearest_reference(target, palette, k, channels);
                for (size_t c = 0; c < channels; c++) {
                    int64_t p = palette[i * channels + c], diff = px[c] - p;
                    sse += (uint64_t)(diff * diff);
                    int64_t err = floor_shift((exact[c] - (p << FRAC)) * strength, 8);
                    size_t next = (size_t)((ptrdiff_t)e + step) * channels + c;
                    size_t back = (size_t)((ptrdiff_t)e - step) * channels + c;
                    here[next] = wrap_add(here[next], floor_shift(err * 7, 4));
                    below[back] = wrap_add(below[back], floor_shift(err * 3, 4));
                    below[e * channels + c] = wrap_add(below[e * channels + c], floor_shift(err * 5, 4));
                    below[next] = wrap_add(below[next], floor_shift(err, 4));
                }
            }
            if (label_bytes == 1)
                ((uint8_t *)labels)[y * w + x] = (uint8_t)i;
            else
                ((uint16_t *)labels)[y * w + x] = (uint16_t)i;
        }
        int64_t *t = here;
        here = below;
        below = t;
        memset(below, 0, row_len * sizeof *below);
    }
    memcpy(carry, here, row_len * sizeof *carry);
    free(here);
    free(below);
    free(target);
    free(exact);
    return (int64_t)sse;
}

static void fuzz_dither(Input *in)
{
    const size_t channels = 1 + take8(in) % 6, h = take8(in) % 9, w = take8(in) % 17;
    size_t k = 1 + take(in, 2) % 300;
    const unsigned flags = take8(in);
    if (flags & 1) /* many entries, so a label takes two bytes */
        k = 1 + take(in, 2) % 2048;
    const int label_bytes = k > 256 || (flags & 2) ? 2 : 1;
    const int64_t strength = (int64_t)(take(in, 2) % (KMC_DITHER_MAX_STRENGTH + 1));
    static const int64_t limits[] = {0, 1, (int64_t)1 << 19, (int64_t)3 << 20, KMC_DITHER_MAX_LIMIT};
    const unsigned pick = take8(in);
    const int64_t limit = pick < 5 ? limits[pick] : (int64_t)(take(in, 8) % ((uint64_t)KMC_DITHER_MAX_LIMIT + 1));
    const int alpha = (int)(take8(in) % (channels + 1)) - 1;
    const int64_t first_row = (int64_t)take(in, 8);
    /* a dither map, or none; read before the long buffers, so that short inputs still reach it */
    uint8_t *weights = flags & 8 ? take_buffer(in, h * w) : NULL;
    const size_t row_len = (w + 2) * channels;
    int64_t *carry = xmalloc(row_len * sizeof *carry), *carry_ref = xmalloc(row_len * sizeof *carry_ref);
    for (size_t j = 0; j < row_len; j++) /* small errors, or any int64 (numba wraps; so must the kernel) */
        carry[j] = flags & 4 ? (int64_t)take(in, 8) : (int64_t)(int32_t)take(in, 4);
    memcpy(carry_ref, carry, row_len * sizeof *carry);
    uint8_t *palette = take_buffer(in, k * channels);
    uint8_t *image = take_buffer(in, h * w * channels);
    void *labels = xmalloc(h * w * (size_t)label_bytes), *labels_ref = xmalloc(h * w * (size_t)label_bytes);
    int64_t sse = 0;
    if (weights != NULL || (flags & 16))
        CHECK(kmc_dither_weighted(image, h, w, channels, palette, k, strength, limit, alpha, weights, labels,
                                  label_bytes, carry, first_row, &sse) == 0);
    else
        CHECK(kmc_dither(image, h, w, channels, palette, k, strength, limit, alpha, labels, label_bytes, carry,
                         first_row, &sse) == 0);
    int64_t sse_ref = dither_reference(image, h, w, channels, palette, k, strength, limit, alpha, weights, labels_ref,
                                       label_bytes, carry_ref, first_row);
    CHECK(sse == sse_ref);
    CHECK(memcmp(labels, labels_ref, h * w * (size_t)label_bytes) == 0);
    CHECK(memcmp(carry, carry_ref, row_len * sizeof *carry) == 0);
    free(carry);
    free(carry_ref);
    free(palette);
    free(image);
    free(weights);
    free(labels);
    free(labels_ref);
}

/* ------------------------------------------------------------------------------------------ */
/* 2: nearest_other */

static void fuzz_nearest_other(Input *in)
{
    const size_t channels = 1 + take8(in) % 4, k = 1 + take(in, 2) % 300;
    const int sorted = !(take8(in) & 1);
    uint8_t *palette = take_buffer(in, k * channels);
    int64_t *order = xmalloc(k * sizeof *order), *out = xmalloc(k * sizeof *out);
    for (size_t j = 0; j < k; j++)
        order[j] = (int64_t)j;
    if (sorted) { /* a stable sort by the first channel, as the Python side's argsort */
        for (size_t j = 1; j < k; j++) {
            int64_t v = order[j];
            size_t at = j;
            while (at > 0 && palette[(size_t)order[at - 1] * channels] > palette[(size_t)v * channels]) {
                order[at] = order[at - 1];
                at--;
            }
            order[at] = v;
        }
    } else { /* any permutation: only bounds to check */
        for (size_t j = k - 1; j > 0; j--) {
            size_t other = (size_t)(take(in, 2) % (j + 1));
            int64_t t = order[j];
            order[j] = order[other];
            order[other] = t;
        }
    }
    kmc_dither_nearest_other(palette, k, channels, order, out);
    for (size_t i = 0; i < k; i++) {
        int64_t best = -1;
        for (size_t j = 0; j < k; j++) {
            int64_t d = 0;
            for (size_t c = 0; c < channels; c++) {
                int64_t diff = (int64_t)palette[i * channels + c] - palette[j * channels + c];
                d += diff * diff;
            }
            if (d > 0 && (best < 0 || d < best))
                best = d;
        }
        if (sorted)
            CHECK(out[i] == best);
        else
            CHECK(out[i] >= -1 && out[i] <= (int64_t)channels * 255 * 255);
    }
    free(palette);
    free(order);
    free(out);
}

/* ------------------------------------------------------------------------------------------ */
/* 4: the distinct-colour kernels */

/* quant.h's key: channel c's byte at bit bits x (channels - 1 - c), the first most significant, all
 * ORed (a byte wider than bits overlaps the next field up); a fully transparent pixel keys 0. */
static uint64_t key_reference(const uint8_t *p, int64_t channels, int has_alpha, int bits)
{
    uint64_t key = 0;
    for (int64_t c = 0; c < channels; c++)
        key |= (uint64_t)p[c] << (bits * (channels - 1 - c));
    return has_alpha && p[channels - 1] == 0 ? 0 : key;
}

static int compare_u64(const void *a, const void *b)
{
    const uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

static void fuzz_quant(Input *in)
{
    const int64_t channels = 1 + take8(in) % 4;
    const int has_alpha = (int)(take8(in) & 1);
    const int bits = 1 + (int)(take8(in) % (unsigned)(16 / channels < 8 ? 16 / channels : 8));
    const int64_t n = (int64_t)(take(in, 2) % 512);
    const unsigned short_by = take8(in); /* which arrays are one short */
    uint8_t *pixels = take_buffer(in, (size_t)(n * channels));
    uint8_t *weights = (short_by & 16) ? take_buffer(in, (size_t)n) : NULL;

    /* the keys, sorted and made unique: what the bitmap must hold */
    uint64_t *keys = xmalloc((size_t)(n + 1) * sizeof *keys), *sorted = xmalloc((size_t)(n + 1) * sizeof *sorted);
    uint64_t top = 0;
    for (int64_t i = 0; i < n; i++) {
        keys[i] = sorted[i] = key_reference(pixels + i * channels, channels, has_alpha, bits);
        top = keys[i] > top ? keys[i] : top;
    }
    qsort(sorted, (size_t)n, sizeof *sorted, compare_u64);
    int64_t unique = 0;
    for (int64_t i = 0; i < n; i++)
        if (unique == 0 || sorted[unique - 1] != sorted[i])
            sorted[unique++] = sorted[i];

    const int64_t need = (int64_t)(top >> 6) + 1; /* words for every key */
    const int64_t words = (short_by & 1) && need > 1 ? need - 1 : need;
    uint64_t *bitmap = calloc((size_t)words, sizeof *bitmap);
    int64_t *ranks = xmalloc((size_t)words * sizeof *ranks);
    CHECK(bitmap != NULL);
    const int marked = kmc_quant_mark(pixels, n, channels, has_alpha, bits, bitmap, words);
    if (words < need) {
        CHECK(marked == KMC_QUANT_ERANGE || n == 0);
        goto done;
    }
    CHECK(marked == 0);
    CHECK(kmc_quant_rank(bitmap, ranks, words) == unique);

    /* keys_of: the sorted keys; one short: ERANGE */
    uint32_t *listed = xmalloc((size_t)(unique + 1) * sizeof *listed);
    CHECK(kmc_quant_keys_of(bitmap, words, listed, unique) == 0);
    for (int64_t j = 0; j < unique; j++)
        CHECK(listed[j] == sorted[j]);
    if (unique > 0)
        CHECK(kmc_quant_keys_of(bitmap, words, listed, unique - 1) == KMC_QUANT_ERANGE);
    free(listed);

    /* count: the weights (or ones) summed per key, modulo 2^32 */
    const int64_t ncounts = (short_by & 2) && unique > 0 ? unique - 1 : unique;
    uint32_t *counts = calloc((size_t)ncounts + 1, sizeof *counts);
    uint32_t *expected = calloc((size_t)unique + 1, sizeof *expected);
    CHECK(counts != NULL && expected != NULL);
    int short_count = 0;
    for (int64_t i = 0; i < n; i++) {
        int64_t at = 0;
        while (sorted[at] != keys[i])
            at++;
        expected[at] += weights != NULL ? weights[i] : 1u;
        short_count |= at >= ncounts;
    }
    const int counted = kmc_quant_count(pixels, weights, n, channels, has_alpha, bits, bitmap, ranks, words, counts,
                                        ncounts);
    if (short_count) {
        CHECK(counted == KMC_QUANT_ERANGE);
    } else {
        CHECK(counted == 0);
        for (int64_t j = 0; j < ncounts; j++)
            CHECK(counts[j] == expected[j]);
    }
    free(counts);
    free(expected);

    /* lookup: each pixel's mapping entry, 1, 2 or 4 bytes; a mapping one short: ERANGE */
    const int itemsize = 1 << (short_by >> 2 & 3) % 3;
    const int64_t nmapping = (short_by & 32) && unique > 0 ? unique - 1 : unique;
    uint8_t *mapping = take_buffer(in, (size_t)(nmapping * itemsize) + 1);
    uint8_t *out = xmalloc((size_t)(n * itemsize) + 1);
    const int looked = kmc_quant_lookup(pixels, n, channels, has_alpha, bits, bitmap, ranks, words, mapping,
                                        nmapping, itemsize, out);
    int short_map = 0;
    for (int64_t i = 0; i < n && !short_map; i++) {
        int64_t at = 0;
        while (sorted[at] != keys[i])
            at++;
        short_map = at >= nmapping;
        if (!short_map && looked == 0)
            CHECK(memcmp(out + i * itemsize, mapping + at * itemsize, (size_t)itemsize) == 0);
    }
    CHECK(looked == (short_map ? KMC_QUANT_ERANGE : 0));
    free(mapping);
    free(out);
done:
    free(pixels);
    free(weights);
    free(keys);
    free(sorted);
    free(bitmap);
    free(ranks);
}

/* ------------------------------------------------------------------------------------------ */
/* 5: the cm / cmm / cm2d / cmx label decoder */

#ifdef KMC_FUZZ_CM
static void fuzz_cm(Input *in)
{
    const unsigned flags = take8(in);
    /* k: half the inputs 2..16 (the small model), 3 in 8 up to 256, 1 in 8 up to 65536: a k of
     * 2^10 or more sets up 2 x 2^20 escape counters three times a run, the slow case. */
    const int64_t k = !(flags & 1)           ? 2 + (int64_t)(take8(in) % 15)
                      : (flags & 0xC0) == 0xC0 ? 2 + (int64_t)(take(in, 2) % 65535)
                                               : 2 + (int64_t)(take8(in) % 255);
    const int64_t h = take8(in) % 33, w = take8(in) % 65, channels = 1 + (flags >> 2) % 4;
    /* the model: cm, cmm, cm2d and cmx for a quarter of the inputs each */
    const int model = (flags >> 1) & 1 ? ((flags >> 4) & 1 ? KMC_CM_MODEL_CMX : KMC_CM_MODEL_CMM)
                                       : ((flags >> 4) & 1 ? KMC_CM_MODEL_CM2D : KMC_CM_MODEL_CM);
    const int64_t stride = w + 3, cells = (h + 2) * stride;
    const size_t n = in->n;
    uint8_t *data = take_buffer(in, n); /* the rest of the input is the strip */
    uint16_t *labels = xmalloc((size_t)cells * sizeof *labels), *again = xmalloc((size_t)cells * sizeof *again);
    for (int64_t j = 0; j < cells; j++) /* the cells may hold anything on entry */
        labels[j] = again[j] = (uint16_t)(0xA5A5u + (uint64_t)j * 40503u);
    uint32_t code = 0;
    int64_t used = kmc_cm_decode(labels, h, w, k, model, data, (int64_t)n, &code);
    CHECK(used >= 0 || used == KMC_CM_NO_MEMORY);
    /* Past the end of the data the decoder stops (§6: truncated strip, which the caller rejects)
     * and leaves the labels after that point as they were: only a strip read within its bytes
     * has labels to check. */
    if (used >= 0 && used <= (int64_t)n) {
        for (int64_t y = 0; y < h; y++)
            for (int64_t x = 0; x < w; x++)
                CHECK(labels[(y + 2) * stride + x + 2] < k);
        /* Encode what came out and decode that: the same labels. */
        int64_t cap = h * (2 * w * (4 + 1 + 17) + 5) + 64, size;
        uint8_t *coded = NULL;
        uint16_t *copy = xmalloc((size_t)cells * sizeof *copy);
        for (;;) {
            memcpy(copy, labels, (size_t)cells * sizeof *copy);
            coded = xmalloc((size_t)cap);
            size = kmc_cm_encode(copy, h, w, k, model, coded, cap);
            if (size != KMC_CM_OUT_OF_ROOM)
                break;
            free(coded);
            cap *= 2;
        }
        CHECK(size >= 0 || size == KMC_CM_NO_MEMORY);
        if (size >= 0) {
            used = kmc_cm_decode(again, h, w, k, model, coded, size, &code);
            CHECK(used >= 0 || used == KMC_CM_NO_MEMORY);
            if (used >= 0)
                for (int64_t y = 0; y < h; y++)
                    CHECK(memcmp(again + (y + 2) * stride + 2, labels + (y + 2) * stride + 2,
                                 (size_t)w * sizeof *labels) == 0);
        }
        /* Expand through a palette of k entries. */
        uint8_t *palette = xmalloc((size_t)(k * channels)), *pixels = xmalloc((size_t)(h * w * channels));
        for (int64_t j = 0; j < k * channels; j++)
            palette[j] = (uint8_t)(j * 7 + (j >> 8));
        CHECK(kmc_cm_palette(labels, h, w, palette, k, channels, pixels) == 0);
        for (int64_t y = 0; y < h; y++)
            for (int64_t x = 0; x < w; x++)
                CHECK(memcmp(pixels + (y * w + x) * channels, palette + labels[(y + 2) * stride + x + 2] * channels,
                             (size_t)channels) == 0);
        free(copy);
        free(coded);
        free(palette);
        free(pixels);
    }
    free(data);
    free(labels);
    free(again);
}
#endif

/* ------------------------------------------------------------------------------------------ */
/* 3: masking weights */

static int64_t luma_at(const uint8_t *pixels, int64_t width, int64_t channels, int64_t r, int64_t c)
{
    c = c < 0 ? 0 : c >= width ? width - 1 : c; /* edge columns repeated outwards */
    const uint8_t *p = pixels + (r * width + c) * channels;
    return channels >= 3 ? p[0] + 2 * p[1] + p[2] : 4 * p[0];
}

static void fuzz_masking(Input *in)
{
    const int64_t rows = take8(in) % 16, width = take8(in) % 20, channels = take8(in) % 6;
    const int32_t span = (int32_t)(take8(in) % 255);                  /* 0 ..= 254, as the binding allows */
    int32_t scale = (int32_t)(1 + take(in, 3) % 1000000);             /* 1 ..= 1,000,000 */
    if ((int64_t)span * scale > INT32_MAX)
        scale = INT32_MAX / (span ? span : 1);
    const int size_ok = rows >= 2 * KMC_MASKING_HALO + 1 && width >= 1 && channels >= 1 && channels <= 4;
    const int64_t out_rows = rows > 2 * KMC_MASKING_HALO ? rows - 2 * KMC_MASKING_HALO : 0;
    uint8_t *pixels = take_buffer(in, (size_t)(rows * width * channels));
    uint8_t *out = xmalloc((size_t)(out_rows * width) + 1);
    memset(out, 0xAB, (size_t)(out_rows * width) + 1);
    int status = kmc_masking_weights(pixels, rows, width, channels, span, scale, out);
    if (!size_ok) {
        CHECK(status == KMC_MASKING_ESIZE);
        for (int64_t i = 0; i <= out_rows * width; i++)
            CHECK(out[i] == 0xAB);
    } else {
        CHECK(status == 0);
        for (int64_t i = 0; i < out_rows; i++) {
            const int64_t r = i + KMC_MASKING_HALO;
            for (int64_t x = 0; x < width; x++) {
                int64_t activity = 0;
                for (int64_t dr = -2; dr <= 2; dr++)
                    for (int64_t dc = -2; dc <= 2; dc++) {
                        int64_t rr = r + dr, cc = x + dc;
                        int64_t v = 4 * luma_at(pixels, width, channels, rr, cc) -
                                    luma_at(pixels, width, channels, rr - 1, cc) -
                                    luma_at(pixels, width, channels, rr + 1, cc) -
                                    luma_at(pixels, width, channels, rr, cc - 1) -
                                    luma_at(pixels, width, channels, rr, cc + 1);
                        activity += v < 0 ? -v : v;
                    }
                CHECK(out[i * width + x] == 1 + (int64_t)span * scale / (scale + activity));
            }
        }
        CHECK(out[out_rows * width] == 0xAB); /* nothing past the output */
    }
    free(pixels);
    free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    Input in = {data, size};
#ifdef KMC_FUZZ_CM
    const unsigned targets = 6;
#else
    const unsigned targets = 5;
#endif
    switch (take8(&in) % targets) {
    case 0: fuzz_unfilter(&in); break;
    case 1: fuzz_dither(&in); break;
    case 2: fuzz_nearest_other(&in); break;
    case 3: fuzz_masking(&in); break;
    case 4: fuzz_quant(&in); break;
#ifdef KMC_FUZZ_CM
    case 5: fuzz_cm(&in); break;
#endif
    }
    return 0;
}

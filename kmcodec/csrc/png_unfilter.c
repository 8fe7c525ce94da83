/* PNG row filters undone: see png_unfilter.h. */
#include "png_unfilter.h"

#include <string.h>

#include "kmc_compiler.h"

/* Bytes per step of the loops that vectorise (Up): copied through locals so that the compiler knows
 * they do not overlap and makes each step a few vector instructions. */
#define CHUNK 16

/* The Paeth predictor (PNG §9.4): of a (left), b (above), c (above left) the nearest to p = a + b - c,
 * ties to a, then b.  p - a = b - c, p - b = a - c, p - c = a + b - 2c: no p needed.  Branch-free:
 * which of the three wins follows the photo's noise, so a branch would be mispredicted half the time. */
#if defined(__clang__)
/* clang's x86 backend turns selects on a loop's dependency chain into branches (its cmov converter),
 * four times slower here; this form has no select to turn.  clang's >> of a negative int is the
 * arithmetic shift (documented, as gcc's), so x >> 31 is all ones for x < 0. */
KMC_ALWAYS_INLINE unsigned paeth(int a, int b, int c)
{
    int pa = b - c, pb = a - c, pc = a + b - 2 * c;
    int sa = pa >> 31, sb = pb >> 31, sc = pc >> 31;
    pa = (pa ^ sa) - sa;
    pb = (pb ^ sb) - sb;
    pc = (pc ^ sc) - sc;
    int take_b = ~((pa - pb - 1) >> 31); /* all ones if pb < pa */
    int near = a ^ ((a ^ b) & take_b);
    int distance = pa ^ ((pa ^ pb) & take_b);
    int take_c = ~((distance - pc - 1) >> 31); /* all ones if pc < distance */
    return (unsigned)(near ^ ((near ^ c) & take_c));
}
#else
/* gcc makes these conditional moves. */
KMC_ALWAYS_INLINE unsigned paeth(int a, int b, int c)
{
    int pa = b - c, pb = a - c, pc = a + b - 2 * c;
    pa = pa < 0 ? -pa : pa;
    pb = pb < 0 ? -pb : pb;
    pc = pc < 0 ? -pc : pc;
    int near = pb < pa ? b : a;
    int distance = pb < pa ? pb : pa;
    return (unsigned)(pc < distance ? c : near);
}
#endif

/* The three sequential filters below go a pixel at a time with the left pixel's bytes (and Paeth's
 * upper left) held in locals a[], c[], one chain per byte of the pixel, so that with bpp a constant
 * the chains run side by side in registers; a last partial pixel (n not a multiple of bpp) reads
 * its neighbours from the rows. */

/* Filter type 1: each byte plus the byte bpp to its left (0 for the first pixel). */
KMC_ALWAYS_INLINE void sub_row(const uint8_t *f, uint8_t *out, size_t n, size_t bpp)
{
    unsigned a[KMC_PNG_MAX_BPP] = {0};
    size_t first = bpp < n ? bpp : n;
    KMC_UNROLL(8)
    for (size_t l = 0; l < first; l++)
        out[l] = (uint8_t)(a[l] = f[l]);
    size_t i = bpp;
    for (; i + bpp <= n; i += bpp) {
        KMC_UNROLL(8)
        for (size_t l = 0; l < bpp; l++) {
            a[l] = (uint8_t)(f[i + l] + a[l]);
            out[i + l] = (uint8_t)a[l];
        }
    }
    for (; i < n; i++)
        out[i] = (uint8_t)(f[i] + out[i - bpp]);
}

/* Filter type 2: each byte plus the one above. */
KMC_ALWAYS_INLINE void up_row(const uint8_t *f, const uint8_t *above, uint8_t *out, size_t n)
{
    size_t i = 0;
    for (; i + CHUNK <= n; i += CHUNK) {
        uint8_t x[CHUNK], y[CHUNK];
        memcpy(x, f + i, CHUNK);
        memcpy(y, above + i, CHUNK);
        for (size_t j = 0; j < CHUNK; j++)
            x[j] = (uint8_t)(x[j] + y[j]);
        memcpy(out + i, x, CHUNK);
    }
    for (; i < n; i++)
        out[i] = (uint8_t)(f[i] + above[i]);
}

/* Filter type 3: each byte plus the floor of the mean of its left and upper neighbours. */
KMC_ALWAYS_INLINE void average_row(const uint8_t *f, const uint8_t *above, uint8_t *out, size_t n, size_t bpp)
{
    unsigned a[KMC_PNG_MAX_BPP] = {0};
    size_t first = bpp < n ? bpp : n;
    KMC_UNROLL(8)
    for (size_t l = 0; l < first; l++)
        out[l] = (uint8_t)(a[l] = (uint8_t)(f[l] + (above[l] >> 1)));
    size_t i = bpp;
    for (; i + bpp <= n; i += bpp) {
        KMC_UNROLL(8)
        for (size_t l = 0; l < bpp; l++) {
            a[l] = (uint8_t)(f[i + l] + ((a[l] + above[i + l]) >> 1));
            out[i + l] = (uint8_t)a[l];
        }
    }
    for (; i < n; i++)
        out[i] = (uint8_t)(f[i] + (((unsigned)out[i - bpp] + above[i]) >> 1));
}

/* Filter type 4: each byte plus the Paeth predictor of its left, upper and upper-left neighbours. */
KMC_ALWAYS_INLINE void paeth_row(const uint8_t *f, const uint8_t *above, uint8_t *out, size_t n, size_t bpp)
{
    unsigned a[KMC_PNG_MAX_BPP] = {0}, c[KMC_PNG_MAX_BPP] = {0};
    size_t first = bpp < n ? bpp : n;
    KMC_UNROLL(8)
    for (size_t l = 0; l < first; l++) {
        out[l] = (uint8_t)(f[l] + paeth(0, above[l], 0));
        a[l] = out[l];
        c[l] = above[l];
    }
    size_t i = bpp;
    for (; i + bpp <= n; i += bpp) {
        KMC_UNROLL(8)
        for (size_t l = 0; l < bpp; l++) {
            unsigned b = above[i + l];
            unsigned v = (uint8_t)(f[i + l] + paeth((int)a[l], (int)b, (int)c[l]));
            out[i + l] = (uint8_t)v;
            a[l] = v;
            c[l] = b;
        }
    }
    for (; i < n; i++) /* a last partial pixel (n not a multiple of bpp) */
        out[i] = (uint8_t)(f[i] + paeth(out[i - bpp], above[i], above[i - bpp]));
}

/* One row of any filter type; returns 0, or -1 for an unknown type.  Inlined once per bpp. */
KMC_ALWAYS_INLINE int unfilter_row(unsigned kind, const uint8_t *f, const uint8_t *above, uint8_t *out, size_t n,
                            size_t bpp)
{
    switch (kind) {
    case 0:
        memcpy(out, f, n);
        return 0;
    case 1:
        sub_row(f, out, n, bpp);
        return 0;
    case 2:
        up_row(f, above, out, n);
        return 0;
    case 3:
        average_row(f, above, out, n, bpp);
        return 0;
    case 4:
        paeth_row(f, above, out, n, bpp);
        return 0;
    default:
        return -1;
    }
}

KMC_ALWAYS_INLINE ptrdiff_t unfilter_rows(const uint8_t *filtered, size_t filtered_stride, const uint8_t *previous,
                                   uint8_t *out, size_t out_stride, size_t h, size_t n, size_t bpp)
{
    const uint8_t *above = previous;
    for (size_t r = 0; r < h; r++) {
        const uint8_t *line = filtered + r * filtered_stride;
        uint8_t *row = out + r * out_stride;
        if (unfilter_row(line[0], line + 1, above, row, n, bpp) < 0)
            return (ptrdiff_t)r;
        above = row;
    }
    return -1;
}

ptrdiff_t kmc_png_unfilter(const uint8_t *filtered, size_t filtered_stride, const uint8_t *previous, uint8_t *out,
                           size_t out_stride, size_t h, size_t n, size_t bpp)
{
    switch (bpp) { /* a copy of the loops per pixel size, its lanes unrolled */
    case 1: return unfilter_rows(filtered, filtered_stride, previous, out, out_stride, h, n, 1);
    case 2: return unfilter_rows(filtered, filtered_stride, previous, out, out_stride, h, n, 2);
    case 3: return unfilter_rows(filtered, filtered_stride, previous, out, out_stride, h, n, 3);
    case 4: return unfilter_rows(filtered, filtered_stride, previous, out, out_stride, h, n, 4);
    case 6: return unfilter_rows(filtered, filtered_stride, previous, out, out_stride, h, n, 6);
    case 8: return unfilter_rows(filtered, filtered_stride, previous, out, out_stride, h, n, 8);
    default: return unfilter_rows(filtered, filtered_stride, previous, out, out_stride, h, n, bpp);
    }
}

/* PNG row filters undone: see png_unfilter.h. */
#include "png_unfilter.h"

#include <string.h>

#if defined(__GNUC__) || defined(__clang__)
#define KMC_INLINE static inline __attribute__((always_inline))
#else
#define KMC_INLINE static inline
#endif

/* The Paeth predictor (PNG §9.4): of a (left), b (above), c (above left) the nearest to p = a + b - c,
 * ties to a, then b.  p - a = b - c, p - b = a - c, p - c = a + b - 2c: no p needed.  Branch-free. */
KMC_INLINE unsigned paeth(int a, int b, int c)
{
    int pa = b - c, pb = a - c, pc = a + b - 2 * c;
    pa = pa < 0 ? -pa : pa;
    pb = pb < 0 ? -pb : pb;
    pc = pc < 0 ? -pc : pc;
    int near = pb < pa ? b : a;
    int distance = pb < pa ? pb : pa;
    return (unsigned)(pc < distance ? c : near);
}

/* Filter type 1: each byte plus the byte bpp to its left (0 for the first pixel). */
KMC_INLINE void sub_row(const uint8_t *f, uint8_t *out, size_t n, size_t bpp)
{
    size_t first = bpp < n ? bpp : n;
    memcpy(out, f, first);
    for (size_t i = bpp; i < n; i++)
        out[i] = (uint8_t)(f[i] + out[i - bpp]);
}

/* Filter type 3: each byte plus the floor of the mean of its left and upper neighbours. */
KMC_INLINE void average_row(const uint8_t *f, const uint8_t *above, uint8_t *out, size_t n, size_t bpp)
{
    size_t first = bpp < n ? bpp : n;
    for (size_t i = 0; i < first; i++)
        out[i] = (uint8_t)(f[i] + (above[i] >> 1));
    for (size_t i = bpp; i < n; i++)
        out[i] = (uint8_t)(f[i] + (((unsigned)out[i - bpp] + above[i]) >> 1));
}

/* Filter type 4: each byte plus the Paeth predictor of its left, upper and upper-left neighbours.
 * A pixel at a time with the left and upper-left pixels held in locals, so with bpp a constant
 * the bpp chains run side by side in registers. */
KMC_INLINE void paeth_row(const uint8_t *f, const uint8_t *above, uint8_t *out, size_t n, size_t bpp)
{
    unsigned a[KMC_PNG_MAX_BPP], c[KMC_PNG_MAX_BPP];
    size_t first = bpp < n ? bpp : n;
    for (size_t l = 0; l < first; l++) {
        out[l] = (uint8_t)(f[l] + paeth(0, above[l], 0));
        a[l] = out[l];
        c[l] = above[l];
    }
    size_t i = bpp;
    for (; i + bpp <= n; i += bpp) {
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
KMC_INLINE int unfilter_row(unsigned kind, const uint8_t *f, const uint8_t *above, uint8_t *out, size_t n,
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
        for (size_t i = 0; i < n; i++)
            out[i] = (uint8_t)(f[i] + above[i]);
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

KMC_INLINE ptrdiff_t unfilter_rows(const uint8_t *filtered, size_t filtered_stride, const uint8_t *previous,
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

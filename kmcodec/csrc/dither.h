/* Floyd-Steinberg ditherer (serpentine scan, error in fixed point): the kernels behind kmcodec.dither.
 *
 * All arithmetic is on integers, so the same input gives the same labels on
 * every machine.  A palette is k entries of `channels` uint8 values, row
 * after row; `order` lists its entries sorted by their first channel
 * (ascending; the Python side makes it with a stable argsort).
 */
#ifndef KMC_DITHER_H
#define KMC_DITHER_H

#include <stddef.h>
#include <stdint.h>

/* Fractional bits of the fixed-point error (one level = 2**KMC_DITHER_FRAC). */
#define KMC_DITHER_FRAC 20
/* The most error (in fixed point) a caller may allow a pixel to take, per channel. */
#define KMC_DITHER_MAX_LIMIT ((int64_t)1 << 62)
/* strength counts 256ths of the error passed on: 0 to this. */
#define KMC_DITHER_MAX_STRENGTH 256

/* Squared distance from each palette entry to the nearest entry with a different colour, -1 if none.
 *
 * Reads palette (k x channels) and order (k entries, a permutation of 0..k-1
 * sorted by first channel); writes out[i] for every entry i (k values).
 * Assumes k >= 1, channels >= 1 and every order value in 0..k-1.
 */
void kmc_dither_nearest_other(const uint8_t *palette, size_t k, size_t channels, const int64_t *order,
                              int64_t *out);

/* Dither a block of h rows of w pixels into labels; returns 0, or -1 if scratch memory could not be had.
 *
 * Reads image (h x w x channels uint8, C order), palette and order as above
 * (every order value in 0..k-1, k >= 1), carry ((w + 2) x channels int64: the
 * error arriving at the block's first row, column x at x + 1).
 * strength 0..KMC_DITHER_MAX_STRENGTH scales the error passed on (in 256ths);
 * limit 0..KMC_DITHER_MAX_LIMIT is the most error a pixel takes from its
 * neighbours per channel; alpha_channel is the index of alpha (< channels)
 * or -1: a pixel with alpha 0 takes the entry nearest to all zeros and
 * neither takes nor gives error.  first_row is the block's row in the image
 * (even rows run left to right).
 * Writes labels (h x w; label_bytes 1: uint8, k <= 256, or 2: uint16,
 * k <= 65536), carry (the error for the row after the block) and *sse (the
 * sum over pixels and channels of the squared difference between the pixel,
 * a transparent one as all zeros, and its entry).  On failure nothing is written.
 */
int kmc_dither(const uint8_t *image, size_t h, size_t w, size_t channels, const uint8_t *palette, size_t k,
               const int64_t *order, int64_t strength, int64_t limit, int alpha_channel, void *labels,
               int label_bytes, int64_t *carry, int64_t first_row, int64_t *sse);

#endif

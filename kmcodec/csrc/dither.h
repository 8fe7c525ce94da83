/* Floyd-Steinberg ditherer (serpentine scan, error in fixed point): the kernels behind kmcodec.dither.
 *
 * All arithmetic is on integers, so the same input gives the same labels on
 * every machine.  A palette is k entries of `channels` uint8 values, row
 * after row.
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
/* The most channels kmc_dither() takes (an image has 1 to 4; the bound keeps every sum far from overflow). */
#define KMC_DITHER_MAX_CHANNELS 64

/* Squared distance from each palette entry to the nearest entry with a different colour, -1 if none.
 *
 * Reads palette (k x channels) and order (k palette indices sorted by first
 * channel, ascending: the Python side makes it with a stable argsort); writes
 * out[order[j]] for each j (all of out when order is a permutation of 0..k-1).
 * Assumes k >= 1, channels >= 1 and every order value in 0..k-1; an order not
 * sorted gives other distances, within bounds.
 */
void kmc_dither_nearest_other(const uint8_t *palette, size_t k, size_t channels, const int64_t *order,
                              int64_t *out);

/* Dither a block of h rows of w pixels into labels; returns 0, or -1 if scratch memory could not be had.
 *
 * Each pixel takes the entry nearest (squared distance, ties to the lowest
 * index) to it plus the error passed to it, and passes its own error on:
 * 7/16 to the next pixel in the row, 3/16, 5/16 and 1/16 to the three below.
 * Reads image (h x w x channels uint8, C order), palette (k >= 1 entries,
 * 1 <= channels <= KMC_DITHER_MAX_CHANNELS) and carry ((w + 2) x channels
 * int64: the error arriving at the block's first row, column x at x + 1).
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
               int64_t strength, int64_t limit, int alpha_channel, void *labels, int label_bytes, int64_t *carry,
               int64_t first_row, int64_t *sse);

/* kmc_dither() with a dither map: weights (h x w uint8, or NULL for all 255) says how much of the error
 * arriving at each pixel it takes, in 255ths (255: all, as kmc_dither(); 0: none, the pixel takes its
 * nearest entry and passes on only its own error).  The error not taken is dropped.  Everything else
 * as kmc_dither(), which is this with weights NULL.
 */
int kmc_dither_weighted(const uint8_t *image, size_t h, size_t w, size_t channels, const uint8_t *palette,
                        size_t k, int64_t strength, int64_t limit, int alpha_channel, const uint8_t *weights,
                        void *labels, int label_bytes, int64_t *carry, int64_t first_row, int64_t *sse);

#endif

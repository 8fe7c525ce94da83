/* Masking weights (kmcodec.masking): how much each pixel's colour counts in the palette's fit. */
#ifndef KMC_MASKING_H
#define KMC_MASKING_H

#include <stdint.h>

/* Error codes (negative; 0 on success). */
#define KMC_MASKING_ESIZE (-1) /* fewer than 2 * KMC_MASKING_HALO + 1 rows, or no columns */
#define KMC_MASKING_ENOMEM (-2)

/* Rows of context a row's weight needs on each side: 1 for the Laplacian, 2 for the 5 x 5 box. */
#define KMC_MASKING_HALO 3

/* The weights of rows HALO .. rows - HALO - 1 of an image's rows.
 *
 * Reads pixels (rows x width x channels uint8, row-major: HALO rows of
 * context, the rows to weigh, HALO rows of context, the image's edge rows
 * already repeated where it ends); writes out ((rows - 2 HALO) x width).
 * Y is R + 2G + B (channels >= 3) or 4 L (1 or 2 channels); columns past the
 * edges repeat the edge column.  A pixel's activity A is the sum over the
 * 5 x 5 pixels around it of |4Y - up - down - left - right|; its weight is
 * 1 + span * scale / (scale + A), in integers: span 0 ..= 254 and scale
 * 1 ..= 1,000,000 with span * scale <= INT32_MAX (as the binding checks), so
 * every sum fits an int32 and every weight 8 bits.  1 to 4 channels; other
 * counts, fewer rows or no columns return KMC_MASKING_ESIZE, writing nothing.
 */
int kmc_masking_weights(const uint8_t *pixels, int64_t rows, int64_t width, int64_t channels, int32_t span,
                        int32_t scale, uint8_t *out);

#endif

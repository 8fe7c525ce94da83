/* PNG row filters undone (PNG §9.2): the kernel behind kmcodec.png's streaming reader. */
#ifndef KMC_PNG_UNFILTER_H
#define KMC_PNG_UNFILTER_H

#include <stddef.h>
#include <stdint.h>

/* The most bytes per pixel of a PNG (16-bit truecolour with alpha), and the most kmc_png_unfilter() takes. */
#define KMC_PNG_MAX_BPP 8

/* Undo the filters of h rows: each filtered row is a filter-type byte and n filtered bytes.
 *
 * Reads filtered (h rows of 1 + n bytes, row r at filtered + r * filtered_stride)
 * and previous (n bytes: the raw row above the first, zeros for the image's
 * top row); writes out (h rows of n bytes, row r at out + r * out_stride).
 * Assumes filtered_stride >= 1 + n, out_stride >= n, 1 <= bpp <= KMC_PNG_MAX_BPP
 * (bytes per complete pixel) and that out overlaps neither input.
 * Returns -1 when every filter type is known (0-4), else the index of the
 * first row with an unknown one; that row and the rows after it are not written.
 */
ptrdiff_t kmc_png_unfilter(const uint8_t *filtered, size_t filtered_stride, const uint8_t *previous, uint8_t *out,
                           size_t out_stride, size_t h, size_t n, size_t bpp);

#endif

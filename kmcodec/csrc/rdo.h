/* The rate-distortion-optimised labeller: labels of least squared error + lambda x bits.
 *
 * It runs the context model of method cm (cm_model.h, the coder's own, spec/kmc-method-cm.md) over
 * a strip in raster order, as the coder will, but instead of coding a given label it prices each
 * candidate label in bits with the model's current counters, picks the one of least squared error
 * + lambda x bits, and then moves the counters with it exactly as the coder does.
 */
#ifndef KMC_RDO_H
#define KMC_RDO_H

#include <stdint.h>

/* Results below zero. */
#define KMC_RDO_NO_MEMORY (-1) /* the model's tables could not be allocated */
#define KMC_RDO_BAD_LABEL (-2) /* a nearest entry is not below k */

/* Choose the labels *out* (h x w) of one strip; returns their summed squared error (>= 0).
 *
 * pix: h x w pixels of *channels* bytes; palette: k entries of *channels* bytes, 1 <= k <= 65536;
 * near: h x w, each pixel's nearest entry (checked to be below k, else KMC_RDO_BAD_LABEL before
 * anything is written); near and out hold uint16 labels if *wide*, else uint8.  lam: a bit's
 * weight in squared-error units; alpha: the alpha channel's index (< channels), or -1; cost: 4096
 * doubles, cost[P] = -log2(P / 4096), the bits of a decision of 12-bit probability P; ahead: bits
 * added for each of the pixels right of and below this one whose nearest entry is not the label.
 *
 * A pixel's choices are its nearest entry and the labels of its causal neighbours W, N, NW and NE
 * (the coder's candidates), restricted to entries as transparent as the nearest one; a fully
 * transparent pixel keeps its nearest entry (the transparent one).  The nearest entry wins ties.
 *
 * With *weight* non-NULL (h x w, one per pixel), a pixel's squared error counts *weight* times in
 * its choice (the masking weight of kmcodec.masking: where error shows); the error returned is
 * the plain one.
 *
 * With *bits* non-NULL, every choice is priced (without, a choice whose error alone loses is
 * skipped, and a pixel with one choice is not priced; no choice changes), and *bits is set to the
 * sum of -log2 p over the decisions the coder would code for the labels chosen, as the model
 * prices them (without the look-ahead bits).  Returns KMC_RDO_NO_MEMORY when out of memory. */
int64_t kmc_rdo_label(const uint8_t *pix, int64_t h, int64_t w, int64_t channels, const uint8_t *palette, int64_t k,
                      const void *near, void *out, int wide, double lam, int64_t alpha, const double *cost,
                      double ahead, const uint8_t *weight, double *bits);

#endif

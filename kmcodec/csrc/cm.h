/* Label coding methods cm, cmm, cm2d and cmx (spec/kmc-method-cm.md): the range-coded strip, the palette
 * expansion fused into decoding, and the encoder's match probe.
 *
 * The model itself is cm_model.h, shared with the RDO labeller (rdo.c).  A strip's labels live
 * in a padded uint16 array of h + 2 rows of w + 3 labels, label (y, x) at L[(y + 2) * (w + 3) +
 * x + 2]; the kernels neither read nor write the padding.
 */
#ifndef KMC_CM_H
#define KMC_CM_H

#include <stdint.h>

/* Results below zero. */
#define KMC_CM_OUT_OF_ROOM (-1) /* kmc_cm_encode: the output buffer may be too small */
#define KMC_CM_NO_MEMORY (-2)   /* the tables could not be allocated */
#define KMC_CM_BAD_LABEL (-3)   /* a label is not below k */

/* The models of kmc_cm_encode and kmc_cm_decode: methods cm, cmm (§9), cm2d (§10) and cmx (§11). */
#define KMC_CM_MODEL_CM 0
#define KMC_CM_MODEL_CMM 1
#define KMC_CM_MODEL_CM2D 2
#define KMC_CM_MODEL_CMX 3

/* Code the labels of one strip, padded as above, with method cm, cmm, cm2d or cmx (*model*, one of
 * KMC_CM_MODEL_*).
 *
 * Reads L's labels (each must be below k, else KMC_CM_BAD_LABEL before anything is coded); writes
 * the coded bytes into out[0 .. cap).  Assumes 2 <= k <= 65536,
 * h, w >= 0 and h * w <= 2^28 (the positions of §9.1 fit int32).  Returns the bytes written, or
 * KMC_CM_OUT_OF_ROOM when, at the start of a row, the bytes written and pending plus the most a
 * row and the flush can add, 2 w (4 + D + B) + 5 (D = 0 for cm, 1 for cmm, cm2d and cmx), exceed *cap*
 * (every write is also checked against *cap*: none can leave the buffer), or KMC_CM_NO_MEMORY. */
int64_t kmc_cm_encode(const uint16_t *L, int64_t h, int64_t w, int64_t k, int model, uint8_t *out, int64_t cap);

/* Decode one strip of method cm, cmm, cm2d or cmx (*model*) from data[0 .. n) into the padded L.
 *
 * Reads data through a reader that gives 0 past the end (§2.1), and stops early once it has read
 * past the end (§6: the strip is truncated whatever follows).  Writes the labels of L (all below
 * k whatever the bytes) up to where it stopped.  Same assumptions on k, h and w as kmc_cm_encode.
 * Memory: the tables of §4 (and §9.1 or §10.1); cm2d and cmx also keep a copy of the labels, 2 bytes
 * each; cmx adds the mixer of §11 (table X: 4 bytes a label, at least 16 KiB, at most 4 MiB).
 * Returns the bytes consumed (more than n if the data ran out) and sets *code* to the range
 * decoder's final code value, or returns KMC_CM_NO_MEMORY. */
int64_t kmc_cm_decode(uint16_t *L, int64_t h, int64_t w, int64_t k, int model, const uint8_t *data, int64_t n,
                      uint32_t *code);

/* Write palette[label] (palette: k rows of *channels* bytes) for every label of the padded L into
 * out, h rows of w pixels of *channels* bytes.  Returns 0, or KMC_CM_BAD_LABEL if a label is not
 * below k (out is then partly written). */
int kmc_cm_palette(const uint16_t *L, int64_t h, int64_t w, const uint8_t *palette, int64_t k, int64_t channels,
                   uint8_t *out);

/* A match counts in kmc_cm_match_probe once it has predicted this many labels in a row. */
#define KMC_CM_PROBE_RUN 6

/* How often a long match (§9.1) would predict a label that is not W, on every row_step-th row
 * (row_step >= 1) of an h x w label map (uint16 labels if *wide*, else uint8; no bound on them).
 *
 * Follows the match model's position along rows 2, 2 + row_step, ..., columns 2 to w - 2,
 * coding nothing; a match ends at the row's end.  Sets *hits* to the labels that a match running
 * for at least PROBE_RUN labels predicted and that differ from W, *seen* to the non-flat pixels
 * seen.  Returns 0, or KMC_CM_NO_MEMORY. */
int kmc_cm_match_probe(const void *labels, int wide, int64_t h, int64_t w, int64_t row_step, int64_t *hits,
                       int64_t *seen);

#endif

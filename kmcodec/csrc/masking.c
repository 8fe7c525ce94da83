/* Masking weights: a Laplacian's magnitude summed over 5 x 5 pixels, turned into a weight (masking.h). */
#include "masking.h"

#include <stdlib.h>

static inline int64_t clamp_col(int64_t c, int64_t width)
{
    return c < 0 ? 0 : c >= width ? width - 1 : c;
}

int kmc_masking_weights(const uint8_t *pixels, int64_t rows, int64_t width, int64_t channels, int32_t span,
                        int32_t scale, uint8_t *out)
{
    if (rows < 2 * KMC_MASKING_HALO + 1 || width < 1 || channels < 1 || channels > 4)
        return KMC_MASKING_ESIZE;
    /* lap holds rows 1 .. rows - 2 of y (each has a row above and below), columns -2 .. width + 1. */
    const int64_t lap_rows = rows - 2, lap_width = width + 4;
    int32_t *y = malloc((size_t)(rows * width) * sizeof *y);
    int32_t *lap = malloc((size_t)(lap_rows * lap_width) * sizeof *lap);
    int32_t *column = malloc((size_t)lap_width * sizeof *column);
    if (y == NULL || lap == NULL || column == NULL) {
        free(y);
        free(lap);
        free(column);
        return KMC_MASKING_ENOMEM;
    }
    for (int64_t i = 0; i < rows * width; i++) {
        const uint8_t *p = pixels + i * channels;
        y[i] = channels >= 3 ? p[0] + 2 * p[1] + p[2] : 4 * p[0];
    }
    for (int64_t r = 1; r < rows - 1; r++) {
        const int32_t *up = y + (r - 1) * width, *mid = y + r * width, *down = y + (r + 1) * width;
        int32_t *row = lap + (r - 1) * lap_width;
        for (int64_t c = -2; c < width + 2; c++) {
            int64_t at = clamp_col(c, width);
            int32_t v = 4 * mid[at] - up[at] - down[at] - mid[clamp_col(c - 1, width)] - mid[clamp_col(c + 1, width)];
            row[c + 2] = v < 0 ? -v : v;
        }
    }
    /* Output row i is y's row i + HALO, lap's row i + 2: its box spans lap rows i .. i + 4. */
    for (int64_t i = 0; i < rows - 2 * KMC_MASKING_HALO; i++) {
        for (int64_t c = 0; c < lap_width; c++) {
            const int32_t *at = lap + i * lap_width + c;
            column[c] = at[0] + at[lap_width] + at[2 * lap_width] + at[3 * lap_width] + at[4 * lap_width];
        }
        uint8_t *o = out + i * width;
        int32_t box = column[0] + column[1] + column[2] + column[3] + column[4];
        for (int64_t c = 0; c < width; c++) {
            o[c] = (uint8_t)(1 + span * scale / (scale + box));
            if (c + 5 < lap_width)
                box += column[c + 5] - column[c];
        }
    }
    free(y);
    free(lap);
    free(column);
    return 0;
}

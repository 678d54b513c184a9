/* DSA augmentations and their adjoints. The geometric part is one inverse-affine bilinear
 * resampling (flip, scale, rotation, translation about the image centre, zero outside);
 * its adjoint scatters with the same weights. */
#include "condense/augment.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"

AugmentParams augment_draw(Rng *r, int H, int W) {
    AugmentParams a;
    a.brightness = (rng_uniform(r) - 0.5f) * 1.0f;          /* DSA: +-0.5 of [0, 1] range -> +-1 here / 2 */
    a.saturation = rng_uniform(r) * 2.0f;                   /* [0, 2] */
    a.contrast = 0.5f + rng_uniform(r);                     /* [0.5, 1.5] */
    a.flip = rng_uniform(r) < 0.5f;
    a.scale = 0.8f + 0.4f * rng_uniform(r);                 /* [0.8, 1.2] */
    a.angle = (rng_uniform(r) - 0.5f) * 30.0f * (float)D2C_PI / 180.0f; /* +-15 degrees */
    a.shift_x = (rng_uniform(r) - 0.5f) * 0.25f * W;        /* +-1/8 of the size */
    a.shift_y = (rng_uniform(r) - 0.5f) * 0.25f * H;
    a.cut_size = H / 2;
    a.cut_x = (int)rng_below(r, (uint32_t)W) - a.cut_size / 2;
    a.cut_y = (int)rng_below(r, (uint32_t)H) - a.cut_size / 2;
    return a;
}

/* Source coordinates of output pixel (i, j): inverse of flip, scale, rotation, shift. */
static void source_coord(const AugmentParams *a, int i, int j, int H, int W, float *si, float *sj) {
    const float cy = (H - 1) * 0.5f, cx = (W - 1) * 0.5f;
    float y = i - cy - a->shift_y, x = j - cx - a->shift_x;
    const float c = cosf(a->angle), s = sinf(a->angle);
    float yr = (c * y - s * x) / a->scale, xr = (s * y + c * x) / a->scale;
    if (a->flip) xr = -xr;
    *si = yr + cy;
    *sj = xr + cx;
}

static int in_cutout(const AugmentParams *a, int i, int j) {
    return a->cut_size > 0 && i >= a->cut_y && i < a->cut_y + a->cut_size && j >= a->cut_x && j < a->cut_x + a->cut_size;
}

/* Colour stage, in place on one image: brightness, saturation, contrast. */
static void colour_forward(const AugmentParams *a, float *x, int C, int N) {
    for (int k = 0; k < C * N; k++) x[k] += a->brightness;
    if (C > 1) {
        for (int p = 0; p < N; p++) {
            float m = 0;
            for (int c = 0; c < C; c++) m += x[c * N + p];
            m /= C;
            for (int c = 0; c < C; c++) x[c * N + p] = (x[c * N + p] - m) * a->saturation + m;
        }
    }
    double mu = 0;
    for (int k = 0; k < C * N; k++) mu += x[k];
    const float m = (float)(mu / (C * N));
    for (int k = 0; k < C * N; k++) x[k] = (x[k] - m) * a->contrast + m;
}

/* Adjoint of the colour stage (the brightness offset has no effect on gradients). */
static void colour_backward(const AugmentParams *a, float *g, int C, int N) {
    double sum = 0;
    for (int k = 0; k < C * N; k++) sum += g[k];
    const float add = (float)((1.0 - a->contrast) * sum / (C * N));
    for (int k = 0; k < C * N; k++) g[k] = g[k] * a->contrast + add;
    if (C > 1) {
        for (int p = 0; p < N; p++) {
            float s = 0;
            for (int c = 0; c < C; c++) s += g[c * N + p];
            for (int c = 0; c < C; c++) g[c * N + p] = g[c * N + p] * a->saturation + (1.0f - a->saturation) * s / C;
        }
    }
}

void augment_forward(const AugmentParams *a, const float *x, float *y, int B, int C, int H, int W) {
    const int N = H * W;
    float *tmp = xmalloc_floats((size_t)C * N);
    for (int b = 0; b < B; b++) {
        memcpy(tmp, x + (size_t)b * C * N, (size_t)C * N * sizeof(float));
        colour_forward(a, tmp, C, N);
        float *yb = y + (size_t)b * C * N;
        for (int i = 0; i < H; i++)
            for (int j = 0; j < W; j++) {
                float si, sj;
                source_coord(a, i, j, H, W, &si, &sj);
                int i0 = (int)floorf(si), j0 = (int)floorf(sj);
                float fi = si - i0, fj = sj - j0;
                for (int c = 0; c < C; c++) {
                    float v = 0;
                    if (!in_cutout(a, i, j))
                        for (int di = 0; di < 2; di++)
                            for (int dj = 0; dj < 2; dj++) {
                                int ii = i0 + di, jj = j0 + dj;
                                if (ii < 0 || ii >= H || jj < 0 || jj >= W) continue;
                                float wgt = (di ? fi : 1 - fi) * (dj ? fj : 1 - fj);
                                v += wgt * tmp[c * N + ii * W + jj];
                            }
                    yb[c * N + i * W + j] = v;
                }
            }
    }
    free(tmp);
}

void augment_backward(const AugmentParams *a, const float *dy, float *dx, int B, int C, int H, int W) {
    const int N = H * W;
    float *g = xmalloc_floats((size_t)C * N);
    for (int b = 0; b < B; b++) {
        memset(g, 0, (size_t)C * N * sizeof(float));
        const float *dyb = dy + (size_t)b * C * N;
        for (int i = 0; i < H; i++)
            for (int j = 0; j < W; j++) {
                if (in_cutout(a, i, j)) continue;
                float si, sj;
                source_coord(a, i, j, H, W, &si, &sj);
                int i0 = (int)floorf(si), j0 = (int)floorf(sj);
                float fi = si - i0, fj = sj - j0;
                for (int di = 0; di < 2; di++)
                    for (int dj = 0; dj < 2; dj++) {
                        int ii = i0 + di, jj = j0 + dj;
                        if (ii < 0 || ii >= H || jj < 0 || jj >= W) continue;
                        float wgt = (di ? fi : 1 - fi) * (dj ? fj : 1 - fj);
                        for (int c = 0; c < C; c++) g[c * N + ii * W + jj] += wgt * dyb[c * N + i * W + j];
                    }
            }
        colour_backward(a, g, C, N);
        float *dxb = dx + (size_t)b * C * N;
        for (int k = 0; k < C * N; k++) dxb[k] += g[k];
    }
    free(g);
}

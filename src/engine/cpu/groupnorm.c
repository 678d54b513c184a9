/* GroupNorm (PyTorch nn.GroupNorm: biased variance, eps 1e-5, per-channel affine) with
 * an optional fused SiLU on the output, the pair every ResBlock and the output head use.
 *
 * x, y (B, C, N); the G groups hold Cg = C/G consecutive channels, so one (b, g) group
 * is Cg*N contiguous values. Statistics are two passes in double (mean, then squared
 * deviations). Forward runs in parallel over (b, g); backward in parallel over g, each
 * group looping over the batch in order, so dgamma/dbeta need no cross-thread reduction
 * and the result does not depend on the thread count. */
#include "engine/cpu/kernels.h"

#include <math.h>

#include "core/util.h"
#include "engine/cpu/vecmath.h"

#define GN_EPS 1e-5

void groupnorm_forward(float *y, float *mean, float *rstd, const float *x, const float *gamma,
                       const float *beta, int B, int C, int N, int G, int silu) {
    int Cg = C / G;
    size_t M = (size_t)Cg * N; /* values per group */
#pragma omp parallel for schedule(static) collapse(2)
    for (int b = 0; b < B; b++)
        for (int g = 0; g < G; g++) {
            const float *xg = x + ((size_t)b * C + (size_t)g * Cg) * N;
            float *yg = y + ((size_t)b * C + (size_t)g * Cg) * N;
            double mu = sum_f64(xg, M) / (double)M;
            double var = sum_sq_dev_f64(xg, mu, M) / (double)M;
            float m = (float)mu, rs = (float)(1.0 / sqrt(var + GN_EPS));
            mean[b * G + g] = m;
            rstd[b * G + g] = rs;
            for (int cl = 0; cl < Cg; cl++) {
                int c = g * Cg + cl;
                float scale = rs * gamma[c], shift = beta[c] - m * scale;
                const float *xr = xg + (size_t)cl * N;
                float *yr = yg + (size_t)cl * N;
                if (silu)
                    for (int n = 0; n < N; n++) {
                        float z = xr[n] * scale + shift;
                        yr[n] = z * sigmoidf(z);
                    }
                else
                    for (int n = 0; n < N; n++) yr[n] = xr[n] * scale + shift;
            }
        }
}

/* Backward, per (b, g), with z = gamma * xhat + beta and dz = dy * silu'(z) (or dy):
 *   dbeta[c] += sum dz, dgamma[c] += sum dz * xhat,
 *   dx = rstd * (gamma dz - mean_group(gamma dz) - xhat * mean_group(gamma dz xhat)).
 * Rows are processed in blocks of GN_BLOCK so dz and xhat are computed by vector loops;
 * dz of a whole group is kept on the stack for the second pass when it fits in
 * GN_CACHE floats (every layer of the UNet), and recomputed otherwise. */
#define GN_BLOCK 256
#define GN_CACHE 16384

static void block_dz(float *dz, float *xhat, const float *x, const float *dy, int n, float mean,
                     float rstd, float scale, float shift, int silu) {
    for (int i = 0; i < n; i++) xhat[i] = (x[i] - mean) * rstd;
    if (silu)
        for (int i = 0; i < n; i++) {
            float z = x[i] * scale + shift, s = sigmoidf(z); /* z as in forward */
            dz[i] = dy[i] * s * (1.0f + z * (1.0f - s));
        }
    else
        for (int i = 0; i < n; i++) dz[i] = dy[i];
}

void groupnorm_backward(float *dx, float *dgamma, float *dbeta, const float *dy, const float *x,
                        const float *mean, const float *rstd, const float *gamma,
                        const float *beta, int B, int C, int N, int G, int silu) {
    int Cg = C / G, cached = Cg * N <= GN_CACHE;
    double M = (double)Cg * N;
#pragma omp parallel for schedule(static)
    for (int g = 0; g < G; g++)
        for (int b = 0; b < B; b++) {
            size_t off = ((size_t)b * C + (size_t)g * Cg) * N;
            float m = mean[b * G + g], rs = rstd[b * G + g];
            float dz_cache[GN_CACHE], dz_block[GN_BLOCK], xhat[GN_BLOCK];
            double sum_gdz = 0, sum_gdz_xhat = 0; /* over the group, gamma-weighted */
            for (int c = g * Cg; c < (g + 1) * Cg; c++) {
                size_t row = (size_t)(c - g * Cg) * N;
                const float *xr = x + off + row, *dyr = dy + off + row;
                float scale = rs * gamma[c], shift = beta[c] - m * scale;
                double s_dz = 0, s_dzx = 0;
                for (int n0 = 0; n0 < N; n0 += GN_BLOCK) {
                    int len = D2C_MIN(GN_BLOCK, N - n0);
                    float *dz = cached ? dz_cache + row + n0 : dz_block;
                    block_dz(dz, xhat, xr + n0, dyr + n0, len, m, rs, scale, shift, silu);
                    s_dz += sum_f64(dz, (size_t)len);
                    s_dzx += dot_f64(dz, xhat, (size_t)len);
                }
                if (dbeta) dbeta[c] += (float)s_dz;
                if (dgamma) dgamma[c] += (float)s_dzx;
                sum_gdz += gamma[c] * s_dz;
                sum_gdz_xhat += gamma[c] * s_dzx;
            }
            if (!dx) continue;
            float mean_gdz = (float)(sum_gdz / M), mean_gdz_xhat = (float)(sum_gdz_xhat / M);
            for (int c = g * Cg; c < (g + 1) * Cg; c++) {
                size_t row = (size_t)(c - g * Cg) * N;
                const float *xr = x + off + row, *dyr = dy + off + row;
                float *dxr = dx + off + row;
                float scale = rs * gamma[c], shift = beta[c] - m * scale;
                for (int n0 = 0; n0 < N; n0 += GN_BLOCK) {
                    int len = D2C_MIN(GN_BLOCK, N - n0);
                    float *dz = cached ? dz_cache + row + n0 : dz_block;
                    if (cached)
                        for (int i = 0; i < len; i++) xhat[i] = (xr[n0 + i] - m) * rs;
                    else
                        block_dz(dz, xhat, xr + n0, dyr + n0, len, m, rs, scale, shift, silu);
                    for (int i = 0; i < len; i++)
                        dxr[n0 + i] += rs * (gamma[c] * dz[i] - mean_gdz - xhat[i] * mean_gdz_xhat);
                }
            }
        }
}

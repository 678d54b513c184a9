/* GroupNorm (eps 1e-5, affine) with its optional fused SiLU on the GPU, as
 * engine/groupnorm.c: statistics in two passes in double, one block per (batch, group).
 *
 * Backward, with xhat = (x - mean) rstd, z = gamma xhat + beta, dz = dy silu'(z) (or dy):
 *   1. one block per (b, c): sdz[b, c] = sum dz, sdzx[b, c] = sum dz xhat (double);
 *   2. dbeta[c] += sum_b sdz[b, c], dgamma[c] += sum_b sdzx[b, c], in batch order;
 *   3. per (b, g): mean_group(gamma dz) and mean_group(gamma dz xhat);
 *   4. dx += rstd (gamma dz - mean(gamma dz) - xhat mean(gamma dz xhat)), one thread a value.
 * Every sum has a fixed order (no atomics), so gradients are the same run to run. */
#include "engine/cuda/cuda_private.cuh"

#define GN_EPS 1e-5
#define GN_THREADS 256

__device__ __forceinline__ float gn_out(float z, int silu) { return silu ? z * cu_sigmoid(z) : z; }

/* dz from x and dy, z recomputed as in the forward */
__device__ __forceinline__ float gn_dz(float xv, float dyv, float scale, float shift, int silu) {
    if (!silu) return dyv;
    float z = xv * scale + shift, s = cu_sigmoid(z);
    return dyv * s * (1.0f + z * (1.0f - s));
}

/* one block per (b, g): the group is Cg*N contiguous values */
__global__ void k_gn_forward(float *y, float *mean, float *rstd, const float *x, const float *gamma,
                             const float *beta, int C, int N, int G, int silu) {
    __shared__ double shm[32];
    const int bg = blockIdx.x, b = bg / G, g = bg % G, Cg = C / G;
    const size_t M = (size_t)Cg * N, off = ((size_t)b * C + (size_t)g * Cg) * N;
    const float *xg = x + off;
    double s = 0;
    for (size_t i = threadIdx.x; i < M; i += blockDim.x) s += (double)xg[i];
    double mu = cu_block_sum(s, shm) / (double)M;
    double d2 = 0;
    for (size_t i = threadIdx.x; i < M; i += blockDim.x) {
        double d = (double)xg[i] - mu;
        d2 += d * d;
    }
    double var = cu_block_sum(d2, shm) / (double)M;
    const float m = (float)mu, rs = (float)(1.0 / sqrt(var + GN_EPS));
    if (threadIdx.x == 0) {
        mean[bg] = m;
        rstd[bg] = rs;
    }
    float *yg = y + off;
    for (unsigned i = threadIdx.x; i < (unsigned)M; i += blockDim.x) { /* a group is < 2^32 values */
        int c = g * Cg + (int)(i / (unsigned)N);
        float scale = rs * gamma[c], shift = beta[c] - m * scale;
        yg[i] = gn_out(xg[i] * scale + shift, silu);
    }
}

/* 1. one block per (b, c) */
__global__ void k_gn_row_sums(double *sdz, double *sdzx, const float *dy, const float *x, const float *mean,
                              const float *rstd, const float *gamma, const float *beta, int C, int N, int G,
                              int silu) {
    __shared__ double shm[32];
    const int bc = blockIdx.x, b = bc / C, c = bc % C, g = c / (C / G);
    const float m = mean[b * G + g], rs = rstd[b * G + g];
    const float scale = rs * gamma[c], shift = beta[c] - m * scale;
    const float *xr = x + (size_t)bc * N, *dyr = dy + (size_t)bc * N;
    double a = 0, ax = 0;
    for (int i = threadIdx.x; i < N; i += blockDim.x) {
        float dz = gn_dz(xr[i], dyr[i], scale, shift, silu), xhat = (xr[i] - m) * rs;
        a += (double)dz;
        ax += (double)dz * (double)xhat;
    }
    a = cu_block_sum(a, shm);
    ax = cu_block_sum(ax, shm);
    if (threadIdx.x == 0) {
        sdz[bc] = a;
        sdzx[bc] = ax;
    }
}

/* 2. one thread per channel, batch in order */
__global__ void k_gn_affine_grads(float *dgamma, float *dbeta, const double *sdz, const double *sdzx, int B,
                                  int C) {
    CU_FOR(c, (size_t)C) {
        double a = 0, ax = 0;
        for (int b = 0; b < B; b++) {
            a += sdz[(size_t)b * C + c];
            ax += sdzx[(size_t)b * C + c];
        }
        if (dbeta) dbeta[c] += (float)a;
        if (dgamma) dgamma[c] += (float)ax;
    }
}

/* 3. one thread per (b, g): means[2 bg] = mean(gamma dz), means[2 bg + 1] = mean(gamma dz xhat) */
__global__ void k_gn_group_means(float *means, const double *sdz, const double *sdzx, const float *gamma, int B,
                                 int C, int N, int G) {
    const int Cg = C / G;
    CU_FOR(bg, (size_t)B * G) {
        int b = (int)(bg / G), g = (int)(bg % G);
        double a = 0, ax = 0;
        for (int c = g * Cg; c < (g + 1) * Cg; c++) {
            a += (double)gamma[c] * sdz[(size_t)b * C + c];
            ax += (double)gamma[c] * sdzx[(size_t)b * C + c];
        }
        double M = (double)Cg * N;
        means[2 * bg] = (float)(a / M);
        means[2 * bg + 1] = (float)(ax / M);
    }
}

/* 4. one thread per value; rows: (b, c) */
__global__ void k_gn_dx(float *dx, const float *dy, const float *x, const float *mean, const float *rstd,
                        const float *gamma, const float *beta, const float *means, int B, int C, int N, int G,
                        int silu) {
    CU_ROWS(bc, (unsigned)B * C) {
        const int c = bc % C, bg = (bc / C) * G + c / (C / G);
        const float m = mean[bg], rs = rstd[bg], scale = rs * gamma[c], shift = beta[c] - m * scale;
        const float mg = means[2 * bg], mgx = means[2 * bg + 1];
        const size_t off = (size_t)bc * N;
        CU_COLS(i, N) {
            float xv = x[off + i], dz = gn_dz(xv, dy[off + i], scale, shift, silu), xhat = (xv - m) * rs;
            dx[off + i] += rs * (gamma[c] * dz - mg - xhat * mgx);
        }
    }
}

extern "C" void cu_groupnorm_forward(CudaEngine *e, float *y, float *mean, float *rstd, const float *x,
                                     const float *gamma, const float *beta, int B, int C, int N, int G,
                                     int silu) {
    if (e->status) return;
    k_gn_forward<<<B * G, GN_THREADS, 0, e->stream>>>(y, mean, rstd, x, gamma, beta, C, N, G, silu);
    CU_LAUNCHED(e, "groupnorm forward");
}

extern "C" void cu_groupnorm_backward(CudaEngine *e, float *dx, float *dgamma, float *dbeta, const float *dy,
                                      const float *x, const float *mean, const float *rstd, const float *gamma,
                                      const float *beta, int B, int C, int N, int G, int silu) {
    if (e->status || (!dx && !dgamma && !dbeta)) return;
    const size_t BC = (size_t)B * C;
    double *sdz = cu_red(e, 2 * BC);
    float *means = dx ? cu_scratch(e, 2 * (size_t)B * G) : NULL;
    if (!sdz || (dx && !means)) return;
    double *sdzx = sdz + BC;
    k_gn_row_sums<<<(unsigned)BC, GN_THREADS, 0, e->stream>>>(sdz, sdzx, dy, x, mean, rstd, gamma, beta, C, N, G,
                                                              silu);
    if (CU_LAUNCHED(e, "groupnorm backward")) return;
    if (dgamma || dbeta) {
        k_gn_affine_grads<<<cu_blocks((size_t)C), CU_THREADS, 0, e->stream>>>(dgamma, dbeta, sdz, sdzx, B, C);
        if (CU_LAUNCHED(e, "groupnorm backward")) return;
    }
    if (!dx) return;
    k_gn_group_means<<<cu_blocks((size_t)B * G), CU_THREADS, 0, e->stream>>>(means, sdz, sdzx, gamma, B, C, N, G);
    if (CU_LAUNCHED(e, "groupnorm backward")) return;
    CuLaunch l = cu_rows(BC, (size_t)N);
    k_gn_dx CU_LAUNCH(l)(dx, dy, x, mean, rstd, gamma, beta, means, B, C, N, G, silu);
    CU_LAUNCHED(e, "groupnorm backward");
}

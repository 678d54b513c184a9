/* GroupNorm (eps 1e-5, affine) with its optional fused SiLU on the GPU, as
 * engine/groupnorm.c. One (b, g) group is Cg*N contiguous values (Cg = C/G).
 *
 * Forward: one block per (b, g); one pass for the statistics (sum x and sum x^2 in double,
 * var = E[x^2] - mean^2 clamped at 0), then the output pass (its reads mostly hit L2).
 *
 * Backward, with xhat = (x - mean) rstd, z = gamma xhat + beta, dz = dy silu'(z) (or dy):
 *   1. one block per (b, g), one warp per channel (the warps take the group's channels in
 *      turn): sdz[b, c] = sum dz, sdzx[b, c] = sum dz xhat (double; a lane-strided loop,
 *      then a shuffle tree), kept for step 2 when dgamma or dbeta is wanted. Each warp sums
 *      gamma sdz and gamma sdzx over its channels in channel order, the warps' sums are
 *      added in warp order into mean(gamma dz) and mean(gamma dz xhat), and then (after
 *      one barrier) the same block does dx += rstd (gamma dz - mean(gamma dz) - xhat
 *      mean(gamma dz xhat)) over the group, one thread a value (the second reads of x
 *      and dy mostly hit L2);
 *   2. dbeta[c] += sum_b sdz[b, c], dgamma[c] += sum_b sdzx[b, c], in batch order: one warp
 *      per channel, the lanes load 32 batches at a time and lane order feeds the sum.
 * The block size depends on the group size only (GN_THREADS_SMALL below 2048 values).
 * Every sum has a fixed order (no atomics), so results are the same run to run. */
#include "engine/cuda/cuda_private.cuh"

#define GN_EPS 1e-5
#define GN_THREADS 256
#define GN_THREADS_SMALL 128
#define GN_FULL 0xffffffffu

/* threads per (b, g) block for a group of M values: a multiple of 32, at most 1024 */
static unsigned gn_threads(size_t M) { return M >= 2048 ? GN_THREADS : GN_THREADS_SMALL; }

__device__ __forceinline__ float gn_out(float z, int silu) { return silu ? z * cu_sigmoid(z) : z; }

/* dz from x and dy, z recomputed as in the forward */
__device__ __forceinline__ float gn_dz(float xv, float dyv, float scale, float shift, int silu) {
    if (!silu) return dyv;
    float z = xv * scale + shift, s = cu_sigmoid(z);
    return dyv * s * (1.0f + z * (1.0f - s));
}

/* one block per (b, g): the group is Cg*N contiguous values (< 2^32) */
__global__ void k_gn_forward(float *y, float *mean, float *rstd, const float *x, const float *gamma,
                             const float *beta, int C, int N, int G, int silu) {
    __shared__ double shm[32];
    const int bg = blockIdx.x, b = bg / G, g = bg % G, Cg = C / G;
    const unsigned M = (unsigned)Cg * (unsigned)N;
    const size_t off = ((size_t)b * C + (size_t)g * Cg) * N;
    const float *xg = x + off;
    double s = 0, s2 = 0;
#pragma unroll 4
    for (unsigned i = threadIdx.x; i < M; i += blockDim.x) {
        double v = (double)xg[i];
        s += v;
        s2 += v * v;
    }
    s = cu_block_sum(s, shm);
    s2 = cu_block_sum(s2, shm);
    const double mu = s / (double)M, var = fmax(s2 / (double)M - mu * mu, 0.0);
    const float m = (float)mu, rs = (float)(1.0 / sqrt(var + GN_EPS));
    if (threadIdx.x == 0) {
        mean[bg] = m;
        rstd[bg] = rs;
    }
    float *yg = y + off;
#pragma unroll 4
    for (unsigned i = threadIdx.x; i < M; i += blockDim.x) {
        int c = g * Cg + (int)(i / (unsigned)N);
        float scale = rs * gamma[c], shift = beta[c] - m * scale;
        yg[i] = gn_out(xg[i] * scale + shift, silu);
    }
}

/* 1. one block per (b, g); sdz, sdzx (B, C) are NULL when no affine gradient is wanted,
 * dx is NULL when no input gradient is */
__global__ void k_gn_backward(float *dx, double *sdz, double *sdzx, const float *dy, const float *x,
                              const float *mean, const float *rstd, const float *gamma, const float *beta, int C,
                              int N, int G, int silu) {
    __shared__ double shm[2][32];
    const int bg = blockIdx.x, b = bg / G, g = bg % G, Cg = C / G;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    const size_t off = ((size_t)b * C + (size_t)g * Cg) * N;
    const float *xg = x + off, *dyg = dy + off;
    const float m = mean[bg], rs = rstd[bg];
    double wa = 0, wax = 0; /* lane 0: this warp's gamma-weighted sums, in channel order */
    for (int cl = warp; cl < Cg; cl += warps) { /* warp-uniform: the shuffles see all 32 lanes */
        const int c = g * Cg + cl;
        const float scale = rs * gamma[c], shift = beta[c] - m * scale;
        const float *xr = xg + (size_t)cl * N, *dyr = dyg + (size_t)cl * N;
        double a = 0, ax = 0;
#pragma unroll 4
        for (int i = lane; i < N; i += 32) {
            float xv = xr[i], dz = gn_dz(xv, dyr[i], scale, shift, silu), xhat = (xv - m) * rs;
            a += (double)dz;
            ax += (double)dz * (double)xhat;
        }
        for (int o = 16; o > 0; o >>= 1) {
            a += __shfl_down_sync(GN_FULL, a, o);
            ax += __shfl_down_sync(GN_FULL, ax, o);
        }
        if (lane == 0) {
            if (sdz) {
                sdz[(size_t)b * C + c] = a;
                sdzx[(size_t)b * C + c] = ax;
            }
            wa += (double)gamma[c] * a;
            wax += (double)gamma[c] * ax;
        }
    }
    if (!dx) return; /* the same for the whole block */
    if (lane == 0) {
        shm[0][warp] = wa;
        shm[1][warp] = wax;
    }
    __syncthreads();
    double ta = 0, tax = 0;
    for (int w = 0; w < warps; w++) {
        ta += shm[0][w];
        tax += shm[1][w];
    }
    const unsigned M = (unsigned)Cg * (unsigned)N;
    const float mg = (float)(ta / (double)M), mgx = (float)(tax / (double)M);
    float *dxg = dx + off;
#pragma unroll 4
    for (unsigned i = threadIdx.x; i < M; i += blockDim.x) {
        const int c = g * Cg + (int)(i / (unsigned)N);
        const float gc = gamma[c], scale = rs * gc, shift = beta[c] - m * scale;
        const float xv = xg[i], dz = gn_dz(xv, dyg[i], scale, shift, silu), xhat = (xv - m) * rs;
        dxg[i] += rs * (gc * dz - mg - xhat * mgx);
    }
}

/* 2. one warp per channel; the batch in order: each round the lanes load 32 batches and
 * every lane adds them in lane order (lane 0 writes), the next round's loads in flight */
__global__ void k_gn_affine_grads(float *dgamma, float *dbeta, const double *sdz, const double *sdzx, int B,
                                  int C) {
    const int lane = threadIdx.x & 31, c = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    if (c >= C) return; /* a whole warp: no barriers below */
    double va = 0, vax = 0;
    if (lane < B) {
        va = sdz[(size_t)lane * C + c];
        vax = sdzx[(size_t)lane * C + c];
    }
    double a = 0, ax = 0;
    for (int b0 = 0; b0 < B; b0 += 32) {
        const int nb = b0 + 32 + lane, n = B - b0 < 32 ? B - b0 : 32;
        double na = 0, nax = 0;
        if (nb < B) {
            na = sdz[(size_t)nb * C + c];
            nax = sdzx[(size_t)nb * C + c];
        }
        for (int j = 0; j < n; j++) {
            a += __shfl_sync(GN_FULL, va, j);
            ax += __shfl_sync(GN_FULL, vax, j);
        }
        va = na;
        vax = nax;
    }
    if (lane == 0) {
        if (dbeta) dbeta[c] += (float)a;
        if (dgamma) dgamma[c] += (float)ax;
    }
}

extern "C" void cu_groupnorm_forward(CudaEngine *e, float *y, float *mean, float *rstd, const float *x,
                                     const float *gamma, const float *beta, int B, int C, int N, int G,
                                     int silu) {
    if (e->status) return;
    const unsigned t = gn_threads((size_t)(C / G) * N);
    k_gn_forward<<<B * G, t, 0, e->stream>>>(y, mean, rstd, x, gamma, beta, C, N, G, silu);
    CU_LAUNCHED(e, "groupnorm forward");
}

extern "C" void cu_groupnorm_backward(CudaEngine *e, float *dx, float *dgamma, float *dbeta, const float *dy,
                                      const float *x, const float *mean, const float *rstd, const float *gamma,
                                      const float *beta, int B, int C, int N, int G, int silu) {
    if (e->status || (!dx && !dgamma && !dbeta)) return;
    const size_t BC = (size_t)B * C;
    const int affine = dgamma || dbeta;
    double *sdz = affine ? cu_red(e, 2 * BC) : NULL;
    if (affine && !sdz) return;
    double *sdzx = affine ? sdz + BC : NULL;
    const unsigned t = gn_threads((size_t)(C / G) * N);
    k_gn_backward<<<B * G, t, 0, e->stream>>>(dx, sdz, sdzx, dy, x, mean, rstd, gamma, beta, C, N, G, silu);
    if (CU_LAUNCHED(e, "groupnorm backward") || !affine) return;
    const unsigned warps = CU_THREADS / 32;
    k_gn_affine_grads<<<(unsigned)((C + warps - 1) / warps), CU_THREADS, 0, e->stream>>>(dgamma, dbeta, sdz, sdzx,
                                                                                          B, C);
    CU_LAUNCHED(e, "groupnorm backward");
}

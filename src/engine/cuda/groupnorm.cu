/* GroupNorm (eps 1e-5, affine) with its optional fused SiLU on the GPU, as
 * engine/groupnorm.c. One (b, g) group is Cg*N contiguous values (Cg = C/G).
 *
 * Forward: one block per (b, g). The group is cut into chunks of 4 values (the last one
 * short when 4 does not divide Cg*N); thread t takes chunks t, t + T, t + 2T, ... (T the
 * block size) and sums x and x^2 in double, chunk by chunk in that order, values in order;
 * one block reduction of the pair (cu_block_sum2) gives var = E[x^2] - mean^2, clamped at
 * 0, and then each thread writes gn_out(x scale_c + shift_c) for its chunks. Two paths,
 * chosen by the shape alone (gn_forward_plan):
 *   - register path (groups of at most GN_CG_MAX channels and 4 * GN_REG_V * 512 values,
 *     every UNet layer): each thread keeps its V chunks (V of 1, 2, 4, 8, a template
 *     argument; T = ceil(chunks / V) rounded up to 32) in registers, so x is read once;
 *     the group's gamma and beta are staged in shared memory;
 *   - loop path (larger groups): the same chunks in a strided loop, read again for the
 *     output (those reads mostly hit L2), gamma and beta from global memory.
 * Each thread walks its chunks' channel and position incrementally (one division at the
 * start), no division per value. A chunk is one float4 load and store when 4 divides
 * Cg*N and x, y are 16-byte aligned, else four scalar accesses (the values past the group
 * read as 0, adding nothing): the same chunks and order either way, so the bits do not
 * depend on the alignment; the grid is B*G blocks and T depends on Cg and N only.
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
 * The backward's block size depends on the group size only (GN_THREADS_SMALL below 2048
 * values). Every sum has a fixed order (no atomics), so results are the same run to run. */
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

/* ---- forward */

#define GN_REG_V 8             /* the register path: at most 8 chunks (32 values) a thread, */
#define GN_REG_THREADS 256     /* V doubled while a block would need more threads than this, */
#define GN_REG_MAX_THREADS 512 /* so at most 8 * 512 chunks (16384 values) a group, */
#define GN_CG_MAX 128          /* and at most 128 channels (gamma, beta in shared memory) */

/* chunk e/4 of a group of M values, its first value at e (< M): one float4 when VEC (4
 * divides M, x 16-byte aligned: every chunk whole and aligned), else value by value with
 * the values past M as 0 */
template <bool VEC> __device__ __forceinline__ float4 gn_load(const float *xg, unsigned e, unsigned M) {
    if (VEC) return *reinterpret_cast<const float4 *>(xg + e);
    float4 v;
    v.x = xg[e];
    v.y = e + 1 < M ? xg[e + 1] : 0.0f;
    v.z = e + 2 < M ? xg[e + 2] : 0.0f;
    v.w = e + 3 < M ? xg[e + 3] : 0.0f;
    return v;
}

template <bool VEC> __device__ __forceinline__ void gn_store(float *yg, unsigned e, unsigned M, float4 v) {
    if (VEC) {
        *reinterpret_cast<float4 *>(yg + e) = v;
        return;
    }
    yg[e] = v.x;
    if (e + 1 < M) yg[e + 1] = v.y;
    if (e + 2 < M) yg[e + 2] = v.z;
    if (e + 3 < M) yg[e + 3] = v.w;
}

/* adds a chunk's values to the thread's sums, in order (a padding 0 adds nothing) */
__device__ __forceinline__ void gn_acc(double &s, double &s2, float4 v) {
    const double a[4] = {(double)v.x, (double)v.y, (double)v.z, (double)v.w};
#pragma unroll
    for (int j = 0; j < 4; j++) {
        s += a[j];
        s2 += a[j] * a[j];
    }
}

/* the group's mean and rstd (as float, for every thread) from the threads' sums; thread 0
 * writes them */
__device__ __forceinline__ void gn_stats(double s, double s2, unsigned M, double *shm, float *mean, float *rstd,
                                         int bg, float *m, float *rs) {
    cu_block_sum2(&s, &s2, shm);
    const double mu = s / (double)M, var = fmax(s2 / (double)M - mu * mu, 0.0);
    *m = (float)mu;
    *rs = (float)(1.0 / sqrt(var + GN_EPS));
    if (threadIdx.x == 0) {
        mean[bg] = *m;
        rstd[bg] = *rs;
    }
}

/* Where the thread's current chunk starts in the group: channel cl, position r < N in it.
 * The thread's chunks start at 4 (threadIdx.x + k blockDim.x), k = 0, 1, ...; next() moves
 * to k + 1 (4 blockDim.x values on: dcl channels and dr values, r + dr < 2N). */
struct GnPos {
    unsigned cl, r, dcl, dr, N;
    __device__ __forceinline__ explicit GnPos(unsigned n) : N(n) {
        const unsigned e = 4 * threadIdx.x, step = 4 * blockDim.x;
        cl = e / n, r = e - cl * n;
        dcl = step / n, dr = step - dcl * n;
    }
    __device__ __forceinline__ void next() {
        cl += dcl, r += dr;
        if (r >= N) r -= N, cl++;
    }
};

/* gn_out(x scale + shift) for the chunk at e (at p in the group), scale and shift of each
 * value's channel as in the CPU engine; ga, be: the group's gamma and beta */
__device__ __forceinline__ float4 gn_norm(float4 v, unsigned e, unsigned M, GnPos p, const float *ga,
                                          const float *be, float m, float rs, int silu) {
    float o[4] = {v.x, v.y, v.z, v.w};
    unsigned cl = p.cl, r = p.r;
#pragma unroll
    for (int j = 0; j < 4; j++) {
        if (e + j < M) {
            const float scale = rs * ga[cl], shift = be[cl] - m * scale;
            o[j] = gn_out(o[j] * scale + shift, silu);
        }
        if (++r == p.N) r = 0, cl++;
    }
    return make_float4(o[0], o[1], o[2], o[3]);
}

/* the register path: one block per (b, g), the thread's V chunks held from the sums to the
 * output; the group is Cg*N contiguous values (Cg <= GN_CG_MAX, ceil(Cg*N / 4) <= V blockDim.x) */
template <int V, bool VEC>
__global__ void k_gn_forward_reg(float *y, float *mean, float *rstd, const float *x, const float *gamma,
                                 const float *beta, int C, int N, int G, int silu) {
    __shared__ double shm[64];
    __shared__ float sga[GN_CG_MAX], sbe[GN_CG_MAX];
    const int bg = blockIdx.x, b = bg / G, g = bg % G, Cg = C / G;
    const unsigned M = (unsigned)Cg * (unsigned)N, Q = M / 4 + (M % 4 != 0);
    const size_t off = ((size_t)b * C + (size_t)g * Cg) * N;
    const float *xg = x + off;
    float4 v[V];
#pragma unroll
    for (int k = 0; k < V; k++) {
        const unsigned q = threadIdx.x + k * blockDim.x;
        v[k] = q < Q ? gn_load<VEC>(xg, 4 * q, M) : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    }
    for (int cl = threadIdx.x; cl < Cg; cl += blockDim.x) { /* seen after gn_stats' barriers */
        sga[cl] = gamma[g * Cg + cl];
        sbe[cl] = beta[g * Cg + cl];
    }
    double s = 0, s2 = 0;
#pragma unroll
    for (int k = 0; k < V; k++) gn_acc(s, s2, v[k]);
    float m, rs;
    gn_stats(s, s2, M, shm, mean, rstd, bg, &m, &rs);
    float *yg = y + off;
    GnPos p((unsigned)N);
#pragma unroll
    for (int k = 0; k < V; k++, p.next()) {
        const unsigned q = threadIdx.x + k * blockDim.x;
        if (q < Q) gn_store<VEC>(yg, 4 * q, M, gn_norm(v[k], 4 * q, M, p, sga, sbe, m, rs, silu));
    }
}

/* the loop path: one block per (b, g), any group (Cg*N < 2^32), x read twice */
template <bool VEC>
__global__ void k_gn_forward_loop(float *y, float *mean, float *rstd, const float *x, const float *gamma,
                                  const float *beta, int C, int N, int G, int silu) {
    __shared__ double shm[64];
    const int bg = blockIdx.x, b = bg / G, g = bg % G, Cg = C / G;
    const unsigned M = (unsigned)Cg * (unsigned)N, Q = M / 4 + (M % 4 != 0);
    const size_t off = ((size_t)b * C + (size_t)g * Cg) * N;
    const float *xg = x + off;
    double s = 0, s2 = 0;
#pragma unroll 4
    for (unsigned q = threadIdx.x; q < Q; q += blockDim.x) gn_acc(s, s2, gn_load<VEC>(xg, 4 * q, M));
    float m, rs;
    gn_stats(s, s2, M, shm, mean, rstd, bg, &m, &rs);
    const float *ga = gamma + (size_t)g * Cg, *be = beta + (size_t)g * Cg;
    float *yg = y + off;
    GnPos p((unsigned)N);
#pragma unroll 4
    for (unsigned q = threadIdx.x; q < Q; q += blockDim.x, p.next())
        gn_store<VEC>(yg, 4 * q, M, gn_norm(gn_load<VEC>(xg, 4 * q, M), 4 * q, M, p, ga, be, m, rs, silu));
}

typedef void (*GnForwardKernel)(float *, float *, float *, const float *, const float *, const float *, int, int,
                                int, int);
typedef struct {
    GnForwardKernel k;
    unsigned threads;
} GnForwardPlan;

/* The forward's kernel and block size: from Cg and N alone, but for vec (which changes
 * how the chunks are loaded, not which thread sums what). */
static GnForwardPlan gn_forward_plan(int Cg, size_t M, bool vec) {
    const size_t Q = (M + 3) / 4;
    GnForwardPlan p;
    if (Cg > GN_CG_MAX || Q > (size_t)GN_REG_V * GN_REG_MAX_THREADS) {
        p.k = vec ? k_gn_forward_loop<true> : k_gn_forward_loop<false>;
        p.threads = gn_threads(M);
        return p;
    }
    int v = 1;
    while (v < GN_REG_V && Q > (size_t)v * GN_REG_THREADS) v *= 2;
    switch (v) {
    case 1: p.k = vec ? k_gn_forward_reg<1, true> : k_gn_forward_reg<1, false>; break;
    case 2: p.k = vec ? k_gn_forward_reg<2, true> : k_gn_forward_reg<2, false>; break;
    case 4: p.k = vec ? k_gn_forward_reg<4, true> : k_gn_forward_reg<4, false>; break;
    default: p.k = vec ? k_gn_forward_reg<GN_REG_V, true> : k_gn_forward_reg<GN_REG_V, false>; break;
    }
    const size_t t = (Q + v - 1) / v; /* at most GN_REG_MAX_THREADS */
    p.threads = (unsigned)((t + 31) / 32 * 32);
    return p;
}

/* ---- backward */

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
    const int Cg = C / G;
    const size_t M = (size_t)Cg * N;
    const bool vec = M % 4 == 0 && (((uintptr_t)x | (uintptr_t)y) & 15) == 0;
    const GnForwardPlan p = gn_forward_plan(Cg, M, vec);
    p.k<<<B * G, p.threads, 0, e->stream>>>(y, mean, rstd, x, gamma, beta, C, N, G, silu);
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

/* Direct convolutions for layers with few channels (Cin <= 4 or Cout <= 4: a UNet's first
 * and last layers on 1- or 3-channel images), a candidate of the measured choice
 * (conv_choice.cu, "direct"), where im2col + cuBLAS and cuDNN run thin, badly shaped work.
 * Same operands and conventions as cu_conv_gemm_dir (cuda_private.cuh, CU_DIR_*):
 *   forward:  y = conv(x, w) (overwritten), no bias;
 *   data:     dx += the adjoint of the convolution applied to dy;
 *   filter:   dw += sum over the batch and positions of dy * x.
 * Shapes: x (B, Cin, H, W), y (B, Cout, Ho, Wo), w (Cout, Cin, k, k), zero padding k/2,
 * any stride, k at most DIRECT_MAX_K.
 *
 * forward: one thread per (image, group of up to DIRECT_GROUP output channels, output
 *   position), positions fastest (coalesced along W): each input value read serves the
 *   group's outputs; each output sums ci, ky, kx in that order in float.
 * data: one thread per (image, group of up to DIRECT_GROUP input channels, input position),
 *   a gather over co, ky, kx in that order (no atomics), added to dx.
 * filter: block (slice of images, (co, ci)) sums dy * x for the k*k taps over its images and
 *   positions in double (each thread a fixed stride of them, then the fixed-order block sum),
 *   into scratch; then one thread per weight adds the slices' partials in slice order, in
 *   double, and adds the result to dw. The slices depend on the shape only.
 * Every value is a fixed-order sum, so a seed gives the same bits run to run. */
#include <limits.h>

#include "engine/cuda/cuda_private.cuh"

#define DIRECT_FEW 4       /* Cin or Cout at most this: the shape is a candidate */
#define DIRECT_GROUP 4     /* channels one forward / backward-data thread computes */
#define DIRECT_MAX_K 3     /* kernel sizes 1..3 (the filter kernel keeps k*k sums in registers) */
#define FILTER_THREADS 256
#define FILTER_BLOCKS 1024 /* about this many partial-sum blocks in all (a constant: the same order on every card) */
#define FILTER_MIN_VALUES 4096 /* at least this many (image, position) pairs a slice */

static int out_size(int size, int k, int stride) { return (size + 2 * (k / 2) - k) / stride + 1; }
static size_t groups_of(int C) { return ((size_t)C + DIRECT_GROUP - 1) / DIRECT_GROUP; }

/* y[b][co][oy][ox] = sum over ci, ky, kx of w[co][ci][ky][kx] * x[b][ci][oy*st + ky - pad][ox*st + kx - pad]
 * (taps outside the image left out); n = B * groups * Ho*Wo threads */
__global__ void k_direct_forward(float *y, const float *x, const float *w, int Cin, int H, int W, int Cout, int k,
                                 int st, int Ho, int Wo, unsigned n) {
    const unsigned No = (unsigned)(Ho * Wo), groups = (unsigned)((Cout + DIRECT_GROUP - 1) / DIRECT_GROUP);
    const int kk = k * k, pad = k / 2, wstride = Cin * kk; /* w[co + 1] - w[co] */
    for (unsigned i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        const unsigned r = i / No, g = r % groups, b = r / groups;
        const int p = (int)(i - r * No), oy = p / Wo, ox = p - oy * Wo;
        const int co0 = (int)g * DIRECT_GROUP, nc = min(DIRECT_GROUP, Cout - co0);
        float acc[DIRECT_GROUP];
#pragma unroll
        for (int j = 0; j < DIRECT_GROUP; j++) acc[j] = 0.0f;
        const float *xb = x + (size_t)b * Cin * H * W;
        for (int ci = 0; ci < Cin; ci++) {
            const float *xc = xb + (size_t)ci * H * W;
            const float *wc = w + ((size_t)co0 * Cin + ci) * kk; /* w[co0][ci][0][0] */
            for (int ky = 0; ky < k; ky++) {
                const int iy = oy * st + ky - pad;
                if (iy < 0 || iy >= H) continue;
                for (int kx = 0; kx < k; kx++) {
                    const int ix = ox * st + kx - pad;
                    if (ix < 0 || ix >= W) continue;
                    const float v = xc[iy * W + ix];
#pragma unroll
                    for (int j = 0; j < DIRECT_GROUP; j++)
                        if (j < nc) acc[j] += __ldg(wc + j * wstride + ky * k + kx) * v;
                }
            }
        }
        float *yp = y + ((size_t)b * Cout + co0) * No + p;
#pragma unroll
        for (int j = 0; j < DIRECT_GROUP; j++)
            if (j < nc) yp[(size_t)j * No] = acc[j];
    }
}

/* dx[b][ci][iy][ix] += sum over co, ky, kx of w[co][ci][ky][kx] * dy[b][co][oy][ox], over the taps
 * with oy*st = iy + pad - ky and ox*st = ix + pad - kx inside the output (the adjoint of
 * k_direct_forward, as conv.cu's col2im); n = B * groups * H*W threads */
__global__ void k_direct_backward_data(float *dx, const float *dy, const float *w, int Cin, int H, int W, int Cout,
                                       int k, int st, int Ho, int Wo, unsigned n) {
    const unsigned N = (unsigned)(H * W), groups = (unsigned)((Cin + DIRECT_GROUP - 1) / DIRECT_GROUP);
    const int No = Ho * Wo, kk = k * k, pad = k / 2;
    for (unsigned i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        const unsigned r = i / N, g = r % groups, b = r / groups;
        const int q = (int)(i - r * N), iy = q / W, ix = q - iy * W;
        const int ci0 = (int)g * DIRECT_GROUP, nc = min(DIRECT_GROUP, Cin - ci0);
        float acc[DIRECT_GROUP];
#pragma unroll
        for (int j = 0; j < DIRECT_GROUP; j++) acc[j] = 0.0f;
        const float *dyb = dy + (size_t)b * Cout * No;
        for (int co = 0; co < Cout; co++) {
            const float *dyc = dyb + (size_t)co * No;
            const float *wc = w + ((size_t)co * Cin + ci0) * kk; /* w[co][ci0][0][0]; w[co][ci0 + j] is kk further */
            for (int ky = 0; ky < k; ky++) {
                const int ty = iy + pad - ky; /* = oy * st */
                if (ty < 0 || ty % st) continue;
                const int oy = ty / st;
                if (oy >= Ho) continue;
                for (int kx = 0; kx < k; kx++) {
                    const int tx = ix + pad - kx;
                    if (tx < 0 || tx % st) continue;
                    const int ox = tx / st;
                    if (ox >= Wo) continue;
                    const float v = dyc[oy * Wo + ox];
#pragma unroll
                    for (int j = 0; j < DIRECT_GROUP; j++)
                        if (j < nc) acc[j] += __ldg(wc + j * kk + ky * k + kx) * v;
                }
            }
        }
        float *dxp = dx + ((size_t)b * Cin + ci0) * N + q;
#pragma unroll
        for (int j = 0; j < DIRECT_GROUP; j++)
            if (j < nc) dxp[(size_t)j * N] += acc[j];
    }
}

/* part[((co*Cin + ci)*k*k + ky*k + kx)*S + s] = sum over the images b of slice s (per_slice
 * of them from s*per_slice) and output positions p = (oy, ox) of
 * dy[b][co][p] * x[b][ci][oy*st + ky - pad][ox*st + kx - pad], in double. Block (s, co*Cin + ci). */
__global__ void k_direct_filter_partials(double *part, const float *dy, const float *x, int B, int Cin, int H, int W,
                                         int Cout, int k, int st, int Ho, int Wo, int per_slice, int S) {
    __shared__ double shm[32];
    const int s = blockIdx.x, pair = blockIdx.y, co = pair / Cin, ci = pair % Cin;
    const int No = Ho * Wo, kk = k * k, pad = k / 2;
    const int b0 = s * per_slice, nb = min(per_slice, B - b0);
    const unsigned n = (unsigned)nb * (unsigned)No;
    double acc[DIRECT_MAX_K * DIRECT_MAX_K]; /* tap (ky, kx) at ky*DIRECT_MAX_K + kx */
#pragma unroll
    for (int t = 0; t < DIRECT_MAX_K * DIRECT_MAX_K; t++) acc[t] = 0.0;
    for (unsigned i = threadIdx.x; i < n; i += blockDim.x) {
        const unsigned j = i / (unsigned)No;
        const int p = (int)(i - j * (unsigned)No), b = b0 + (int)j, oy = p / Wo, ox = p - oy * Wo;
        const double d = (double)dy[((size_t)b * Cout + co) * No + p];
        const float *xc = x + ((size_t)b * Cin + ci) * H * W;
#pragma unroll
        for (int ky = 0; ky < DIRECT_MAX_K; ky++) {
            const int iy = oy * st + ky - pad;
            if (ky >= k || iy < 0 || iy >= H) continue;
#pragma unroll
            for (int kx = 0; kx < DIRECT_MAX_K; kx++) {
                const int ix = ox * st + kx - pad;
                if (kx >= k || ix < 0 || ix >= W) continue;
                acc[ky * DIRECT_MAX_K + kx] += d * (double)xc[iy * W + ix];
            }
        }
    }
    /* k is the same for the whole block, so every thread takes part in each block sum */
#pragma unroll
    for (int ky = 0; ky < DIRECT_MAX_K; ky++)
#pragma unroll
        for (int kx = 0; kx < DIRECT_MAX_K; kx++) {
            if (ky >= k || kx >= k) continue;
            const double v = cu_block_sum(acc[ky * DIRECT_MAX_K + kx], shm);
            if (threadIdx.x == 0) part[((size_t)pair * kk + ky * k + kx) * S + s] = v;
        }
}

/* dw[j] += the S partials of weight j, in slice order */
__global__ void k_direct_filter_finish(float *dw, const double *part, size_t nw, int S) {
    CU_FOR(j, nw) {
        double acc = 0;
        for (int s = 0; s < S; s++) acc += part[j * S + s];
        dw[j] += (float)acc;
    }
}

int cu_conv_direct_fits(ConvShape s) {
    if (s.Cin > DIRECT_FEW && s.Cout > DIRECT_FEW) return 0;
    if (s.B < 1 || s.Cin < 1 || s.Cout < 1 || s.H < 1 || s.W < 1 || s.k < 1 || s.k > DIRECT_MAX_K || s.stride < 1)
        return 0;
    const int Ho = out_size(s.H, s.k, s.stride), Wo = out_size(s.W, s.k, s.stride);
    if (Ho < 1 || Wo < 1) return 0;
    /* the kernels count threads and positions in 32 bits; the filter grid's y is (co, ci) */
    const size_t fwd = (size_t)s.B * groups_of(s.Cout) * Ho * Wo, data = (size_t)s.B * groups_of(s.Cin) * s.H * s.W;
    return fwd <= INT_MAX && data <= INT_MAX && (size_t)s.Cin * s.Cout <= 65535;
}

static void direct_forward(CudaEngine *e, float *y, const float *x, const float *w, ConvShape s) {
    const int Ho = out_size(s.H, s.k, s.stride), Wo = out_size(s.W, s.k, s.stride);
    const size_t n = (size_t)s.B * groups_of(s.Cout) * Ho * Wo;
    k_direct_forward<<<cu_blocks(n), CU_THREADS, 0, e->stream>>>(y, x, w, s.Cin, s.H, s.W, s.Cout, s.k, s.stride, Ho,
                                                                 Wo, (unsigned)n);
    CU_LAUNCHED(e, "direct convolution forward");
}

static void direct_backward_data(CudaEngine *e, float *dx, const float *dy, const float *w, ConvShape s) {
    const int Ho = out_size(s.H, s.k, s.stride), Wo = out_size(s.W, s.k, s.stride);
    const size_t n = (size_t)s.B * groups_of(s.Cin) * s.H * s.W;
    k_direct_backward_data<<<cu_blocks(n), CU_THREADS, 0, e->stream>>>(dx, dy, w, s.Cin, s.H, s.W, s.Cout, s.k,
                                                                       s.stride, Ho, Wo, (unsigned)n);
    CU_LAUNCHED(e, "direct convolution backward (data)");
}

static void direct_backward_filter(CudaEngine *e, float *dw, const float *dy, const float *x, ConvShape s) {
    const int Ho = out_size(s.H, s.k, s.stride), Wo = out_size(s.W, s.k, s.stride);
    const long pairs = (long)s.Cout * s.Cin, No = (long)Ho * Wo;
    /* slices: about FILTER_BLOCKS blocks in all, each with at least FILTER_MIN_VALUES
     * (image, position) pairs, whole images; the shape alone decides */
    long want = (FILTER_BLOCKS + pairs - 1) / pairs;
    long most = ((long)s.B * No) / FILTER_MIN_VALUES;
    int S = (int)(want < most ? want : most);
    if (S < 1) S = 1;
    if (S > s.B) S = s.B;
    const int per_slice = (s.B + S - 1) / S;
    S = (s.B + per_slice - 1) / per_slice; /* no empty slice */
    const size_t nw = (size_t)pairs * s.k * s.k;
    double *part = cu_red(e, nw * S);
    if (!part) return;
    k_direct_filter_partials<<<dim3((unsigned)S, (unsigned)pairs), FILTER_THREADS, 0, e->stream>>>(
        part, dy, x, s.B, s.Cin, s.H, s.W, s.Cout, s.k, s.stride, Ho, Wo, per_slice, S);
    if (CU_LAUNCHED(e, "direct convolution backward (filter)")) return;
    k_direct_filter_finish<<<cu_blocks(nw), CU_THREADS, 0, e->stream>>>(dw, part, nw, S);
    CU_LAUNCHED(e, "direct convolution backward (filter)");
}

void cu_conv_direct_dir(CudaEngine *e, int dir, ConvShape s, float *out, const float *a, const float *b) {
    if (e->status) return;
    if (!cu_conv_direct_fits(s)) {
        cu_fail(e, D2C_ERR_FAIL, "cuda: no direct convolution for conv%dx%d/%d %d->%d at %dx%d", s.k, s.k, s.stride,
                s.Cin, s.Cout, s.H, s.W);
        return;
    }
    if (dir == CU_DIR_FWD)
        direct_forward(e, out, a, b, s);
    else if (dir == CU_DIR_DATA)
        direct_backward_data(e, out, a, b, s);
    else
        direct_backward_filter(e, out, a, b, s);
}

/* Flat-buffer ops on the GPU, as engine/cpu/flat.c: axpy & co., Adam, the EMA, q_sample
 * and its backward, guidance and the sampler steps, the layer-wise gradient distance,
 * per-channel means and fills. Element-wise ops are one thread per value with the CPU's
 * expression (compiled without FMA contraction, so they give the CPU's bits); the sums
 * are fixed-order block reductions in double. */
#include <stdlib.h>

#include "engine/cuda/cuda_private.cuh"

__global__ void k_axpby(float *y, float a, const float *x, float b, size_t n) {
    CU_FOR(i, n) y[i] = a * x[i] + b * y[i];
}

/* y += a x, the CPU's vec_axpy (one product, one sum) */
__global__ void k_axpy(float *y, float a, const float *x, size_t n) {
    CU_FOR(i, n) y[i] += a * x[i];
}

__global__ void k_waxpy(float *w, float a, const float *x, const float *y, size_t n) {
    CU_FOR(i, n) w[i] = y[i] + a * x[i];
}

__global__ void k_waxpy_at(float *w, const float *a, float sign, const float *x, const float *y, size_t n) {
    const float k = sign * a[0];
    CU_FOR(i, n) w[i] = y[i] + k * x[i];
}

__global__ void k_scale(float *y, float a, size_t n) {
    CU_FOR(i, n) y[i] *= a;
}

__global__ void k_clamp(float *y, float lo, float hi, size_t n) {
    CU_FOR(i, n) y[i] = y[i] < lo ? lo : y[i] > hi ? hi : y[i];
}

extern "C" void cu_axpy(CudaEngine *e, float *y, float a, const float *x, size_t n) {
    if (e->status || !n) return;
    k_axpy<<<cu_blocks(n), CU_THREADS, 0, e->stream>>>(y, a, x, n);
    CU_LAUNCHED(e, "axpy");
}

extern "C" void cu_axpby(CudaEngine *e, float *y, float a, const float *x, float b, size_t n) {
    if (e->status || !n) return;
    k_axpby<<<cu_blocks(n), CU_THREADS, 0, e->stream>>>(y, a, x, b, n);
    CU_LAUNCHED(e, "axpby");
}

extern "C" void cu_waxpy(CudaEngine *e, float *w, float a, const float *x, const float *y, size_t n) {
    if (e->status || !n) return;
    k_waxpy<<<cu_blocks(n), CU_THREADS, 0, e->stream>>>(w, a, x, y, n);
    CU_LAUNCHED(e, "waxpy");
}

extern "C" void cu_waxpy_at(CudaEngine *e, float *w, const float *a, float sign, const float *x, const float *y,
                            size_t n) {
    if (e->status || !n) return;
    k_waxpy_at<<<cu_blocks(n), CU_THREADS, 0, e->stream>>>(w, a, sign, x, y, n);
    CU_LAUNCHED(e, "waxpy");
}

extern "C" void cu_scale(CudaEngine *e, float *y, float a, size_t n) {
    if (e->status || !n) return;
    k_scale<<<cu_blocks(n), CU_THREADS, 0, e->stream>>>(y, a, n);
    CU_LAUNCHED(e, "scale");
}

extern "C" void cu_clamp(CudaEngine *e, float *y, float lo, float hi, size_t n) {
    if (e->status || !n) return;
    k_clamp<<<cu_blocks(n), CU_THREADS, 0, e->stream>>>(y, lo, hi, n);
    CU_LAUNCHED(e, "clamp");
}

/* ---------------------------------------------------------------- Adam, EMA */

__global__ void k_adam(float *params, const float *grads, float *m, float *v, size_t n, float b1, float b2,
                       float eps, const float *coef) {
    const float step_size = coef[0], bc2_sqrt = coef[1];
    CU_FOR(i, n) {
        float g = grads[i];
        float mi = m[i] * b1 + g * (1.0f - b1);
        float vi = v[i] * b2 + g * g * (1.0f - b2);
        m[i] = mi;
        v[i] = vi;
        float denom = sqrtf(vi) / bc2_sqrt + eps;
        params[i] -= step_size * (mi / denom);
    }
}

extern "C" void cu_adam_step(CudaEngine *e, float *params, const float *grads, float *m, float *v, size_t n,
                             float b1, float b2, float eps, const float *coef) {
    if (e->status || !n) return;
    k_adam<<<cu_blocks(n), CU_THREADS, 0, e->stream>>>(params, grads, m, v, n, b1, b2, eps, coef);
    CU_LAUNCHED(e, "adam");
}

__global__ void k_ema(float *ema, const float *params, const float *decay, size_t n) {
    const float d = *decay;
    CU_FOR(i, n) ema[i] = d * ema[i] + (1.0f - d) * params[i];
}

extern "C" void cu_ema_update(CudaEngine *e, float *ema, const float *params, const float *decay, size_t n) {
    if (e->status || !n) return;
    k_ema<<<cu_blocks(n), CU_THREADS, 0, e->stream>>>(ema, params, decay, n);
    CU_LAUNCHED(e, "ema");
}

/* ---------------------------------------------------------------- q_sample */

/* per image b: ab = alpha_bar[t[b]], ca = sqrtf(ab), cn = sqrtf(1 - ab) (IEEE float square
 * roots: the CPU's values); rows: the images */
__global__ void k_q_sample(float *xt, const float *x0, const float *noise, const int64_t *t,
                           const float *alpha_bar, unsigned D, int B) {
    CU_ROWS(b, B) {
        const float ab = alpha_bar[t[b]], ca = sqrtf(ab), cn = sqrtf(1.0f - ab);
        const size_t o = (size_t)b * D;
        CU_COLS(i, D) xt[o + i] = ca * x0[o + i] + cn * noise[o + i];
    }
}

/* dx0 += sqrtf(ab_b) dxt */
__global__ void k_q_sample_backward(float *dx0, const float *dxt, const int64_t *t, const float *alpha_bar,
                                    unsigned D, int B) {
    CU_ROWS(b, B) {
        const float ca = sqrtf(alpha_bar[t[b]]);
        const size_t o = (size_t)b * D;
        CU_COLS(i, D) dx0[o + i] += ca * dxt[o + i];
    }
}

/* t into the index space and alpha_bar into scratch: both uploaded from the caller's arrays
 * (a graph records those addresses and uploads their current values at each launch);
 * -1 on failure (e->status set). t[b] in [0, ENGINE_T_STEPS), as on the CPU. */
static int upload_schedule(CudaEngine *e, const int64_t *t, const float *alpha_bar, int B, const int64_t **d_t,
                           const float **d_ab) {
    float *ab = cu_scratch(e, ENGINE_T_STEPS);
    if (!ab) return -1;
    cu_upload(e, ab, alpha_bar, ENGINE_T_STEPS * sizeof(float));
    *d_t = cu_upload_idx(e, t, B);
    *d_ab = ab;
    return e->status || !*d_t ? -1 : 0;
}

extern "C" void cu_q_sample(CudaEngine *e, float *xt, const float *x0, const float *noise, const int64_t *t,
                            const float *alpha_bar, int B, size_t D) {
    if (e->status || B < 1 || !D) return;
    const int64_t *d_t;
    const float *d_ab;
    if (upload_schedule(e, t, alpha_bar, B, &d_t, &d_ab)) return;
    CuLaunch l = cu_rows((size_t)B, D);
    k_q_sample CU_LAUNCH(l)(xt, x0, noise, d_t, d_ab, (unsigned)D, B);
    CU_LAUNCHED(e, "q_sample");
}

extern "C" void cu_q_sample_backward(CudaEngine *e, float *dx0, const float *dxt, const int64_t *t,
                                     const float *alpha_bar, int B, size_t D) {
    if (e->status || !dx0 || B < 1 || !D) return;
    const int64_t *d_t;
    const float *d_ab;
    if (upload_schedule(e, t, alpha_bar, B, &d_t, &d_ab)) return;
    CuLaunch l = cu_rows((size_t)B, D);
    k_q_sample_backward CU_LAUNCH(l)(dx0, dxt, d_t, d_ab, (unsigned)D, B);
    CU_LAUNCHED(e, "q_sample backward");
}

/* ---------------------------------------------------------------- sampling */

__global__ void k_guidance(float *eps, const float *ec, const float *en, float g, size_t n) {
    CU_FOR(i, n) eps[i] = en[i] + g * (ec[i] - en[i]);
}

__global__ void k_ddim_step(float *x, const float *eps, size_t n, float c_noise, float c_sig, float c_prev,
                            float c_prev_noise) {
    CU_FOR(k, n) {
        float x0 = (x[k] - c_noise * eps[k]) / c_sig;
        x[k] = c_prev * x0 + c_prev_noise * eps[k];
    }
}

__global__ void k_ddpm_step(float *x, const float *eps, const float *z, size_t n, float c_eps, float c_scale,
                            float sigma) {
    CU_FOR(k, n) x[k] = (x[k] - c_eps * eps[k]) * c_scale + sigma * (z ? z[k] : 0.0f);
}

extern "C" void cu_guidance(CudaEngine *e, float *eps, const float *ec, const float *en, float g, size_t n) {
    if (e->status || !n) return;
    k_guidance<<<cu_blocks(n), CU_THREADS, 0, e->stream>>>(eps, ec, en, g, n);
    CU_LAUNCHED(e, "guidance");
}

extern "C" void cu_ddim_step(CudaEngine *e, float *x, const float *eps, size_t n, float c_noise, float c_sig,
                             float c_prev, float c_prev_noise) {
    if (e->status || !n) return;
    k_ddim_step<<<cu_blocks(n), CU_THREADS, 0, e->stream>>>(x, eps, n, c_noise, c_sig, c_prev, c_prev_noise);
    CU_LAUNCHED(e, "ddim step");
}

extern "C" void cu_ddpm_step(CudaEngine *e, float *x, const float *eps, const float *z, size_t n, float c_eps,
                             float c_scale, float sigma) {
    if (e->status || !n) return;
    k_ddpm_step<<<cu_blocks(n), CU_THREADS, 0, e->stream>>>(x, eps, z, n, c_eps, c_scale, sigma);
    CU_LAUNCHED(e, "ddpm step");
}

/* ---------------------------------------------------------------- layer-wise distance */

#define COS_THREADS 256

/* One block per matrix row, in the order of the segment table segs (nseg entries of the
 * caller's EngineRows: `rows` rows of `cols` floats from `offset`): block r finds its
 * segment by walking the table. term[r] = 1 - dot / den, den = |a| |b| + 1e-6, and the
 * gradients va = -b / den + dot |b| a / (|a| den^2), vb symmetrically (engine/cpu/flat.c). */
__global__ void k_cosine_rows(double *term, float *va, float *vb, const float *a, const float *b,
                              const EngineRows *segs, int nseg) {
    __shared__ double shm[32];
    size_t r = blockIdx.x;
    int sg = 0;
    while (sg < nseg - 1 && r >= (size_t)(segs[sg].rows > 0 ? segs[sg].rows : 0)) {
        r -= (size_t)(segs[sg].rows > 0 ? segs[sg].rows : 0);
        sg++;
    }
    const size_t cols = segs[sg].cols, o = segs[sg].offset + r * cols;
    const float *ar = a + o, *br = b + o;
    double dot = 0, na = 0, nb = 0;
    for (size_t j = threadIdx.x; j < cols; j += blockDim.x) {
        double x = ar[j], y = br[j];
        dot += x * y;
        na += x * x;
        nb += y * y;
    }
    dot = cu_block_sum(dot, shm);
    na = sqrt(cu_block_sum(na, shm));
    nb = sqrt(cu_block_sum(nb, shm));
    const double den = na * nb + 1e-6;
    if (threadIdx.x == 0) term[blockIdx.x] = 1.0 - dot / den;
    const double cb = nb > 0 ? dot * na / (nb * den * den) : 0.0;
    const double ca = na > 0 ? dot * nb / (na * den * den) : 0.0;
    for (size_t j = threadIdx.x; j < cols; j += blockDim.x) {
        if (vb) vb[o + j] = (float)(-(double)ar[j] / den + cb * br[j]);
        if (va) va[o + j] = (float)(-(double)br[j] / den + ca * ar[j]);
    }
}

/* out[0] = term[0] + term[1] + ... in row order (one thread: the CPU's sum, bit for bit) */
__global__ void k_sum_in_order(double *out, const double *term, size_t R) {
    double s = 0;
#pragma unroll 8
    for (size_t k = 0; k < R; k++) s += term[k];
    out[0] = s;
}

/* EngineRows travels as its bytes through the index upload: 3 words each */
static_assert(sizeof(EngineRows) == 3 * sizeof(int64_t), "EngineRows is three 64-bit words");

extern "C" void cu_layerwise_distance_to(CudaEngine *e, const EngineRows *rows, int nrows, const float *a,
                                         const float *b, float *va, float *vb, size_t n, double *out) {
    if (e->status) return;
    if (va) cu_memzero(e, va, n * sizeof(float));
    if (vb) cu_memzero(e, vb, n * sizeof(float));
    size_t R = 0;
    for (int s = 0; s < nrows; s++) R += rows[s].rows > 0 ? (size_t)rows[s].rows : 0;
    if (R == 0) {
        cu_check(e, cudaMemsetAsync(out, 0, sizeof *out, e->stream), "the layer-wise distance");
        return;
    }
    if (R > 0x7fffffffu || 3 * (size_t)nrows > (size_t)INT32_MAX) {
        cu_fail(e, D2C_ERR_FAIL, "cuda: layer-wise distance over %zu rows", R);
        return;
    }
    /* the caller's table itself (a host address that a graph replay uploads again) */
    const EngineRows *segs = (const EngineRows *)cu_upload_idx(e, (const int64_t *)rows, 3 * nrows);
    double *term = segs ? cu_red(e, R) : NULL;
    if (!term) return;
    k_cosine_rows<<<(unsigned)R, COS_THREADS, 0, e->stream>>>(term, va, vb, a, b, segs, nrows);
    if (CU_LAUNCHED(e, "layer-wise distance")) return;
    k_sum_in_order<<<1, 1, 0, e->stream>>>(out, term, R);
    CU_LAUNCHED(e, "layer-wise distance");
}

extern "C" double cu_layerwise_distance(CudaEngine *e, const EngineRows *rows, int nrows, const float *a,
                                        const float *b, float *va, float *vb, size_t n) {
    if (e->status) return NAN;
    size_t R = 0;
    for (int s = 0; s < nrows; s++) R += rows[s].rows > 0 ? (size_t)rows[s].rows : 0;
    /* the reduction space holds the R terms and, after them, the distance */
    double *red = cu_red(e, R + 1), h = NAN;
    if (!red) return NAN;
    cu_layerwise_distance_to(e, rows, nrows, a, b, va, vb, n, red + R);
    if (!e->status &&
        !cu_check(e, cudaMemcpyAsync(&h, red + R, sizeof h, cudaMemcpyDeviceToHost, e->stream),
                  "copying the layer-wise distance"))
        cu_check(e, cudaStreamSynchronize(e->stream), "copying the layer-wise distance");
    return e->status ? NAN : h;
}

/* ---------------------------------------------------------------- distribution-matching gap */

__global__ void k_feature_gap(double *sq, float *grad, const float *fr, const float *fs, int C, float coef,
                              float denom) {
    if (threadIdx.x == 0 && sq) { /* one thread: channel order, as the CPU */
        double s = 0;
        for (int c = 0; c < C; c++) {
            const double d = (double)fr[c] - fs[c];
            s += d * d;
        }
        sq[0] = s;
    }
    if (grad)
        for (int c = threadIdx.x; c < C; c += blockDim.x) grad[c] = coef * (fs[c] - fr[c]) / denom;
}

extern "C" void cu_feature_gap(CudaEngine *e, double *sq, float *grad, const float *fr, const float *fs, int C,
                               float coef, float denom) {
    if (e->status || C <= 0 || (!sq && !grad)) return;
    k_feature_gap<<<1, 256, 0, e->stream>>>(sq, grad, fr, fs, C, coef, denom);
    CU_LAUNCHED(e, "feature gap");
}

/* ---------------------------------------------------------------- channel means, fills */

/* one block per channel: feat[c] = mean over b and positions of x (B, C, N) */
__global__ void k_channel_mean(float *feat, const float *x, int B, int C, size_t N) {
    __shared__ double shm[32];
    const int c = blockIdx.x;
    double s = 0;
    for (int b = 0; b < B; b++) {
        const float *row = x + ((size_t)b * C + c) * N;
        for (size_t i = threadIdx.x; i < N; i += blockDim.x) s += (double)row[i];
    }
    s = cu_block_sum(s, shm);
    if (threadIdx.x == 0) feat[c] = (float)(s / ((double)B * N));
}

/* rows: (b, c) */
__global__ void k_channel_fill(float *x, const float *vals, int C, unsigned N, unsigned rows) {
    CU_ROWS(r, rows) {
        float *row = x + (size_t)r * N, v = vals[r % C];
        CU_COLS(i, N) row[i] = v;
    }
}

extern "C" void cu_channel_mean(CudaEngine *e, float *feat, const float *x, int B, int C, size_t N) {
    if (e->status || C < 1) return;
    k_channel_mean<<<C, CU_THREADS, 0, e->stream>>>(feat, x, B, C, N);
    CU_LAUNCHED(e, "channel mean");
}

extern "C" void cu_channel_fill(CudaEngine *e, float *x, const float *vals, int B, int C, size_t N) {
    if (e->status || C < 1 || !N) return;
    CuLaunch l = cu_rows((size_t)B * C, N);
    k_channel_fill CU_LAUNCH(l)(x, vals, C, (unsigned)N, (unsigned)((size_t)B * C));
    CU_LAUNCHED(e, "channel fill");
}

/* ---------------------------------------------------------------- row means (pooling) */

/* y[r] = mean of row r of x (rows, N): one warp per row (grid-stride over rows), lanes in
 * a fixed order, in double */
__global__ void k_row_mean(float *y, const float *x, size_t rows, size_t N) {
    const size_t warps = ((size_t)gridDim.x * blockDim.x) >> 5;
    const int lane = threadIdx.x & 31;
    for (size_t r = ((size_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5; r < rows; r += warps) {
        const float *row = x + r * N;
        double s = 0;
        for (size_t i = lane; i < N; i += 32) s += (double)row[i];
        for (int o = 16; o > 0; o >>= 1) s += __shfl_down_sync(0xffffffffu, s, o);
        if (lane == 0) y[r] = (float)(s / (double)N);
    }
}

/* dx (rows, N) = dy[r] / N, overwritten */
__global__ void k_row_mean_backward(float *dx, const float *dy, unsigned N, unsigned rows) {
    CU_ROWS(r, rows) {
        const float g = dy[r] / (float)N;
        float *row = dx + (size_t)r * N;
        CU_COLS(i, N) row[i] = g;
    }
}

extern "C" void cu_row_mean(CudaEngine *e, float *y, const float *x, size_t rows, size_t N) {
    if (e->status || !rows || !N) return;
    k_row_mean<<<cu_blocks(rows * 32), CU_THREADS, 0, e->stream>>>(y, x, rows, N);
    CU_LAUNCHED(e, "row mean");
}

extern "C" void cu_row_mean_backward(CudaEngine *e, float *dx, const float *dy, size_t rows, size_t N) {
    if (e->status || !dx || !rows || !N) return;
    CuLaunch l = cu_rows(rows, N);
    k_row_mean_backward CU_LAUNCH(l)(dx, dy, (unsigned)N, (unsigned)rows);
    CU_LAUNCHED(e, "row mean backward");
}

/* The element-wise and data-movement layer ops on the GPU, as engine/elementwise.c and
 * engine/embedding.c: SiLU, the per-(batch, channel) bias, nearest x2 upsampling, channel
 * concatenation, the embeddings and the MSE gradient. One thread per output value, so no
 * two threads write one value; the sums (bias gradient, embedding gradient) have a fixed
 * order. */
#include <stdlib.h>

#include "engine/cuda/cuda_private.cuh"

/* ---------------------------------------------------------------- SiLU */

__global__ void k_silu_forward(float *y, const float *x, size_t n) {
    CU_FOR(i, n) y[i] = x[i] * cu_sigmoid(x[i]);
}

__global__ void k_silu_backward(float *dx, const float *dy, const float *x, size_t n) {
    CU_FOR(i, n) {
        float s = cu_sigmoid(x[i]);
        dx[i] += dy[i] * s * (1.0f + x[i] * (1.0f - s));
    }
}

extern "C" void cu_silu_forward(CudaEngine *e, float *y, const float *x, size_t n) {
    if (e->status || !n) return;
    k_silu_forward<<<cu_blocks(n), CU_THREADS, 0, e->stream>>>(y, x, n);
    CU_LAUNCHED(e, "silu");
}

extern "C" void cu_silu_backward(CudaEngine *e, float *dx, const float *dy, const float *x, size_t n) {
    if (e->status || !dx || !n) return;
    k_silu_backward<<<cu_blocks(n), CU_THREADS, 0, e->stream>>>(dx, dy, x, n);
    CU_LAUNCHED(e, "silu backward");
}

/* ---------------------------------------------------------------- bias broadcast */

/* rows: (b, c) */
__global__ void k_channel_bias(float *h, const float *bias, int N, unsigned rows) {
    CU_ROWS(r, rows) {
        float *row = h + (size_t)r * N, v = bias[r];
        CU_COLS(i, N) row[i] += v;
    }
}

/* de[r] += sum over N of dh[r]: one warp per row (grid-stride over rows), lanes in a
 * fixed order */
__global__ void k_channel_bias_backward(float *de, const float *dh, size_t rows, int N) {
    const size_t warps = ((size_t)gridDim.x * blockDim.x) >> 5;
    const int lane = threadIdx.x & 31;
    for (size_t r = ((size_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5; r < rows; r += warps) {
        const float *row = dh + r * N;
        double s = 0;
        for (int i = lane; i < N; i += 32) s += (double)row[i];
        for (int o = 16; o > 0; o >>= 1) s += __shfl_down_sync(0xffffffffu, s, o);
        if (lane == 0) de[r] += (float)s;
    }
}

extern "C" void cu_add_channel_bias_forward(CudaEngine *e, float *h, const float *bias, int B, int C, int N) {
    if (e->status) return;
    CuLaunch l = cu_rows((size_t)B * C, (size_t)N);
    k_channel_bias CU_LAUNCH(l)(h, bias, N, (unsigned)((size_t)B * C));
    CU_LAUNCHED(e, "channel bias");
}

extern "C" void cu_add_channel_bias_backward(CudaEngine *e, float *de, const float *dh, int B, int C, int N) {
    if (e->status || !de) return;
    size_t rows = (size_t)B * C;
    k_channel_bias_backward<<<cu_blocks(rows * 32), CU_THREADS, 0, e->stream>>>(de, dh, rows, N);
    CU_LAUNCHED(e, "channel bias backward");
}

/* ---------------------------------------------------------------- upsampling */

/* rows: the output rows (plane p, Y) of y (B*C, 2H, 2W) */
__global__ void k_upsample(float *y, const float *x, int H, int W, unsigned rows) {
    const int W2 = 2 * W;
    CU_ROWS(r, rows) {
        const unsigned p = r / (2 * H), Y = r - p * 2 * H;
        const float *xr = x + ((size_t)p * H + Y / 2) * W;
        float *yr = y + (size_t)r * W2;
        CU_COLS(X, W2) yr[X] = xr[X / 2];
    }
}

/* dx[i][j] += (r0[2j] + r0[2j+1]) + (r1[2j] + r1[2j+1]), the CPU's order; rows: the input
 * rows (plane p, Y) of dx (B*C, H, W) */
__global__ void k_upsample_backward(float *dx, const float *dy, int H, int W, unsigned rows) {
    const int W2 = 2 * W;
    CU_ROWS(r, rows) {
        const unsigned p = r / H, Y = r - p * H;
        const float *r0 = dy + ((size_t)p * 2 * H + 2 * Y) * W2, *r1 = r0 + W2;
        float *xr = dx + (size_t)r * W;
        CU_COLS(X, W) xr[X] += (r0[2 * X] + r0[2 * X + 1]) + (r1[2 * X] + r1[2 * X + 1]);
    }
}

extern "C" void cu_upsample2x_forward(CudaEngine *e, float *y, const float *x, int B, int C, int H, int W) {
    if (e->status) return;
    size_t rows = (size_t)B * C * 2 * H;
    CuLaunch l = cu_rows(rows, (size_t)2 * W);
    k_upsample CU_LAUNCH(l)(y, x, H, W, (unsigned)rows);
    CU_LAUNCHED(e, "upsample");
}

extern "C" void cu_upsample2x_backward(CudaEngine *e, float *dx, const float *dy, int B, int C, int H, int W) {
    if (e->status || !dx) return;
    size_t rows = (size_t)B * C * H;
    CuLaunch l = cu_rows(rows, (size_t)W);
    k_upsample_backward CU_LAUNCH(l)(dx, dy, H, W, (unsigned)rows);
    CU_LAUNCHED(e, "upsample backward");
}

/* ---------------------------------------------------------------- concatenation */

/* rows: the images */
__global__ void k_concat(float *y, const float *a, const float *b, unsigned na, unsigned nb, int B) {
    CU_ROWS(img, B) {
        float *yi = y + (size_t)img * (na + nb);
        const float *ai = a + (size_t)img * na, *bi = b + (size_t)img * nb;
        CU_COLS(j, na + nb) yi[j] = j < na ? ai[j] : bi[j - na];
    }
}

__global__ void k_concat_backward(float *da, float *db, const float *dy, unsigned na, unsigned nb, int B) {
    CU_ROWS(img, B) {
        const float *dyi = dy + (size_t)img * (na + nb);
        CU_COLS(j, na + nb) {
            if (j < na) {
                if (da) da[(size_t)img * na + j] += dyi[j];
            } else if (db) {
                db[(size_t)img * nb + (j - na)] += dyi[j];
            }
        }
    }
}

extern "C" void cu_concat_channels_forward(CudaEngine *e, float *y, const float *a, const float *b, int B, int Ca,
                                           int Cb, int N) {
    if (e->status) return;
    CuLaunch l = cu_rows((size_t)B, (size_t)(Ca + Cb) * N);
    k_concat CU_LAUNCH(l)(y, a, b, (unsigned)Ca * N, (unsigned)Cb * N, B);
    CU_LAUNCHED(e, "concat");
}

extern "C" void cu_concat_channels_backward(CudaEngine *e, float *da, float *db, const float *dy, int B, int Ca,
                                            int Cb, int N) {
    if (e->status || (!da && !db)) return;
    CuLaunch l = cu_rows((size_t)B, (size_t)(Ca + Cb) * N);
    k_concat_backward CU_LAUNCH(l)(da, db, dy, (unsigned)Ca * N, (unsigned)Cb * N, B);
    CU_LAUNCHED(e, "concat backward");
}

/* ---------------------------------------------------------------- embeddings */

/* rows: the images */
__global__ void k_embedding(float *y, const float *table, const int64_t *idx, int B, int E) {
    CU_ROWS(b, B) {
        const float *src = table + (size_t)idx[b] * E;
        CU_COLS(c, E) y[(size_t)b * E + c] = src[c];
    }
}

/* One thread per (image b, column c); the thread of a row's first image in the batch adds
 * the dy of every image with that row, in batch order, to the row: the CPU's sum, bit for
 * bit, with the launch shape fixed by (B, E) alone (a graph replays it for any labels). */
__global__ void k_embedding_backward(float *dtable, const float *dy, const int64_t *idx, int B, int E) {
    CU_FOR(i, (size_t)B * E) {
        const int b = (int)(i / E), c = (int)(i % E);
        const int64_t row = idx[b];
        int first = 1;
        for (int p = 0; p < b && first; p++) first = idx[p] != row;
        if (!first) continue;
        float *dst = dtable + (size_t)row * E + c;
        float v = *dst;
        for (int q = b; q < B; q++)
            if (idx[q] == row) v += dy[(size_t)q * E + c];
        *dst = v;
    }
}

extern "C" void cu_embedding_forward(CudaEngine *e, float *y, const float *table, const int64_t *idx, int B,
                                     int E) {
    if (e->status || B < 1) return;
    const int64_t *d_idx = cu_upload_idx(e, idx, B);
    if (!d_idx) return;
    CuLaunch l = cu_rows((size_t)B, (size_t)E);
    k_embedding CU_LAUNCH(l)(y, table, d_idx, B, E);
    CU_LAUNCHED(e, "embedding");
}

extern "C" void cu_embedding_backward(CudaEngine *e, float *dtable, const float *dy, const int64_t *idx, int B,
                                      int E) {
    if (e->status || !dtable || B < 1) return;
    const int64_t *d_idx = cu_upload_idx(e, idx, B);
    if (!d_idx) return;
    k_embedding_backward<<<cu_blocks((size_t)B * E), CU_THREADS, 0, e->stream>>>(dtable, dy, d_idx, B, E);
    CU_LAUNCHED(e, "embedding backward");
}

/* [sin(t f_j), cos(t f_j)], f_j = exp(-ln(10000) j / half), in float as the CPU */
__global__ void k_timestep_embedding(float *y, const int64_t *t, int B, int dim) {
    const int half = dim / 2;
    const float neg_log_period = (float)-9.210340371976184;
    CU_ROWS(b, B) {
        float *row = y + (size_t)b * dim, tb = (float)t[b];
        CU_COLS(j, dim) {
            if (j >= 2u * half) {
                row[j] = 0.0f; /* odd dim: the last column */
                continue;
            }
            int f = (int)j < half ? (int)j : (int)j - half;
            float freq = expf(neg_log_period * (float)f / (float)half), arg = tb * freq;
            row[j] = (int)j < half ? sinf(arg) : cosf(arg);
        }
    }
}

extern "C" void cu_timestep_embedding(CudaEngine *e, float *y, const int64_t *t, int B, int dim) {
    if (e->status || B < 1) return;
    const int64_t *d_t = cu_upload_idx(e, t, B);
    if (!d_t) return;
    CuLaunch l = cu_rows((size_t)B, (size_t)dim);
    k_timestep_embedding CU_LAUNCH(l)(y, d_t, B, dim);
    CU_LAUNCHED(e, "timestep embedding");
}

/* ---------------------------------------------------------------- MSE gradient */

__global__ void k_mse_backward(float *dpred, const float *pred, const float *target, size_t n, float k) {
    CU_FOR(i, n) dpred[i] += k * (pred[i] - target[i]);
}

extern "C" void cu_mse_backward(CudaEngine *e, float *dpred, const float *pred, const float *target, size_t n,
                                float scale) {
    if (e->status || !dpred || !n) return;
    float k = (float)(2.0 * scale / (double)n);
    k_mse_backward<<<cu_blocks(n), CU_THREADS, 0, e->stream>>>(dpred, pred, target, n, k);
    CU_LAUNCHED(e, "mse backward");
}

/* scale = div[0] != 0 ? mult / div[0] : 0 (float), then k as cu_mse_backward's */
__global__ void k_mse_backward_div(float *dpred, const float *pred, const float *target, size_t n, float mult,
                                   const float *div) {
    const float d = div[0], scale = d != 0.0f ? mult / d : 0.0f;
    const float k = (float)(2.0 * (double)scale / (double)n);
    CU_FOR(i, n) dpred[i] += k * (pred[i] - target[i]);
}

extern "C" void cu_mse_backward_div(CudaEngine *e, float *dpred, const float *pred, const float *target, size_t n,
                                    float mult, const float *div) {
    if (e->status || !dpred || !n) return;
    k_mse_backward_div<<<cu_blocks(n), CU_THREADS, 0, e->stream>>>(dpred, pred, target, n, mult, div);
    CU_LAUNCHED(e, "mse backward");
}

/* ---------------------------------------------------------------- softmax (evaluator) */

/* one thread per row of K logits, the CPU's order: max, sum of exp in double, divide */
__global__ void k_softmax_rows_out(float *probs, const float *logits, int B, int K) {
    CU_FOR(b, (size_t)B) {
        const float *z = logits + b * K;
        float *p = probs + b * K;
        float m = z[0];
        for (int k = 1; k < K; k++) m = z[k] > m ? z[k] : m;
        double s = 0;
        for (int k = 0; k < K; k++) s += exp((double)z[k] - m);
        for (int k = 0; k < K; k++) p[k] = (float)(exp((double)z[k] - m) / s);
    }
}

extern "C" void cu_softmax_rows(CudaEngine *e, float *probs, const float *logits, int B, int K) {
    if (e->status || B < 1 || K < 1) return;
    k_softmax_rows_out<<<cu_blocks((size_t)B), CU_THREADS, 0, e->stream>>>(probs, logits, B, K);
    CU_LAUNCHED(e, "softmax");
}

/* Convolution (k in {1, 3}, stride in {1, 2}, zero padding k/2, as engine/conv.c) and the
 * linear layer on the GPU: im2col into scratch, then cuBLAS GEMMs (no TF32 by default).
 *
 * Shapes: x (B, Cin, H, W), y (B, Cout, Ho, Wo), No = Ho*Wo, w (Cout, K), K = Cin*k*k.
 * The batch is cut into chunks of n consecutive images, as many as CONV_SCRATCH_FLOATS of
 * scratch allow (the layout depends on the shape only). For a chunk, col (K, n*No) holds
 * the images' im2col side by side and:
 *   forward: y_j (Cout, No) = w @ col_j            (one strided-batched GEMM, into NCHW)
 *   dw:      dw (Cout, K) += dyc (Cout, n*No) @ col^T  (dyc: the chunk's dy side by side)
 *   dx:      dcol_j (K, No) = w^T @ dy_j; dx += col2im(dcol), a gather (no atomics)
 * A 1x1 stride-1 convolution uses x and dy directly: y_j = w @ x_j, dx_j += w^T @ dy_j.
 * dbias and the per-image weight-gradient sums are fixed-order reductions in double (reduce.cu). Chunks run in order on one stream, so every
 * gradient has the same bits run to run. cuDNN (cudnn/conv_cudnn.cu, deterministic algorithms
 * only; the bias stays here) runs the 3x3 convolutions by default when it is built, every
 * convolution with D2C_CUDA_CONV=cudnn, none with D2C_CUDA_CONV=gemm (cuda_private.cuh);
 * with D2C_CUDA_CONV_ALGO=cached (the default) conv_choice.cu picks per shape and direction
 * among cuDNN's deterministic algorithms and the paths here (cu_conv_gemm_dir), including
 * a second weight gradient: per-image GEMMs, then a fixed-order sum over the images, and,
 * for few channels (Cin or Cout <= 4), the direct kernels of conv_direct.cu. */
#include "engine/cuda/cuda_private.cuh"

#define CONV_SCRATCH_FLOATS ((size_t)256 << 20) /* 1 GiB of im2col scratch at most */

static int out_size(int size, int k, int stride) { return (size + 2 * (k / 2) - k) / stride + 1; }

typedef struct {
    int Ho, Wo, No, K, per_chunk;
} Plan;

/* per_image: the floats of scratch one image of a chunk needs */
static Plan plan_for(ConvShape s, size_t per_image) {
    Plan p;
    p.Ho = out_size(s.H, s.k, s.stride);
    p.Wo = out_size(s.W, s.k, s.stride);
    p.No = p.Ho * p.Wo;
    p.K = s.Cin * s.k * s.k;
    size_t n = CONV_SCRATCH_FLOATS / (per_image ? per_image : 1);
    p.per_chunk = (int)(n < 1 ? 1 : n > (size_t)s.B ? (size_t)s.B : n);
    return p;
}

static Plan plan_rows(ConvShape s, int per_image_rows) {
    Plan p = plan_for(s, 1);
    return plan_for(s, (size_t)per_image_rows * p.No);
}

/* col[(ci*k + ky)*k + kx][j*No + oy*Wo + ox] = x_j[ci][oy*st + ky - pad][ox*st + kx - pad]
 * (zero outside the image); rows r = (ci, ky, kx) of col, columns j*No + p */
__global__ void k_im2col(float *col, const float *x, int n, int C, int H, int W, int k, int st, int Ho, int Wo) {
    const int No = Ho * Wo, kk = k * k, pad = k / 2;
    const unsigned L = (unsigned)n * No;
    CU_ROWS(r, C * kk) {
        const int ci = r / kk, t = r % kk, ky = t / k, kx = t % k;
        float *row = col + (size_t)r * L;
        CU_COLS(c, L) {
            int j = c / No, p = c - j * No, oy = p / Wo, ox = p - oy * Wo;
            int iy = oy * st + ky - pad, ix = ox * st + kx - pad;
            float v = 0.0f;
            if (iy >= 0 && iy < H && ix >= 0 && ix < W) v = x[(((size_t)j * C + ci) * H + iy) * W + ix];
            row[c] = v;
        }
    }
}

/* dx_j[ci][iy][ix] += sum over the taps that read it of dcol (the adjoint of k_im2col),
 * taps in (ky, kx) order: one thread per dx value, so no two threads write one value.
 * Rows are the planes (j, ci). */
__global__ void k_col2im_add(float *dx, const float *dcol, int n, int C, int H, int W, int k, int st, int Ho,
                             int Wo) {
    const int No = Ho * Wo, kk = k * k, pad = k / 2;
    const size_t L = (size_t)n * No;
    CU_ROWS(plane, n * C) {
        const int j = plane / C, ci = plane % C;
        float *dxp = dx + (size_t)plane * H * W;
        const float *dc = dcol + (size_t)ci * kk * L + (size_t)j * No;
        CU_COLS(q, H * W) {
            int iy = q / W, ix = q - iy * W;
            float s = 0.0f;
            for (int ky = 0; ky < k; ky++) {
                int ty = iy + pad - ky; /* = oy * st */
                if (ty < 0 || ty % st) continue;
                int oy = ty / st;
                if (oy >= Ho) continue;
                for (int kx = 0; kx < k; kx++) {
                    int tx = ix + pad - kx;
                    if (tx < 0 || tx % st) continue;
                    int ox = tx / st;
                    if (ox >= Wo) continue;
                    s += dc[(size_t)(ky * k + kx) * L + oy * Wo + ox];
                }
            }
            dxp[q] += s;
        }
    }
}

/* cat (C, n*N) = the n images of t (n, C, N) side by side; rows: channels */
__global__ void k_side_by_side(float *cat, const float *t, int n, int C, int N) {
    const unsigned L = (unsigned)n * N;
    CU_ROWS(c, C) {
        float *row = cat + (size_t)c * L;
        CU_COLS(col, L) {
            unsigned j = col / N, p = col - j * N;
            row[col] = t[((size_t)j * C + c) * N + p];
        }
    }
}

/* y (B, C, N) += bias[c]; rows: (b, c) */
__global__ void k_add_bias(float *y, const float *bias, int C, int N, unsigned rows) {
    CU_ROWS(r, rows) {
        float *row = y + (size_t)r * N, v = bias[r % C];
        CU_COLS(i, N) row[i] += v;
    }
}

/* y (B, out) += bias[o]; rows: the batch */
__global__ void k_add_linear_bias(float *y, const float *bias, int out, int B) {
    CU_ROWS(b, B) {
        float *row = y + (size_t)b * out;
        CU_COLS(o, out) row[o] += bias[o];
    }
}

/* y (B, C, N) += bias[c]; a linear layer's y (B, out) is C = out, N = 1 */
static void add_bias(CudaEngine *e, float *y, const float *bias, int B, int C, int N) {
    if (N == 1) {
        CuLaunch l = cu_rows((size_t)B, (size_t)C);
        k_add_linear_bias CU_LAUNCH(l)(y, bias, C, B);
    } else {
        CuLaunch l = cu_rows((size_t)B * C, (size_t)N);
        k_add_bias CU_LAUNCH(l)(y, bias, C, N, (unsigned)((size_t)B * C));
    }
    CU_LAUNCHED(e, "bias");
}

static void dbias_sum(CudaEngine *e, float *dbias, const float *dy, int B, int C, int N) {
    cu_channel_sums(e, dbias, dy, B, C, N);
}

static void im2col(CudaEngine *e, float *col, const float *x, int n, ConvShape s, Plan p) {
    CuLaunch l = cu_rows((size_t)p.K, (size_t)n * p.No);
    k_im2col CU_LAUNCH(l)(col, x, n, s.Cin, s.H, s.W, s.k, s.stride, p.Ho, p.Wo);
    CU_LAUNCHED(e, "im2col");
}

/* y = conv(x, w), no bias */
static void gemm_forward(CudaEngine *e, float *y, const float *x, const float *w, ConvShape s) {
    Plan p = plan_rows(s, s.Cin * s.k * s.k);
    const size_t x_image = (size_t)s.Cin * s.H * s.W, y_image = (size_t)s.Cout * p.No;
    if (s.k == 1 && s.stride == 1) { /* y_b (Cout, N) = w (Cout, Cin) @ x_b (Cin, N) */
        cu_gemm_batched(e, 0, 0, s.Cout, p.No, s.Cin, 1.0f, w, s.Cin, 0, x, p.No, (long long)x_image, 0.0f, y,
                        p.No, (long long)y_image, s.B);
        return;
    }
    float *col = cu_scratch(e, (size_t)p.K * p.per_chunk * p.No);
    if (!col) return;
    for (int b0 = 0; b0 < s.B; b0 += p.per_chunk) {
        int n = s.B - b0 < p.per_chunk ? s.B - b0 : p.per_chunk, L = n * p.No;
        im2col(e, col, x + b0 * x_image, n, s, p);
        cu_gemm_batched(e, 0, 0, s.Cout, p.No, p.K, 1.0f, w, p.K, 0, col, L, p.No, 0.0f, y + b0 * y_image, p.No,
                        (long long)y_image, n);
    }
}

/* dx += d/dx */
static void gemm_backward_data(CudaEngine *e, float *dx, const float *dy, const float *w, ConvShape s) {
    Plan p = plan_rows(s, s.Cin * s.k * s.k);
    const size_t x_image = (size_t)s.Cin * s.H * s.W, y_image = (size_t)s.Cout * p.No;
    if (s.k == 1 && s.stride == 1) { /* dx_b (Cin, N) += w^T (Cin, Cout) @ dy_b (Cout, N) */
        cu_gemm_batched(e, 1, 0, s.Cin, p.No, s.Cout, 1.0f, w, s.Cin, 0, dy, p.No, (long long)y_image, 1.0f, dx,
                        p.No, (long long)x_image, s.B);
        return;
    }
    float *col = cu_scratch(e, (size_t)p.K * p.per_chunk * p.No);
    if (!col) return;
    for (int b0 = 0; b0 < s.B; b0 += p.per_chunk) {
        int n = s.B - b0 < p.per_chunk ? s.B - b0 : p.per_chunk, L = n * p.No;
        /* dcol_j (K, No) = w^T (K, Cout) @ dy_j (Cout, No), into col */
        cu_gemm_batched(e, 1, 0, p.K, p.No, s.Cout, 1.0f, w, p.K, 0, dy + b0 * y_image, p.No, (long long)y_image,
                        0.0f, col, L, p.No, n);
        CuLaunch l = cu_rows((size_t)n * s.Cin, (size_t)s.H * s.W);
        k_col2im_add CU_LAUNCH(l)(dx + b0 * x_image, col, n, s.Cin, s.H, s.W, s.k, s.stride, p.Ho, p.Wo);
        CU_LAUNCHED(e, "col2im");
    }
}

/* dw += d/dw: dw (Cout, K) += dyc (Cout, n*No) @ col^T per chunk (one GEMM over the
 * chunk), or with split, part_j (Cout, K) = dy_j (Cout, No) @ col_j^T (one strided-batched
 * GEMM over the chunk's images, no atomics) and dw += the sum of the part_j in a fixed order (reduce.cu) */
static void gemm_backward_filter(CudaEngine *e, float *dw, const float *dy, const float *x, ConvShape s, int split) {
    const int direct = s.k == 1 && s.stride == 1;
    Plan q = plan_for(s, 1);
    const size_t CK = (size_t)s.Cout * q.K;
    /* scratch per image: col (K, No) unless direct, then dyc (Cout, No) or part (Cout, K) */
    Plan p = plan_for(s, (split && direct ? 0 : (size_t)q.K * q.No) + (split ? CK : (size_t)s.Cout * q.No));
    const size_t x_image = (size_t)s.Cin * s.H * s.W, y_image = (size_t)s.Cout * p.No;
    const size_t col_floats = split && direct ? 0 : (size_t)p.K * p.per_chunk * p.No;
    float *col = cu_scratch(e, col_floats + (split ? CK * p.per_chunk : (size_t)s.Cout * p.per_chunk * p.No));
    if (!col) return;
    float *rest = col + col_floats; /* dyc or part */
    for (int b0 = 0; b0 < s.B; b0 += p.per_chunk) {
        int n = s.B - b0 < p.per_chunk ? s.B - b0 : p.per_chunk, L = n * p.No;
        if (!split) {
            im2col(e, col, x + b0 * x_image, n, s, p);
            CuLaunch l = cu_rows((size_t)s.Cout, (size_t)L);
            k_side_by_side CU_LAUNCH(l)(rest, dy + b0 * y_image, n, s.Cout, p.No);
            CU_LAUNCHED(e, "conv backward");
            cu_gemm(e, 0, 1, s.Cout, p.K, L, 1.0f, rest, L, col, L, 1.0f, dw, p.K);
            continue;
        }
        const float *cj = x + b0 * x_image; /* col_j (K, No): x_j itself when direct */
        int ldc = p.No;
        long long sc = (long long)x_image;
        if (!direct) {
            im2col(e, col, x + b0 * x_image, n, s, p);
            cj = col;
            ldc = L;
            sc = p.No;
        }
        cu_gemm_batched(e, 0, 1, s.Cout, p.K, p.No, 1.0f, dy + b0 * y_image, p.No, (long long)y_image, cj, ldc, sc,
                        0.0f, rest, p.K, (long long)CK, n);
        if (e->status) return;
        cu_column_sums(e, dw, rest, (size_t)n, CK); /* dw += the parts, fixed order */
    }
}

void cu_conv_gemm_dir(CudaEngine *e, int dir, int split, ConvShape s, float *out, const float *a,
                                 const float *b) {
    if (e->status) return;
    if (dir == CU_DIR_FWD)
        gemm_forward(e, out, a, b, s);
    else if (dir == CU_DIR_DATA)
        gemm_backward_data(e, out, a, b, s);
    else
        gemm_backward_filter(e, out, a, b, s, split);
}

extern "C" void cu_conv2d_forward(CudaEngine *e, float *y, const float *x, const float *w, const float *bias,
                                  ConvShape s) {
    if (e->status) return;
    if (cu_conv_cached(e))
        cu_conv_choice_run(e, CU_DIR_FWD, s, y, x, w);
    else if (cu_conv_uses_cudnn(e, s.k))
        cu_cudnn_conv_forward(e, y, x, w, s);
    else
        gemm_forward(e, y, x, w, s);
    if (bias) add_bias(e, y, bias, s.B, s.Cout, out_size(s.H, s.k, s.stride) * out_size(s.W, s.k, s.stride));
}

extern "C" void cu_conv2d_backward(CudaEngine *e, float *dx, float *dw, float *dbias, const float *dy,
                                   const float *x, const float *w, ConvShape s) {
    if (e->status) return;
    if (dbias) dbias_sum(e, dbias, dy, s.B, s.Cout, out_size(s.H, s.k, s.stride) * out_size(s.W, s.k, s.stride));
    if (cu_conv_cached(e)) {
        if (dw) cu_conv_choice_run(e, CU_DIR_FILTER, s, dw, dy, x);
        if (dx) cu_conv_choice_run(e, CU_DIR_DATA, s, dx, dy, w);
    } else if (cu_conv_uses_cudnn(e, s.k)) {
        if (dx || dw) cu_cudnn_conv_backward(e, dx, dw, dy, x, w, s);
    } else {
        if (dw) gemm_backward_filter(e, dw, dy, x, s, 0);
        if (dx) gemm_backward_data(e, dx, dy, w, s);
    }
}

/* ---------------------------------------------------------------- linear */

extern "C" void cu_linear_forward(CudaEngine *e, float *y, const float *x, const float *w, const float *bias,
                                  int B, int in, int out) {
    if (e->status) return;
    cu_gemm(e, 0, 1, B, out, in, 1.0f, x, in, w, in, 0.0f, y, out); /* y = x @ w^T */
    if (bias) add_bias(e, y, bias, B, out, 1);
}

extern "C" void cu_linear_backward(CudaEngine *e, float *dx, float *dw, float *dbias, const float *dy,
                                   const float *x, const float *w, int B, int in, int out) {
    if (e->status) return;
    if (dx) cu_gemm(e, 0, 0, B, in, out, 1.0f, dy, out, w, in, 1.0f, dx, in);  /* dx += dy @ w */
    if (dw) cu_gemm(e, 1, 0, out, in, B, 1.0f, dy, out, x, in, 1.0f, dw, in);  /* dw += dy^T @ x */
    if (dbias) cu_column_sums(e, dbias, dy, (size_t)B, (size_t)out);
}

/* 2-D convolution as PyTorch's nn.Conv2d (k in {1, 3}, stride in {1, 2}, zero padding
 * k/2), by im2col and single-threaded sgemm calls spread over OpenMP threads.
 *
 * Shapes: x (B, Cin, H, W), y (B, Cout, Ho, Wo), No = Ho*Wo, w (Cout, K), K = Cin*k*k.
 * The batch is cut into chunks of consecutive images, enough per chunk that the GEMM
 * has at least CONV_MIN_COLS columns (7x7 images alone make thin GEMMs). Per chunk of
 * n images, the images side by side in the columns:
 *   forward:  y chunk (Cout, n*No) = w @ im2col(x chunk) (K, n*No)  (+ bias)
 *   backward: see conv2d_backward.
 * For one image of a 1x1 stride-1 convolution, x itself is the GEMM operand.
 *
 * Determinism: the chunks are split into at most CONV_MAX_SLOTS fixed runs ("slots"),
 * each summing its dw into its own partial buffer, and the partials are added to dw in
 * slot order. The chunk and slot layout depends only on the shape, so dw (like y and dx) has
 * the same bits for any thread count. */
#include "engine/kernels.h"

#include <cblas.h>
#include <omp.h>
#include <string.h>

#include "core/util.h"
#include "engine/vecmath.h"

#define CONV_MIN_COLS 196
#define CONV_MAX_SLOTS 8

int conv_out_size(int size, int k, int stride) { return (size + 2 * (k / 2) - k) / stride + 1; }

typedef struct {
    int Ho, Wo, No, K;
    int chunks;     /* chunk c holds images [c*B/chunks, (c+1)*B/chunks) */
    int max_images; /* images in the largest chunk */
} ConvPlan;

static ConvPlan conv_plan(ConvShape s) {
    ConvPlan p;
    p.Ho = conv_out_size(s.H, s.k, s.stride);
    p.Wo = conv_out_size(s.W, s.k, s.stride);
    p.No = p.Ho * p.Wo;
    p.K = s.Cin * s.k * s.k;
    int per_chunk = D2C_MIN((CONV_MIN_COLS + p.No - 1) / p.No, s.B);
    p.chunks = (s.B + per_chunk - 1) / per_chunk;
    p.max_images = (s.B + p.chunks - 1) / p.chunks;
    return p;
}

static int chunk_start(int c, int B, int chunks) { return (int)((long)c * B / chunks); }

static size_t round16(size_t n) { return (n + 15) / 16 * 16; } /* 64-byte aligned slices */

/* Output columns ox with 0 <= ox*stride + offset < W are [*lo, *hi). */
static void valid_columns(int offset, int W, int stride, int Wo, int *lo, int *hi) {
    *lo = offset >= 0 ? 0 : (-offset + stride - 1) / stride;
    *hi = W - 1 - offset < 0 ? 0 : D2C_MIN((W - 1 - offset) / stride + 1, Wo);
    if (*hi < *lo) *hi = *lo;
}

/* col[(ci*k + ky)*k + kx][oy*Wo + ox] = x[ci][oy*stride + ky - pad][ox*stride + kx - pad],
 * zero outside the image. x is one image (C, H, W); col rows have stride ld.
 * Stride 1 (Wo == W): each col row is the plane shifted by (ky - pad)*W + (kx - pad), so
 * with the planes copied into `margin` between pad*W + pad zeros on each side (C planes of
 * H*W + 2*(pad*W + pad) floats, the zeros written once by the caller), a row is one
 * contiguous copy, and only the columns that wrap around a row edge are zeroed after it. */
static void im2col(float *col, size_t ld, const float *x, int C, int H, int W, int k, int stride,
                   float *margin) {
    int pad = k / 2, Ho = conv_out_size(H, k, stride), Wo = conv_out_size(W, k, stride);
    size_t N = (size_t)H * W, zeros = (size_t)pad * W + pad, L = N + 2 * zeros;
    if (stride == 1 && pad > 0)
        for (int ci = 0; ci < C; ci++) memcpy(margin + ci * L + zeros, x + ci * N, sizeof(float) * N);
    for (int ci = 0; ci < C; ci++)
        for (int ky = 0; ky < k; ky++)
            for (int kx = 0; kx < k; kx++) {
                float *row = col + (size_t)((ci * k + ky) * k + kx) * ld;
                int dy = ky - pad, dx = kx - pad, lo, hi;
                if (stride == 1) { /* columns ox < -dx and ox >= W - dx wrap around */
                    const float *src = pad > 0 ? margin + ci * L + zeros : x + ci * N;
                    memcpy(row, src + (long)dy * W + dx, sizeof(float) * N);
                    for (int ox = 0; ox < -dx; ox++)
                        for (int oy = 0; oy < Ho; oy++) row[oy * Wo + ox] = 0.0f;
                    for (int ox = W - dx; ox < W; ox++)
                        for (int oy = 0; oy < Ho; oy++) row[oy * Wo + ox] = 0.0f;
                    continue;
                }
                valid_columns(dx, W, stride, Wo, &lo, &hi);
                const float *plane = x + ci * N;
                for (int oy = 0; oy < Ho; oy++) {
                    float *out = row + (size_t)oy * Wo;
                    int iy = oy * stride + dy;
                    if (iy < 0 || iy >= H) {
                        memset(out, 0, sizeof(float) * Wo);
                        continue;
                    }
                    const float *in = plane + (size_t)iy * W;
                    for (int ox = 0; ox < lo; ox++) out[ox] = 0.0f;
                    for (int ox = lo; ox < hi; ox++) out[ox] = in[ox * stride + dx];
                    for (int ox = hi; ox < Wo; ox++) out[ox] = 0.0f;
                }
            }
}

/* floats of im2col's margin buffer for C planes of H x W */
static size_t margin_floats(int C, int H, int W, int k) {
    return round16((size_t)C * ((size_t)H * W + 2 * ((size_t)(k / 2) * W + k / 2)));
}

/* The adjoint of im2col: dx (C, H, W) of one image += the col entries that read it. */
static void col2im_add(float *dx, const float *col, size_t ld, int C, int H, int W, int k,
                       int stride) {
    int pad = k / 2, Ho = conv_out_size(H, k, stride), Wo = conv_out_size(W, k, stride);
    for (int ci = 0; ci < C; ci++) {
        float *plane = dx + (size_t)ci * H * W;
        for (int ky = 0; ky < k; ky++)
            for (int kx = 0; kx < k; kx++) {
                const float *row = col + (size_t)((ci * k + ky) * k + kx) * ld;
                int lo, hi, offset = kx - pad;
                valid_columns(offset, W, stride, Wo, &lo, &hi);
                for (int oy = 0; oy < Ho; oy++) {
                    int iy = oy * stride + ky - pad;
                    if (iy < 0 || iy >= H) continue;
                    const float *src = row + (size_t)oy * Wo;
                    float *dst = plane + (size_t)iy * W;
                    for (int ox = lo; ox < hi; ox++) dst[ox * stride + offset] += src[ox];
                }
            }
    }
}

/* The GEMM operand (K, n*No) for images x[0..n) (each x_image floats): x itself for one
 * image of a 1x1 stride-1 conv, else their im2col side by side in col. */
static const float *image_columns(float *col, float *margin, const float *x, int n,
                                  size_t x_image, int C, int H, int W, int k, int stride) {
    if (n == 1 && k == 1 && stride == 1) return x;
    size_t No = (size_t)conv_out_size(H, k, stride) * conv_out_size(W, k, stride);
    for (int j = 0; j < n; j++)
        im2col(col + j * No, n * No, x + j * x_image, C, H, W, k, stride, margin);
    return col;
}

void conv2d_forward(float *y, const float *x, const float *w, const float *bias, ConvShape s,
                    Workspace *ws) {
    ConvPlan p = conv_plan(s);
    size_t cols_max = (size_t)p.max_images * p.No;
    size_t col_floats = round16((size_t)p.K * cols_max);
    size_t out_floats = p.max_images > 1 ? round16((size_t)s.Cout * cols_max) : 0;
    size_t per_thread = col_floats + out_floats + margin_floats(s.Cin, s.H, s.W, s.k);
    float *scratch = workspace_ensure(ws, per_thread * omp_get_max_threads());
    size_t x_image = (size_t)s.Cin * s.H * s.W, y_image = (size_t)s.Cout * p.No;

#pragma omp parallel
    {
    float *col = scratch + per_thread * omp_get_thread_num(), *out_buf = col + col_floats;
    float *margin = out_buf + out_floats;
    memset(margin, 0, sizeof(float) * margin_floats(s.Cin, s.H, s.W, s.k));
#pragma omp for schedule(dynamic, 1)
    for (int c = 0; c < p.chunks; c++) {
        int b0 = chunk_start(c, s.B, p.chunks), n = chunk_start(c + 1, s.B, p.chunks) - b0;
        int ld = n * p.No;
        const float *x_cols = image_columns(col, margin, x + b0 * x_image, n, x_image, s.Cin, s.H,
                                            s.W, s.k, s.stride);
        /* out (Cout, n*No) = w (Cout, K) @ x_cols (K, n*No); one image writes y directly */
        float *out = n == 1 ? y + b0 * y_image : out_buf;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, s.Cout, ld, p.K, 1.0f, w, p.K,
                    x_cols, ld, 0.0f, out, ld);
        if (n > 1 || bias) /* to y's layout, adding the bias (in place when n == 1) */
            for (int j = 0; j < n; j++)
                for (int co = 0; co < s.Cout; co++) {
                    const float *src = out + (size_t)co * ld + (size_t)j * p.No;
                    float *dst = y + (b0 + j) * y_image + (size_t)co * p.No;
                    float add = bias ? bias[co] : 0.0f;
                    for (int i = 0; i < p.No; i++) dst[i] = src[i] + add;
                }
    }
    }
}

/* Backward:
 *   dwt_slot (K, Cout) += im2col(x) (K, n*No) @ dyc^T, dyc = the chunk's dy side by side
 *            (dw transposed: OpenBLAS runs this shape faster than dyc @ im2col(x)^T)
 *   stride 1: dx is the convolution of dy with the flipped, transposed kernel
 *             wt (Cin, Cout*k*k): dx (Cin, n*No) += wt @ im2col(dy)
 *   stride 2: dcol (K, n*No) = w^T @ dyc;  dx += col2im(dcol) */
void conv2d_backward(float *dx, float *dw, float *dbias, const float *dy, const float *x,
                     const float *w, ConvShape s, Workspace *ws) {
    ConvPlan p = conv_plan(s);
    size_t x_image = (size_t)s.Cin * s.H * s.W, y_image = (size_t)s.Cout * p.No;
    int kk = s.k * s.k, transposed = dx && s.stride == 1;

    if (dbias) { /* dbias[co] += sum over images and positions of dy */
#pragma omp parallel for schedule(static)
        for (int co = 0; co < s.Cout; co++) {
            double sum = 0;
            for (int b = 0; b < s.B; b++) sum += sum_f64(dy + b * y_image + (size_t)co * p.No, p.No);
            dbias[co] += (float)sum;
        }
    }
    if (!dx && !dw) return;

    /* workspace: [dw partials per slot][wt][per thread: col, dyc, dxc, margin] */
    int slots = D2C_MIN(p.chunks, CONV_MAX_SLOTS);
    size_t dw_floats = (size_t)s.Cout * p.K;
    size_t partial_floats = dw ? round16(dw_floats) : 0;
    size_t wt_floats = transposed ? round16((size_t)s.Cin * s.Cout * kk) : 0;
    size_t cols_max = (size_t)p.max_images * p.No;
    size_t col_floats = round16((size_t)D2C_MAX(p.K, s.Cout * kk) * cols_max);
    size_t dyc_floats = p.max_images > 1 ? round16((size_t)s.Cout * cols_max) : 0;
    size_t dxc_floats = p.max_images > 1 && transposed ? round16((size_t)s.Cin * cols_max) : 0;
    size_t per_thread = col_floats + dyc_floats + dxc_floats +
                        margin_floats(D2C_MAX(s.Cin, s.Cout), s.H, s.W, s.k);
    float *partials = workspace_ensure(
        ws, partial_floats * slots + wt_floats + per_thread * omp_get_max_threads());
    float *wt = partials + partial_floats * slots, *scratch = wt + wt_floats;

    if (transposed) /* wt[ci][(co*k + ky)*k + kx] = w[co][ci][k-1-ky][k-1-kx] */
        for (int ci = 0; ci < s.Cin; ci++)
            for (int co = 0; co < s.Cout; co++)
                for (int t = 0; t < kk; t++)
                    wt[((size_t)ci * s.Cout + co) * kk + t] = w[((size_t)co * s.Cin + ci) * kk + kk - 1 - t];

#pragma omp parallel
    {
    float *col = scratch + per_thread * omp_get_thread_num();
    float *dy_buf = col + col_floats, *dx_buf = dy_buf + dyc_floats;
    float *margin = dx_buf + dxc_floats;
    memset(margin, 0, sizeof(float) * margin_floats(D2C_MAX(s.Cin, s.Cout), s.H, s.W, s.k));
#pragma omp for schedule(dynamic, 1)
    for (int sl = 0; sl < slots; sl++) {
        float *dwt = partials + partial_floats * sl, dw_beta = 0.0f; /* (K, Cout) */
        int c_end = chunk_start(sl + 1, p.chunks, slots);
        for (int c = chunk_start(sl, p.chunks, slots); c < c_end; c++) {
            int b0 = chunk_start(c, s.B, p.chunks), n = chunk_start(c + 1, s.B, p.chunks) - b0;
            int ld = n * p.No;
            const float *dyc = dy + b0 * y_image; /* (Cout, n*No) */
            if (n > 1) {
                for (int j = 0; j < n; j++)
                    for (int co = 0; co < s.Cout; co++)
                        memcpy(dy_buf + (size_t)co * ld + (size_t)j * p.No,
                               dy + (b0 + j) * y_image + (size_t)co * p.No, sizeof(float) * p.No);
                dyc = dy_buf;
            }
            if (dw) { /* dwt (K, Cout) += x_cols (K, n*No) @ dyc^T (n*No, Cout) */
                const float *x_cols = image_columns(col, margin, x + b0 * x_image, n, x_image,
                                                    s.Cin, s.H, s.W, s.k, s.stride);
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, p.K, s.Cout, ld, 1.0f, x_cols,
                            ld, dyc, ld, dw_beta, dwt, s.Cout);
                dw_beta = 1.0f;
            }
            if (transposed) { /* dx (Cin, n*No) += wt (Cin, Cout*kk) @ dy_cols (Cout*kk, n*No) */
                const float *dy_cols = s.k == 1 ? dyc
                                                : image_columns(col, margin, dy + b0 * y_image, n,
                                                                y_image, s.Cout, s.H, s.W, s.k, 1);
                float *out = n == 1 ? dx + b0 * x_image : dx_buf;
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, s.Cin, ld, s.Cout * kk,
                            1.0f, wt, s.Cout * kk, dy_cols, ld, n == 1 ? 1.0f : 0.0f, out, ld);
                if (n > 1)
                    for (int j = 0; j < n; j++)
                        for (int ci = 0; ci < s.Cin; ci++) {
                            const float *src = dx_buf + (size_t)ci * ld + (size_t)j * p.No;
                            float *dst = dx + (b0 + j) * x_image + (size_t)ci * p.No;
                            for (int i = 0; i < p.No; i++) dst[i] += src[i];
                        }
            } else if (dx) { /* dcol (K, n*No) = w^T (K, Cout) @ dyc, reusing col */
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, p.K, ld, s.Cout, 1.0f, w, p.K,
                            dyc, ld, 0.0f, col, ld);
                for (int j = 0; j < n; j++)
                    col2im_add(dx + (b0 + j) * x_image, col + (size_t)j * p.No, ld, s.Cin, s.H,
                               s.W, s.k, s.stride);
            }
        }
    }
    }

    if (dw) { /* dw (Cout, K) += the transposed partials, added in slot order */
#pragma omp parallel for schedule(static)
        for (int co = 0; co < s.Cout; co++)
            for (int i = 0; i < p.K; i++) {
                size_t at = (size_t)i * s.Cout + co;
                float sum = partials[at];
                for (int sl = 1; sl < slots; sl++) sum += partials[partial_floats * sl + at];
                dw[(size_t)co * p.K + i] += sum;
            }
    }
}

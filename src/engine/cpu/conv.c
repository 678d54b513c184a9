/* 2-D convolution as PyTorch's nn.Conv2d (k in {1, 3}, stride in {1, 2}, zero padding
 * k/2), by im2col and single-threaded sgemm calls spread over OpenMP threads; the GEMMs
 * are cut into the blocks of engine/cpu/gemm.h (OpenBLAS's small-matrix kernels).
 *
 * Shapes: x (B, Cin, H, W), y (B, Cout, Ho, Wo), No = Ho*Wo, w (Cout, K), K = Cin*k*k.
 * The batch is cut into chunks of consecutive images, enough per chunk that the GEMM
 * has at least CONV_MIN_COLS columns (7x7 images alone make thin GEMMs). Per chunk of
 * n images, the images side by side in the columns:
 *   forward: y chunk (Cout, n*No) = w @ im2col(x chunk) (K, n*No)  (+ bias)
 *   backward: see backward_chunk.
 * For one image of a 1x1 stride-1 convolution, x itself is the GEMM operand.
 *
 * Row shifts: a 3x3 stride-1 convolution of one image per chunk (the 28x28 and 14x14
 * layers, most of the FLOPs) builds only the kx part of im2col, xk (Cin*3, W + N + W):
 * for each channel and kx, the image shifted by kx - 1 columns between W zeros on either
 * side. Kernel row ky then reads xk shifted by ky - 1 whole image rows, which is the
 * matrix starting ky*W floats further with the same row stride, so
 *   y (Cout, N) = sum over ky of w_ky (Cout, Cin*3) @ xk[:, ky*W : ky*W + N],
 * three GEMMs over a third of the im2col data (less copying, smaller cache footprint).
 *
 * Determinism: the chunks are split into at most CONV_MAX_SLOTS fixed runs ("slots"),
 * each summing its dw into its own partial buffer, and the partials are added to dw in
 * slot order. The chunk and slot layout depends only on the shape, and which thread runs
 * a chunk changes nothing it computes, so y, dx and dw have the same bits for any thread
 * count. */
#include "engine/cpu/kernels.h"

#include <cblas.h>
#include <omp.h>
#include <string.h>

#include "core/util.h"
#include "engine/cpu/gemm.h"
#include "engine/cpu/vecmath.h"

#define CONV_MIN_COLS 196
#define CONV_MAX_SLOTS 8

int conv_out_size(int size, int k, int stride) { return (size + 2 * (k / 2) - k) / stride + 1; }

typedef struct {
    int Ho, Wo, No, K;
    int chunks;     /* chunk c holds images [c*B/chunks, (c+1)*B/chunks) */
    int max_images; /* images in the largest chunk */
    int row_shifts; /* 3x3, stride 1, one image per chunk: the row-shift GEMMs */
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
    p.row_shifts = s.k == 3 && s.stride == 1 && p.max_images == 1;
    return p;
}

static int chunk_start(int c, int B, int chunks) { return (int)((long)c * B / chunks); }

static size_t round16(size_t n) { return (n + 15) / 16 * 16; } /* 64-byte aligned slices */

/* im2col reads its rows from "planes": per channel, stride*stride planes of Ho x Wo (the
 * image itself for stride 1; its phases x[2i + py][2j + px] for stride 2), each between
 * `lead` zeros on either side. Every tap (ky, kx) of the kernel then reads one plane
 * shifted by whole rows and columns (dy, dx), so its col row is one contiguous copy, after
 * which only the columns that wrapped around a row edge are zeroed. */
typedef struct {
    int per_channel, Hp, Wp; /* planes per channel, each Hp x Wp (= Ho x Wo) */
    size_t lead, len;        /* zeros before (and after) a plane; floats per plane */
} Planes;

static Planes planes_for(int H, int W, int k, int stride) {
    Planes g;
    int reach = (k / 2 + stride - 1) / stride; /* largest |dy|, |dx| */
    g.per_channel = stride * stride;
    g.Hp = conv_out_size(H, k, stride);
    g.Wp = conv_out_size(W, k, stride);
    g.lead = (size_t)reach * g.Wp + reach;
    g.len = (size_t)g.Hp * g.Wp + 2 * g.lead;
    return g;
}

/* floats of the planes buffer for C channels */
static size_t planes_floats(int C, int H, int W, int k, int stride) {
    Planes g = planes_for(H, W, k, stride);
    return round16((size_t)C * g.per_channel * g.len);
}

/* Tap (ky, kx) reads plane q of its channel at offset (dy, dx): x[s*oy + ky - pad] is
 * phase py = (ky - pad) mod s, plane row oy + dy (stride s in {1, 2}). */
static void tap_source(int ky, int kx, int k, int stride, int *q, int *dy, int *dx) {
    int a = ky - k / 2, b = kx - k / 2;
    int py = a & (stride - 1), px = b & (stride - 1);
    *q = py * stride + px;
    *dy = (a - py) / stride;
    *dx = (b - px) / stride;
}

/* Copies the C planes of image x (C, H, W) into the planes buffer (interiors only).
 * Stride 2: x row 2i + py splits into the even-column plane (py, 0) and the odd-column
 * plane (py, 1); rows and columns past the image are zero. */
static void fill_planes(float *buf, const float *x, int C, int H, int W, int stride, Planes g) {
    for (int ci = 0; ci < C; ci++) {
        const float *xc = x + (size_t)ci * H * W;
        float *first = buf + (size_t)ci * g.per_channel * g.len + g.lead;
        if (stride == 1) {
            memcpy(first, xc, sizeof(float) * H * W);
            continue;
        }
        for (int py = 0; py < 2; py++) {
            float *even = first + (size_t)(2 * py) * g.len, *odd = even + g.len;
            for (int i = 0; i < g.Hp; i++) {
                float *e = even + (size_t)i * g.Wp, *o = odd + (size_t)i * g.Wp;
                int iy = 2 * i + py, j = 0;
                if (iy < H) {
                    const float *in = xc + (size_t)iy * W;
                    for (; j < W / 2; j++) {
                        e[j] = in[2 * j];
                        o[j] = in[2 * j + 1];
                    }
                    if (W % 2) e[j] = in[2 * j], o[j++] = 0.0f;
                }
                for (; j < g.Wp; j++) e[j] = o[j] = 0.0f;
            }
        }
    }
}

/* col[(ci*k + ky)*k + kx][oy*Wo + ox] = x[ci][oy*stride + ky - pad][ox*stride + kx - pad],
 * zero outside the image. x is one image (C, H, W); col rows have stride ld. buf holds
 * the planes, its zeros between them written once by the caller. */
static void im2col(float *col, size_t ld, const float *x, int C, int H, int W, int k, int stride,
                   float *buf) {
    Planes g = planes_for(H, W, k, stride);
    size_t No = (size_t)g.Hp * g.Wp;
    int direct = stride == 1 && g.lead == 0; /* 1x1 stride 1: x is its own plane */
    if (!direct) fill_planes(buf, x, C, H, W, stride, g);
    for (int ci = 0; ci < C; ci++)
        for (int t = 0; t < k * k; t++) {
            int q, dy, dx;
            tap_source(t / k, t % k, k, stride, &q, &dy, &dx);
            const float *plane =
                direct ? x + ci * No : buf + (ci * g.per_channel + q) * g.len + g.lead;
            float *row = col + (size_t)(ci * k * k + t) * ld;
            memcpy(row, plane + (long)dy * g.Wp + dx, sizeof(float) * No);
            for (int ox = 0; ox < -dx; ox++) /* columns that wrapped around a row edge */
                for (int oy = 0; oy < g.Hp; oy++) row[oy * g.Wp + ox] = 0.0f;
            for (int ox = g.Wp - dx; ox < g.Wp; ox++)
                for (int oy = 0; oy < g.Hp; oy++) row[oy * g.Wp + ox] = 0.0f;
        }
}

/* The adjoint of im2col: dx (C, H, W) of one image += the col entries that read it.
 * Each col row is added into its plane at its shift, with the entries that read zero
 * padding or wrapped columns zeroed first (col is scratch), so the zeros between planes
 * stay zero; then the planes are added into dx. */
static void col2im_add(float *dx, float *col, size_t ld, int C, int H, int W, int k, int stride,
                       float *buf) {
    Planes g = planes_for(H, W, k, stride);
    size_t No = (size_t)g.Hp * g.Wp;
    memset(buf, 0, sizeof(float) * C * g.per_channel * g.len);
    for (int ci = 0; ci < C; ci++)
        for (int t = 0; t < k * k; t++) {
            int q, dy, dx_;
            tap_source(t / k, t % k, k, stride, &q, &dy, &dx_);
            float *row = col + (size_t)(ci * k * k + t) * ld;
            float *plane = buf + (ci * g.per_channel + q) * g.len + g.lead;
            for (int oy = 0; oy < g.Hp; oy++)
                if (oy + dy < 0 || oy + dy >= g.Hp)
                    memset(row + oy * g.Wp, 0, sizeof(float) * g.Wp);
            for (int ox = 0; ox < -dx_; ox++)
                for (int oy = 0; oy < g.Hp; oy++) row[oy * g.Wp + ox] = 0.0f;
            for (int ox = g.Wp - dx_; ox < g.Wp; ox++)
                for (int oy = 0; oy < g.Hp; oy++) row[oy * g.Wp + ox] = 0.0f;
            float *dst = plane + (long)dy * g.Wp + dx_;
            for (size_t i = 0; i < No; i++) dst[i] += row[i];
        }
    for (int ci = 0; ci < C; ci++) { /* the planes into dx, the inverse of fill_planes */
        float *dxc = dx + (size_t)ci * H * W;
        const float *first = buf + (size_t)ci * g.per_channel * g.len + g.lead;
        if (stride == 1) {
            for (size_t i = 0; i < No; i++) dxc[i] += first[i];
            continue;
        }
        for (int py = 0; py < 2; py++) {
            const float *even = first + (size_t)(2 * py) * g.len, *odd = even + g.len;
            for (int i = 0; i < g.Hp && 2 * i + py < H; i++) {
                const float *e = even + (size_t)i * g.Wp, *o = odd + (size_t)i * g.Wp;
                float *out = dxc + (size_t)(2 * i + py) * W;
                int j = 0;
                for (; j < W / 2; j++) {
                    out[2 * j] += e[j];
                    out[2 * j + 1] += o[j];
                }
                if (W % 2) out[2 * j] += e[j];
            }
        }
    }
}

/* The GEMM operand (K, n*No) for images x[0..n) (each x_image floats): x itself for one
 * image of a 1x1 stride-1 conv, else their im2col side by side in col. */
static const float *image_columns(float *col, float *planes, const float *x, int n,
                                  size_t x_image, int C, int H, int W, int k, int stride) {
    if (n == 1 && k == 1 && stride == 1) return x;
    size_t No = (size_t)conv_out_size(H, k, stride) * conv_out_size(W, k, stride);
    for (int j = 0; j < n; j++)
        im2col(col + j * No, n * No, x + j * x_image, C, H, W, k, stride, planes);
    return col;
}

/* ---------------------------------------------------------------- row shifts */

/* xk (C*3, W + N + W): row ci*3 + kx = [W zeros, x[ci] shifted by kx - 1 columns with the
 * values that wrapped around a row edge zeroed, W zeros]. x is one image (C, H, W). */
static void kx_columns(float *xk, const float *x, int C, int H, int W) {
    size_t N = (size_t)H * W, ld = N + 2 * (size_t)W;
    for (int ci = 0; ci < C; ci++)
        for (int kx = 0; kx < 3; kx++) {
            float *row = xk + (size_t)(ci * 3 + kx) * ld, *mid = row + W;
            const float *xc = x + ci * N;
            memset(row, 0, sizeof(float) * W);
            memset(mid + N, 0, sizeof(float) * W);
            if (kx == 1) {
                memcpy(mid, xc, sizeof(float) * N);
            } else if (kx == 0) { /* mid[p] = x[p - 1]; column 0 wrapped */
                memcpy(mid + 1, xc, sizeof(float) * (N - 1));
                for (int oy = 0; oy < H; oy++) mid[oy * W] = 0.0f;
            } else { /* mid[p] = x[p + 1]; column W-1 wrapped */
                memcpy(mid, xc + 1, sizeof(float) * (N - 1));
                for (int oy = 0; oy < H; oy++) mid[oy * W + W - 1] = 0.0f;
            }
        }
}

/* The kernel as a GEMM's left operand, for Co output and Ci input channels: for the
 * forward (transposed = 0) Co = Cout, Ci = Cin; for dx (transposed = 1) Co = Cin,
 * Ci = Cout and the taps flipped, (ky, kx) -> (k-1-ky, k-1-kx). Layout (Co, Ci*k*k); with
 * per_ky, k blocks (Co, Ci*k), block ky holding kernel row ky (the row-shift GEMMs). */
static void arrange_kernel(float *dst, const float *w, ConvShape s, int transposed, int per_ky) {
    int k = s.k, Co = transposed ? s.Cin : s.Cout, Ci = transposed ? s.Cout : s.Cin;
    for (int o = 0; o < Co; o++)
        for (int i = 0; i < Ci; i++)
            for (int ky = 0; ky < k; ky++)
                for (int kx = 0; kx < k; kx++) {
                    int co = transposed ? i : o, ci = transposed ? o : i;
                    int sy = transposed ? k - 1 - ky : ky, sx = transposed ? k - 1 - kx : kx;
                    size_t at = per_ky ? (((size_t)ky * Co + o) * Ci + i) * k + kx
                                       : (((size_t)o * Ci + i) * k + ky) * k + kx;
                    dst[at] = w[(((size_t)co * s.Cin + ci) * k + sy) * k + sx];
                }
}

/* out (Co, N) = beta * out + sum over ky of kernel block ky (Co, Ci*3) @ xk shifted by ky
 * image rows (+ bias[co] if bias is not NULL); xk from kx_columns of Ci channels. In the
 * blocks of gemm.h, all GEMMs of a column block and its bias one after the other while
 * its part of out is in cache. */
static void row_shift_gemms(float *out, float beta, const float *kernel, const float *xk,
                            const float *bias, int Co, int Ci, int H, int W) {
    int N = H * W, ld = N + 2 * W, K = Ci * 3;
    GemmBlocks g = gemm_blocks(Co, N, K);
    for (int j = 0; j < N; j += g.nb) {
        int nb = D2C_MIN(g.nb, N - j);
        for (int ky = 0; ky < 3; ky++)
            for (int k = 0; k < K; k += g.kb)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Co, nb, D2C_MIN(g.kb, K - k),
                            1.0f, kernel + (size_t)ky * Co * K + k, K,
                            xk + (size_t)ky * W + (size_t)k * ld + j, ld,
                            ky == 0 && k == 0 ? beta : 1.0f, out + j, N);
        if (bias) gemm_row_bias(out, N, Co, j, j + nb, bias);
    }
}

/* ---------------------------------------------------------------- forward */

/* Whether im2col or col2im_add will read planes (each thread zeroes its planes on every
 * call): not for the row shifts, nor for 1x1 stride-1 convs (x is its own plane). */
static int uses_planes(ConvShape s, ConvPlan p) { return !p.row_shifts && !(s.k == 1 && s.stride == 1); }

/* Per-thread scratch, slices of the Workspace. */
typedef struct {
    float *col;    /* (max(K, Cout*k*k), n*No): im2col of x or dy, dcol, or xk */
    float *dy_buf; /* (Cout, n*No): a chunk's dy side by side, when n > 1 */
    float *out;    /* (Cout or Cin, n*No): a chunk's y or dx before it goes to NCHW, n > 1 */
    float *planes; /* im2col's planes, zeros between them */
} Scratch;

/* Carves thread t's Scratch from base (`per_thread` floats each) and zeroes its planes. */
static Scratch thread_scratch(float *base, size_t per_thread, size_t col_floats,
                              size_t dy_floats, size_t out_floats, size_t plane_floats) {
    Scratch t;
    t.col = base + per_thread * omp_get_thread_num();
    t.dy_buf = t.col + col_floats;
    t.out = t.dy_buf + dy_floats;
    t.planes = t.out + out_floats;
    memset(t.planes, 0, sizeof(float) * plane_floats);
    return t;
}

/* y for the images of chunk c; kernel is w, or w in per-ky blocks for row shifts. */
static void forward_chunk(float *y, const float *x, const float *kernel, const float *bias,
                          ConvShape s, ConvPlan p, int c, Scratch t) {
    size_t x_image = (size_t)s.Cin * s.H * s.W, y_image = (size_t)s.Cout * p.No;
    int b0 = chunk_start(c, s.B, p.chunks), n = chunk_start(c + 1, s.B, p.chunks) - b0;
    int ld = n * p.No;
    /* one image writes y directly, adding the bias block by block */
    float *out = n == 1 ? y + b0 * y_image : t.out;
    const float *gemm_bias = n == 1 ? bias : NULL;
    if (p.row_shifts) {
        kx_columns(t.col, x + b0 * x_image, s.Cin, s.H, s.W);
        row_shift_gemms(out, 0.0f, kernel, t.col, gemm_bias, s.Cout, s.Cin, s.H, s.W);
    } else { /* out (Cout, n*No) = w (Cout, K) @ x_cols (K, n*No) */
        const float *x_cols = image_columns(t.col, t.planes, x + b0 * x_image, n, x_image, s.Cin,
                                            s.H, s.W, s.k, s.stride);
        gemm_nn(s.Cout, ld, p.K, 1.0f, kernel, p.K, x_cols, ld, 0.0f, out, ld, gemm_bias);
    }
    if (n == 1) return;
    for (int j = 0; j < n; j++) /* to y's layout, adding the bias */
        for (int co = 0; co < s.Cout; co++) {
            const float *src = out + (size_t)co * ld + (size_t)j * p.No;
            float *dst = y + (b0 + j) * y_image + (size_t)co * p.No;
            float add = bias ? bias[co] : 0.0f;
            for (int i = 0; i < p.No; i++) dst[i] = src[i] + add;
        }
}

void conv2d_forward(float *y, const float *x, const float *w, const float *bias, ConvShape s,
                    Workspace *ws) {
    ConvPlan p = conv_plan(s);
    size_t cols_max = (size_t)p.max_images * p.No;
    size_t kernel_floats = p.row_shifts ? round16((size_t)s.Cout * p.K) : 0;
    size_t col_floats = round16((size_t)p.K * cols_max);
    size_t out_floats = p.max_images > 1 ? round16((size_t)s.Cout * cols_max) : 0;
    size_t plane_floats = uses_planes(s, p) ? planes_floats(s.Cin, s.H, s.W, s.k, s.stride) : 0;
    size_t per_thread = col_floats + out_floats + plane_floats;
    float *kernel = workspace_ensure(ws, kernel_floats + per_thread * omp_get_max_threads());
    float *scratch = kernel + kernel_floats;
    if (p.row_shifts)
        arrange_kernel(kernel, w, s, 0, 1);
    else
        kernel = (float *)w;
#pragma omp parallel
    {
        Scratch t = thread_scratch(scratch, per_thread, col_floats, 0, out_floats, plane_floats);
#pragma omp for schedule(dynamic, 1)
        for (int c = 0; c < p.chunks; c++) forward_chunk(y, x, kernel, bias, s, p, c, t);
    }
}

/* ---------------------------------------------------------------- backward */

/* Backward, per chunk (dyc (Cout, n*No) = the chunk's dy side by side):
 *   dwt (K, Cout) += im2col(x) (K, n*No) @ dyc^T: dw transposed, the GEMM shape OpenBLAS
 *        runs faster than dyc @ im2col(x)^T; with row shifts, one GEMM per ky into
 *        dwt's block ky, (Cin*3, Cout), rows (ci, kx);
 *   stride 1: dx is the convolution of dy with the flipped, transposed kernel
 *        wt (Cin, Cout*k*k): dx (Cin, n*No) += wt @ im2col(dy), or by row shifts;
 *   stride 2: dcol (K, n*No) = w^T @ dyc;  dx += col2im(dcol). */
static void backward_chunk(float *dx, float *dwt, float dw_beta, float *dbias_acc,
                           const float *dy, const float *x, const float *w, const float *wt,
                           ConvShape s, ConvPlan p, int c, Scratch t) {
    size_t x_image = (size_t)s.Cin * s.H * s.W, y_image = (size_t)s.Cout * p.No;
    int b0 = chunk_start(c, s.B, p.chunks), n = chunk_start(c + 1, s.B, p.chunks) - b0;
    int ld = n * p.No, kk = s.k * s.k;
    if (dbias_acc) /* also brings dy into cache for the GEMMs */
        for (int j = 0; j < n; j++)
            for (int co = 0; co < s.Cout; co++)
                dbias_acc[co] += (float)sum_f64(dy + (b0 + j) * y_image + (size_t)co * p.No, p.No);
    if (!dwt && !dx) return;
    const float *dyc = dy + b0 * y_image;
    if (n > 1) {
        for (int j = 0; j < n; j++)
            for (int co = 0; co < s.Cout; co++)
                memcpy(t.dy_buf + (size_t)co * ld + (size_t)j * p.No,
                       dy + (b0 + j) * y_image + (size_t)co * p.No, sizeof(float) * p.No);
        dyc = t.dy_buf;
    }
    if (dwt && p.row_shifts) {
        kx_columns(t.col, x + b0 * x_image, s.Cin, s.H, s.W);
        for (int ky = 0; ky < 3; ky++)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, s.Cin * 3, s.Cout, p.No, 1.0f,
                        t.col + (size_t)ky * s.W, p.No + 2 * s.W, dyc, p.No, dw_beta,
                        dwt + (size_t)ky * s.Cin * 3 * s.Cout, s.Cout);
    } else if (dwt) {
        const float *x_cols = image_columns(t.col, t.planes, x + b0 * x_image, n, x_image, s.Cin,
                                            s.H, s.W, s.k, s.stride);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, p.K, s.Cout, ld, 1.0f, x_cols, ld,
                    dyc, ld, dw_beta, dwt, s.Cout);
    }
    if (!dx) return;
    if (p.row_shifts) {
        kx_columns(t.col, dyc, s.Cout, s.H, s.W);
        row_shift_gemms(dx + b0 * x_image, 1.0f, wt, t.col, NULL, s.Cin, s.Cout, s.H, s.W);
    } else if (s.stride == 1) {
        const float *dy_cols = s.k == 1 ? dyc
                                        : image_columns(t.col, t.planes, dy + b0 * y_image, n,
                                                        y_image, s.Cout, s.H, s.W, s.k, 1);
        float *out = n == 1 ? dx + b0 * x_image : t.out;
        gemm_nn(s.Cin, ld, s.Cout * kk, 1.0f, wt, s.Cout * kk, dy_cols, ld, n == 1 ? 1.0f : 0.0f,
                out, ld, NULL);
        if (n > 1)
            for (int j = 0; j < n; j++)
                for (int ci = 0; ci < s.Cin; ci++) {
                    const float *src = t.out + (size_t)ci * ld + (size_t)j * p.No;
                    float *dst = dx + (b0 + j) * x_image + (size_t)ci * p.No;
                    for (int i = 0; i < p.No; i++) dst[i] += src[i];
                }
    } else {
        gemm_tn(p.K, ld, s.Cout, 1.0f, w, p.K, dyc, ld, 0.0f, t.col, ld);
        for (int j = 0; j < n; j++)
            col2im_add(dx + (b0 + j) * x_image, t.col + (size_t)j * p.No, ld, s.Cin, s.H, s.W, s.k,
                       s.stride, t.planes);
    }
}

void conv2d_backward(float *dx, float *dw, float *dbias, const float *dy, const float *x,
                     const float *w, ConvShape s, Workspace *ws) {
    ConvPlan p = conv_plan(s);
    int kk = s.k * s.k;
    if (!dx && !dw && !dbias) return;

    /* workspace: [dw and dbias partials, one each per slot][wt]
     *            [per thread: col, dy_buf, out, planes] */
    int slots = D2C_MIN(p.chunks, CONV_MAX_SLOTS);
    size_t partial_floats = (dw ? round16((size_t)p.K * s.Cout) : 0) + round16(s.Cout);
    size_t wt_floats = dx && s.stride == 1 ? round16((size_t)s.Cin * s.Cout * kk) : 0;
    size_t cols_max = (size_t)p.max_images * p.No;
    size_t col_floats = round16((size_t)D2C_MAX(p.K, s.Cout * kk) * cols_max);
    size_t dy_floats = p.max_images > 1 ? round16((size_t)s.Cout * cols_max) : 0;
    size_t out_floats = p.max_images > 1 ? round16((size_t)s.Cin * cols_max) : 0;
    size_t plane_floats = uses_planes(s, p) ? planes_floats(D2C_MAX(s.Cin, s.Cout), s.H, s.W, s.k, s.stride) : 0;
    size_t per_thread = col_floats + dy_floats + out_floats + plane_floats;
    float *partials = workspace_ensure(
        ws, partial_floats * slots + wt_floats + per_thread * omp_get_max_threads());
    float *wt = partials + partial_floats * slots, *scratch = wt + wt_floats;
    if (wt_floats) arrange_kernel(wt, w, s, 1, p.row_shifts);
    /* slot sl's partials: dwt (K, Cout) if dw, then dbias (Cout) */
    size_t dbias_at = partial_floats - round16(s.Cout);

#pragma omp parallel
    {
        Scratch t = thread_scratch(scratch, per_thread, col_floats, dy_floats, out_floats,
                                   plane_floats);
#pragma omp for schedule(dynamic, 1)
        for (int sl = 0; sl < slots; sl++) { /* slot sl: chunks [c0, c1), its own dw partial */
            int c0 = chunk_start(sl, p.chunks, slots), c1 = chunk_start(sl + 1, p.chunks, slots);
            float *dwt = dw ? partials + partial_floats * sl : NULL;
            float *dbias_acc = dbias ? partials + partial_floats * sl + dbias_at : NULL;
            if (dbias) memset(dbias_acc, 0, sizeof(float) * s.Cout);
            for (int c = c0; c < c1; c++)
                backward_chunk(dx, dwt, c == c0 ? 0.0f : 1.0f, dbias_acc, dy, x, w, wt, s, p, c,
                               t);
        }
    }

    if (dbias)
        for (int sl = 0; sl < slots; sl++)
            vec_add(dbias, partials + partial_floats * sl + dbias_at, s.Cout);
    if (dw) { /* dw (Cout, K) += the transposed partials, added in slot order */
        size_t n_dwt = (size_t)p.K * s.Cout;
#pragma omp parallel for schedule(static)
        for (size_t i0 = 0; i0 < n_dwt; i0 += 1024) /* in blocks, so the inner loop vectorises */
            for (int sl = 1; sl < slots; sl++)
                for (size_t i = i0; i < D2C_MIN(i0 + 1024, n_dwt); i++)
                    partials[i] += partials[partial_floats * sl + i];
#pragma omp parallel for schedule(static)
        for (int i = 0; i < p.K; i++) { /* i = (ci*k + ky)*k + kx */
            int ci = i / kk, ky = i / s.k % s.k, kx = i % s.k;
            size_t row = p.row_shifts ? ((size_t)ky * s.Cin + ci) * 3 + kx : (size_t)i;
            for (int co = 0; co < s.Cout; co++)
                dw[(size_t)co * p.K + i] += partials[row * s.Cout + co];
        }
    }
}

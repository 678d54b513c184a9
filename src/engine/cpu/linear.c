/* Fully connected layer (PyTorch nn.Linear): y (B, out) = x (B, in) @ w^T + bias, with
 * w (out, in). Each GEMM is cut into fixed blocks of LINEAR_BLOCK output columns, one
 * single-threaded sgemm per block spread over OpenMP threads: OpenBLAS's own threading
 * gives results that change with the thread count, fixed blocks do not. */
#include "engine/cpu/kernels.h"

#include <cblas.h>

#include "core/util.h"

#define LINEAR_BLOCK 64

static int blocks(int n) { return (n + LINEAR_BLOCK - 1) / LINEAR_BLOCK; }

void linear_forward(float *y, const float *x, const float *w, const float *bias, int B, int in,
                    int out) {
#pragma omp parallel for schedule(static)
    for (int blk = 0; blk < blocks(out); blk++) { /* y[:, o0:o1] = x @ w[o0:o1]^T + bias */
        int o0 = blk * LINEAR_BLOCK, n = D2C_MIN(LINEAR_BLOCK, out - o0);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, B, n, in, 1.0f, x, in,
                    w + (size_t)o0 * in, in, 0.0f, y + o0, out);
        if (bias)
            for (int b = 0; b < B; b++)
                for (int o = o0; o < o0 + n; o++) y[(size_t)b * out + o] += bias[o];
    }
}

void linear_backward(float *dx, float *dw, float *dbias, const float *dy, const float *x,
                     const float *w, int B, int in, int out) {
    if (dx) {
#pragma omp parallel for schedule(static)
        for (int blk = 0; blk < blocks(in); blk++) { /* dx[:, i0:i1] += dy @ w[:, i0:i1] */
            int i0 = blk * LINEAR_BLOCK, n = D2C_MIN(LINEAR_BLOCK, in - i0);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, B, n, out, 1.0f, dy, out,
                        w + i0, in, 1.0f, dx + i0, in);
        }
    }
    if (dw) {
#pragma omp parallel for schedule(static)
        for (int blk = 0; blk < blocks(out); blk++) { /* dw[o0:o1] += dy[:, o0:o1]^T @ x */
            int o0 = blk * LINEAR_BLOCK, n = D2C_MIN(LINEAR_BLOCK, out - o0);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, n, in, B, 1.0f, dy + o0, out, x,
                        in, 1.0f, dw + (size_t)o0 * in, in);
        }
    }
    if (dbias)
        for (int o = 0; o < out; o++) {
            double s = 0;
            for (int b = 0; b < B; b++) s += dy[(size_t)b * out + o];
            dbias[o] += (float)s;
        }
}

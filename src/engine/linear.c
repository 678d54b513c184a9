/* Fully connected layer (PyTorch nn.Linear): y (B, out) = x (B, in) @ w^T + bias, with
 * w (out, in). One sgemm each way; the sizes here (time and class embeddings, the
 * evaluator's head) are small, so OpenBLAS decides itself whether to thread them. */
#include "engine/kernels.h"

#include <cblas.h>

void linear_forward(float *y, const float *x, const float *w, const float *bias, int B, int in,
                    int out) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, B, out, in, 1.0f, x, in, w, in, 0.0f,
                y, out);
    if (bias)
        for (int b = 0; b < B; b++)
            for (int o = 0; o < out; o++) y[(size_t)b * out + o] += bias[o];
}

void linear_backward(float *dx, float *dw, float *dbias, const float *dy, const float *x,
                     const float *w, int B, int in, int out) {
    if (dx) /* dx (B, in) += dy (B, out) @ w (out, in) */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, B, in, out, 1.0f, dy, out, w, in,
                    1.0f, dx, in);
    if (dw) /* dw (out, in) += dy^T (out, B) @ x (B, in) */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, out, in, B, 1.0f, dy, out, x, in,
                    1.0f, dw, in);
    if (dbias)
        for (int o = 0; o < out; o++) {
            double s = 0;
            for (int b = 0; b < B; b++) s += dy[(size_t)b * out + o];
            dbias[o] += (float)s;
        }
}

/* Single-head self-attention core of the spec's Attention block, between its qkv and
 * proj 1x1 convolutions. Per image (C channels, N = H*W positions):
 *   q, k, v (C, N) = the three (C, N) blocks of qkv
 *   attn (N, N)    = softmax over j of (q^T k)[i, j] / sqrt(C)
 *   out (C, N)     = v @ attn^T
 * Images run in parallel, each with single-threaded sgemm calls. Backward:
 *   dv += dout @ attn;  dattn = dout^T v;  ds = attn * (dattn - rowsum(dattn * attn))
 *   dq += k @ ds^T / sqrt(C);  dk += q @ ds / sqrt(C). */
#include "engine/cpu/kernels.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>

#include "engine/cpu/vecmath.h"

/* In-place softmax of each row of s (rows, cols): exp(s - max) / sum, sum in double. */
static void softmax_rows(float *s, int rows, int cols) {
    for (int i = 0; i < rows; i++) {
        float *row = s + (size_t)i * cols;
        float mx = row[0];
        for (int j = 1; j < cols; j++) mx = row[j] > mx ? row[j] : mx;
        for (int j = 0; j < cols; j++) row[j] = fast_expf(row[j] - mx);
        float inv = (float)(1.0 / sum_f64(row, (size_t)cols));
        for (int j = 0; j < cols; j++) row[j] *= inv;
    }
}

void attention_forward(float *out, float *attn, const float *qkv, int B, int C, int N,
                       Workspace *ws) {
    float scale = 1.0f / sqrtf((float)C);
#pragma omp parallel for schedule(static)
    for (int b = 0; b < B; b++) {
        size_t CN = (size_t)C * N;
        const float *q = qkv + 3 * CN * b, *k = q + CN, *v = k + CN;
        float *a = attn + (size_t)b * N * N;
        /* a (N, N) = q^T (N, C) @ k (C, N) * scale */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, N, N, C, scale, q, N, k, N, 0.0f, a,
                    N);
        softmax_rows(a, N, N);
        /* out (C, N) = v (C, N) @ a^T (N, N) */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, C, N, N, 1.0f, v, N, a, N, 0.0f,
                    out + (size_t)b * C * N, N);
    }
}

void attention_backward(float *dqkv, const float *dout, const float *qkv, const float *attn,
                        int B, int C, int N, Workspace *ws) {
    if (!dqkv) return;
    float scale = 1.0f / sqrtf((float)C);
    size_t per_thread = ((size_t)N * N + 15) / 16 * 16; /* ds (N, N), 64-byte aligned */
    float *scratch = workspace_ensure(ws, per_thread * omp_get_max_threads());
#pragma omp parallel for schedule(static)
    for (int b = 0; b < B; b++) {
        size_t CN = (size_t)C * N;
        const float *q = qkv + 3 * CN * b, *k = q + CN, *v = k + CN;
        float *dq = dqkv + 3 * CN * b, *dk = dq + CN, *dv = dk + CN;
        const float *a = attn + (size_t)b * N * N, *dob = dout + (size_t)b * C * N;
        float *ds = scratch + per_thread * omp_get_thread_num();
        /* dv (C, N) += dout (C, N) @ a (N, N) */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, C, N, N, 1.0f, dob, N, a, N, 1.0f,
                    dv, N);
        /* da (N, N) = dout^T (N, C) @ v (C, N), then softmax backward in place */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, N, N, C, 1.0f, dob, N, v, N, 0.0f,
                    ds, N);
        for (int i = 0; i < N; i++) {
            float *dsr = ds + (size_t)i * N;
            const float *ar = a + (size_t)i * N;
            float dot = (float)dot_f64(dsr, ar, (size_t)N);
            for (int j = 0; j < N; j++) dsr[j] = ar[j] * (dsr[j] - dot);
        }
        /* dq (C, N) += k (C, N) @ ds^T * scale;  dk (C, N) += q (C, N) @ ds * scale */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, C, N, N, scale, k, N, ds, N, 1.0f, dq,
                    N);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, C, N, N, scale, q, N, ds, N, 1.0f,
                    dk, N);
    }
}

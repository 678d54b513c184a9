/* Element-wise and data-movement kernels: SiLU, per-channel bias broadcast, nearest x2
 * upsampling, channel concatenation, mean squared error and the small vector helpers.
 * All are memory-bound; they run as one OpenMP loop when the tensor is large enough to
 * pay for the threads, and give the same bits for any thread count (no reductions
 * across threads). Shape letters as in kernels.h. */
#include "engine/cpu/kernels.h"

#include <string.h>

#include "engine/cpu/vecmath.h"

/* Below this many values a kernel runs on the calling thread only. */
#define PARALLEL_MIN 32768

/* ---------------------------------------------------------------- SiLU */

void silu_forward(float *y, const float *x, size_t n) {
#pragma omp parallel for schedule(static) if (n >= PARALLEL_MIN)
    for (size_t i = 0; i < n; i++) y[i] = x[i] * sigmoidf(x[i]);
}

/* d silu / dx = s (1 + x (1 - s)), s = sigmoid(x) */
void silu_backward(float *dx, const float *dy, const float *x, size_t n) {
    if (!dx) return;
#pragma omp parallel for schedule(static) if (n >= PARALLEL_MIN)
    for (size_t i = 0; i < n; i++) {
        float s = sigmoidf(x[i]);
        dx[i] += dy[i] * s * (1.0f + x[i] * (1.0f - s));
    }
}

/* ---------------------------------------------------------------- bias broadcast */

void add_channel_bias_forward(float *h, const float *e, int B, int C, int N) {
    int rows = B * C;
#pragma omp parallel for schedule(static) if ((size_t)rows * N >= PARALLEL_MIN)
    for (int r = 0; r < rows; r++) {
        float *row = h + (size_t)r * N;
        float v = e[r];
        for (int n = 0; n < N; n++) row[n] += v;
    }
}

void add_channel_bias_backward(float *de, const float *dh, int B, int C, int N) {
    if (!de) return;
    int rows = B * C;
#pragma omp parallel for schedule(static) if ((size_t)rows * N >= PARALLEL_MIN)
    for (int r = 0; r < rows; r++) de[r] += (float)sum_f64(dh + (size_t)r * N, (size_t)N);
}

/* ---------------------------------------------------------------- nearest x2 upsampling */

/* y[2i + a][2j + b] = x[i][j] for a, b in {0, 1}, per (B, C) plane. */
void upsample2x_forward(float *y, const float *x, int B, int C, int H, int W) {
    int planes = B * C, W2 = 2 * W;
#pragma omp parallel for schedule(static) if ((size_t)planes * H * W >= PARALLEL_MIN / 4)
    for (int p = 0; p < planes; p++) {
        const float *xp = x + (size_t)p * H * W;
        float *yp = y + (size_t)p * 4 * H * W;
        for (int i = 0; i < H; i++) {
            float *row = yp + (size_t)(2 * i) * W2;
            for (int j = 0; j < W; j++) row[2 * j] = row[2 * j + 1] = xp[i * W + j];
            memcpy(row + W2, row, sizeof(float) * W2);
        }
    }
}

/* dx[i][j] += sum of the four dy values it was copied to. */
void upsample2x_backward(float *dx, const float *dy, int B, int C, int H, int W) {
    if (!dx) return;
    int planes = B * C, W2 = 2 * W;
#pragma omp parallel for schedule(static) if ((size_t)planes * H * W >= PARALLEL_MIN / 4)
    for (int p = 0; p < planes; p++) {
        float *xp = dx + (size_t)p * H * W;
        const float *yp = dy + (size_t)p * 4 * H * W;
        for (int i = 0; i < H; i++) {
            const float *r0 = yp + (size_t)(2 * i) * W2, *r1 = r0 + W2;
            for (int j = 0; j < W; j++)
                xp[i * W + j] += (r0[2 * j] + r0[2 * j + 1]) + (r1[2 * j] + r1[2 * j + 1]);
        }
    }
}

/* ---------------------------------------------------------------- channel concatenation */

void concat_channels_forward(float *y, const float *a, const float *b, int B, int Ca, int Cb,
                             int N) {
    size_t na = (size_t)Ca * N, nb = (size_t)Cb * N;
#pragma omp parallel for schedule(static) if ((size_t)B * (na + nb) >= PARALLEL_MIN)
    for (int i = 0; i < B; i++) {
        memcpy(y + i * (na + nb), a + i * na, sizeof(float) * na);
        memcpy(y + i * (na + nb) + na, b + i * nb, sizeof(float) * nb);
    }
}

void concat_channels_backward(float *da, float *db, const float *dy, int B, int Ca, int Cb,
                              int N) {
    size_t na = (size_t)Ca * N, nb = (size_t)Cb * N;
#pragma omp parallel for schedule(static) if ((size_t)B * (na + nb) >= PARALLEL_MIN)
    for (int i = 0; i < B; i++) {
        const float *dyi = dy + i * (na + nb);
        if (da)
            for (size_t j = 0; j < na; j++) da[i * na + j] += dyi[j];
        if (db)
            for (size_t j = 0; j < nb; j++) db[i * nb + j] += dyi[na + j];
    }
}

/* ---------------------------------------------------------------- mean squared error */

float mse_forward(const float *pred, const float *target, size_t n) {
    double lane[8] = {0}, s = 0;
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int l = 0; l < 8; l++) {
            double d = (double)pred[i + l] - (double)target[i + l];
            lane[l] += d * d;
        }
    for (; i < n; i++) s += ((double)pred[i] - target[i]) * ((double)pred[i] - target[i]);
    for (int l = 0; l < 8; l++) s += lane[l];
    return (float)(s / (double)n);
}

void mse_backward(float *dpred, const float *pred, const float *target, size_t n, float scale) {
    if (!dpred) return;
    float k = (float)(2.0 * scale / (double)n);
#pragma omp parallel for schedule(static) if (n >= PARALLEL_MIN)
    for (size_t i = 0; i < n; i++) dpred[i] += k * (pred[i] - target[i]);
}

/* ---------------------------------------------------------------- vector helpers */

void vec_add(float *y, const float *x, size_t n) {
#pragma omp parallel for schedule(static) if (n >= PARALLEL_MIN)
    for (size_t i = 0; i < n; i++) y[i] += x[i];
}

void vec_axpy(float *y, float a, const float *x, size_t n) {
#pragma omp parallel for schedule(static) if (n >= PARALLEL_MIN)
    for (size_t i = 0; i < n; i++) y[i] += a * x[i];
}

void vec_zero(float *y, size_t n) { memset(y, 0, sizeof(float) * n); }

double vec_sum_sq(const float *x, size_t n) { return sum_sq_dev_f64(x, 0.0, n); }

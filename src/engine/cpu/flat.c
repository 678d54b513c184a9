/* The CPU backend's flat-buffer kernels: the loops that the optimiser, the EMA, the
 * diffusion objective, the samplers, gradient matching and the evaluator's softmax ran
 * over whole buffers before the engine seam, moved here operation for operation (the
 * same float arithmetic in the same order, so results are bit-identical to before). */
#include "engine/cpu/flat.h"

#include <math.h>
#include <string.h>

#include "engine/cpu/kernels.h"

void flat_axpby(float *y, float a, const float *x, float b, size_t n) {
#pragma omp parallel for schedule(static) if (n >= 65536)
    for (size_t i = 0; i < n; i++) y[i] = a * x[i] + b * y[i];
}

void flat_waxpy(float *w, float a, const float *x, const float *y, size_t n) {
#pragma omp parallel for schedule(static) if (n >= 65536)
    for (size_t i = 0; i < n; i++) w[i] = y[i] + a * x[i];
}

void flat_scale(float *y, float a, size_t n) {
    for (size_t i = 0; i < n; i++) y[i] *= a;
}

void flat_clamp(float *y, float lo, float hi, size_t n) {
    for (size_t i = 0; i < n; i++) y[i] = y[i] < lo ? lo : y[i] > hi ? hi : y[i];
}

double flat_clip_grad_norm(float *g, size_t n, double max_norm) {
    double norm = sqrt(vec_sum_sq(g, n));
    if (max_norm > 0 && norm > max_norm) flat_scale(g, (float)(max_norm / (norm + 1e-6)), n);
    return norm;
}

void flat_adam_step(float *p, const float *g, float *m, float *v, size_t n, float b1, float b2, float eps,
                    float step_size, float bc2_sqrt) {
    const long N = (long)n;
#pragma omp parallel for schedule(static)
    for (long i = 0; i < N; i++) {
        float gi = g[i];
        m[i] = m[i] * b1 + gi * (1.0f - b1);
        v[i] = v[i] * b2 + gi * gi * (1.0f - b2);
        float denom = sqrtf(v[i]) / bc2_sqrt + eps;
        p[i] -= step_size * (m[i] / denom);
    }
}

void flat_ema_update(float *ema, const float *p, float decay, size_t n) {
    for (size_t i = 0; i < n; i++) ema[i] = decay * ema[i] + (1.0f - decay) * p[i];
}

void flat_q_sample(float *xt, const float *x0, const float *noise, const int64_t *t, const float *alpha_bar, int B,
                   size_t D) {
    for (int b = 0; b < B; b++) {
        float ab = alpha_bar[t[b]];
        float ca = sqrtf(ab), cn = sqrtf(1.0f - ab);
        const float *x = x0 + (size_t)b * D, *e = noise + (size_t)b * D;
        float *o = xt + (size_t)b * D;
        for (size_t i = 0; i < D; i++) o[i] = ca * x[i] + cn * e[i];
    }
}

void flat_q_sample_backward(float *dx0, const float *dxt, const int64_t *t, const float *alpha_bar, int B, size_t D) {
    for (int b = 0; b < B; b++) vec_axpy(dx0 + (size_t)b * D, sqrtf(alpha_bar[t[b]]), dxt + (size_t)b * D, D);
}

void flat_guidance(float *eps, const float *ec, const float *en, float g, size_t n) {
    for (size_t i = 0; i < n; i++) eps[i] = en[i] + g * (ec[i] - en[i]);
}

void flat_ddim_step(float *x, const float *eps, size_t n, float c_noise, float c_sig, float c_prev, float c_prev_noise) {
    for (size_t k = 0; k < n; k++) {
        float x0 = (x[k] - c_noise * eps[k]) / c_sig;
        x[k] = c_prev * x0 + c_prev_noise * eps[k];
    }
}

void flat_ddpm_step(float *x, const float *eps, const float *z, size_t n, float c_eps, float c_scale, float sigma) {
    for (size_t k = 0; k < n; k++) x[k] = (x[k] - c_eps * eps[k]) * c_scale + sigma * (z ? z[k] : 0.0f);
}

double flat_layerwise_distance(const EngineRows *rows, int nrows, const float *g_real, const float *g_syn,
                               float *v_real, float *v_syn, size_t n) {
    double dist = 0;
    if (v_syn) memset(v_syn, 0, n * sizeof(float));
    if (v_real) memset(v_real, 0, n * sizeof(float));
    for (int s = 0; s < nrows; s++) {
        const size_t cols = rows[s].cols;
        for (int r = 0; r < rows[s].rows; r++) {
            const size_t o = rows[s].offset + (size_t)r * cols;
            const float *a = g_real + o, *b = g_syn + o;
            double dot = 0, na = 0, nb = 0;
            for (size_t j = 0; j < cols; j++) {
                dot += (double)a[j] * b[j];
                na += (double)a[j] * a[j];
                nb += (double)b[j] * b[j];
            }
            na = sqrt(na);
            nb = sqrt(nb);
            const double den = na * nb + 1e-6;
            dist += 1.0 - dot / den;
            /* d(1 - dot/den)/db = -a/den + dot * na * (b / nb) / den^2, and symmetrically */
            if (v_syn) {
                const double cb = nb > 0 ? dot * na / (nb * den * den) : 0.0;
                for (size_t j = 0; j < cols; j++) v_syn[o + j] = (float)(-(double)a[j] / den + cb * b[j]);
            }
            if (v_real) {
                const double ca = na > 0 ? dot * nb / (na * den * den) : 0.0;
                for (size_t j = 0; j < cols; j++) v_real[o + j] = (float)(-(double)b[j] / den + ca * a[j]);
            }
        }
    }
    return dist;
}

void flat_fd_coef(float *coef, const float *v, size_t n, double base) {
    const double r = sqrt(vec_sum_sq(v, n));
    const float eps = r > 0 ? (float)(base / r) : 0.0f;
    coef[0] = eps;
    coef[1] = 2.0f * eps;
}

void flat_feature_gap(double *sq, float *grad, const float *fr, const float *fs, int C, float coef, float denom) {
    if (sq) {
        double s = 0;
        for (int c = 0; c < C; c++) {
            const double d = (double)fr[c] - fs[c];
            s += d * d;
        }
        sq[0] = s;
    }
    if (grad)
        for (int c = 0; c < C; c++) grad[c] = coef * (fs[c] - fr[c]) / denom;
}

void flat_channel_mean(float *feat, const float *x, int B, int C, size_t N) {
    for (int c = 0; c < C; c++) {
        double s = 0;
        for (int b = 0; b < B; b++)
            for (size_t i = 0; i < N; i++) s += x[((size_t)b * C + c) * N + i];
        feat[c] = (float)(s / ((double)B * N));
    }
}

void flat_channel_fill(float *x, const float *vals, int B, int C, size_t N) {
    for (int c = 0; c < C; c++)
        for (int b = 0; b < B; b++)
            for (size_t i = 0; i < N; i++) x[((size_t)b * C + c) * N + i] = vals[c];
}

void flat_row_mean(float *y, const float *x, size_t rows, size_t N) {
    for (size_t r = 0; r < rows; r++) {
        const float *row = x + r * N;
        double s = 0;
        for (size_t i = 0; i < N; i++) s += row[i];
        y[r] = (float)(s / (double)N);
    }
}

void flat_row_mean_backward(float *dx, const float *dy, size_t rows, size_t N) {
    for (size_t r = 0; r < rows; r++) {
        float g = dy[r] / (float)N;
        float *row = dx + r * N;
        for (size_t i = 0; i < N; i++) row[i] = g;
    }
}

void flat_softmax_rows(float *probs, const float *logits, int B, int K) {
    for (int b = 0; b < B; b++) {
        const float *z = logits + (size_t)b * K;
        float *p = probs + (size_t)b * K;
        float m = z[0];
        for (int k = 1; k < K; k++) m = z[k] > m ? z[k] : m;
        double s = 0;
        for (int k = 0; k < K; k++) s += exp((double)z[k] - m);
        for (int k = 0; k < K; k++) p[k] = (float)(exp((double)z[k] - m) / s);
    }
}

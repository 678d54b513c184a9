/* Naive double-precision references of the engine's layer ops (backend_ref.h). */
#include "backend_ref.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

double ref_silu(double x) { return x / (1.0 + exp(-x)); }

double ref_dsilu(double x) {
    double s = 1.0 / (1.0 + exp(-x));
    return s * (1.0 + x * (1.0 - s));
}

/* x[b, c, iy, ix] with zero padding */
static double xat(const float *x, ConvShape s, int b, int c, int iy, int ix) {
    if (iy < 0 || ix < 0 || iy >= s.H || ix >= s.W) return 0.0;
    return x[(((size_t)b * s.Cin + c) * s.H + iy) * s.W + ix];
}

void ref_conv2d_forward(double *y, const float *x, const float *w, const float *bias, ConvShape s) {
    const int Ho = conv_out_size(s.H, s.k, s.stride), Wo = conv_out_size(s.W, s.k, s.stride), p = s.k / 2;
    for (int b = 0; b < s.B; b++)
        for (int o = 0; o < s.Cout; o++)
            for (int oy = 0; oy < Ho; oy++)
                for (int ox = 0; ox < Wo; ox++) {
                    double acc = bias ? bias[o] : 0.0;
                    for (int c = 0; c < s.Cin; c++)
                        for (int ky = 0; ky < s.k; ky++)
                            for (int kx = 0; kx < s.k; kx++)
                                acc += (double)w[(((size_t)o * s.Cin + c) * s.k + ky) * s.k + kx] *
                                       xat(x, s, b, c, oy * s.stride + ky - p, ox * s.stride + kx - p);
                    y[(((size_t)b * s.Cout + o) * Ho + oy) * Wo + ox] = acc;
                }
}

void ref_conv2d_backward(double *dx, double *dw, double *dbias, const float *dy, const float *x, const float *w,
                         ConvShape s) {
    const int Ho = conv_out_size(s.H, s.k, s.stride), Wo = conv_out_size(s.W, s.k, s.stride), p = s.k / 2;
    for (int b = 0; b < s.B; b++)
        for (int o = 0; o < s.Cout; o++)
            for (int oy = 0; oy < Ho; oy++)
                for (int ox = 0; ox < Wo; ox++) {
                    const double g = dy[(((size_t)b * s.Cout + o) * Ho + oy) * Wo + ox];
                    if (dbias) dbias[o] += g;
                    for (int c = 0; c < s.Cin; c++)
                        for (int ky = 0; ky < s.k; ky++)
                            for (int kx = 0; kx < s.k; kx++) {
                                const int iy = oy * s.stride + ky - p, ix = ox * s.stride + kx - p;
                                const size_t wi = (((size_t)o * s.Cin + c) * s.k + ky) * s.k + kx;
                                if (dw) dw[wi] += g * xat(x, s, b, c, iy, ix);
                                if (dx && iy >= 0 && ix >= 0 && iy < s.H && ix < s.W)
                                    dx[(((size_t)b * s.Cin + c) * s.H + iy) * s.W + ix] += g * w[wi];
                            }
                }
}

void ref_linear_forward(double *y, const float *x, const float *w, const float *bias, int B, int in, int out) {
    for (int b = 0; b < B; b++)
        for (int o = 0; o < out; o++) {
            double acc = bias ? bias[o] : 0.0;
            for (int i = 0; i < in; i++) acc += (double)x[(size_t)b * in + i] * w[(size_t)o * in + i];
            y[(size_t)b * out + o] = acc;
        }
}

void ref_linear_backward(double *dx, double *dw, double *dbias, const float *dy, const float *x, const float *w, int B,
                         int in, int out) {
    for (int b = 0; b < B; b++)
        for (int o = 0; o < out; o++) {
            const double g = dy[(size_t)b * out + o];
            if (dbias) dbias[o] += g;
            for (int i = 0; i < in; i++) {
                if (dw) dw[(size_t)o * in + i] += g * x[(size_t)b * in + i];
                if (dx) dx[(size_t)b * in + i] += g * w[(size_t)o * in + i];
            }
        }
}

/* mean and rstd of group (b, g) */
static void group_stats(const float *x, int b, int g, int C, int N, int G, double *mean, double *rstd) {
    const int cg = C / G;
    double s = 0, ss = 0;
    for (int c = g * cg; c < (g + 1) * cg; c++)
        for (int i = 0; i < N; i++) s += x[((size_t)b * C + c) * N + i];
    const double m = s / ((double)cg * N);
    for (int c = g * cg; c < (g + 1) * cg; c++)
        for (int i = 0; i < N; i++) {
            double d = x[((size_t)b * C + c) * N + i] - m;
            ss += d * d;
        }
    *mean = m;
    *rstd = 1.0 / sqrt(ss / ((double)cg * N) + 1e-5);
}

void ref_groupnorm_forward(double *y, double *mean, double *rstd, const float *x, const float *gamma, const float *beta,
                           int B, int C, int N, int G, int silu) {
    const int cg = C / G;
    for (int b = 0; b < B; b++)
        for (int g = 0; g < G; g++) {
            double m, r;
            group_stats(x, b, g, C, N, G, &m, &r);
            if (mean) mean[(size_t)b * G + g] = m;
            if (rstd) rstd[(size_t)b * G + g] = r;
            for (int c = g * cg; c < (g + 1) * cg; c++)
                for (int i = 0; i < N; i++) {
                    const size_t k = ((size_t)b * C + c) * N + i;
                    double a = (x[k] - m) * r * gamma[c] + beta[c];
                    y[k] = silu ? ref_silu(a) : a;
                }
        }
}

void ref_groupnorm_backward(double *dx, double *dgamma, double *dbeta, const float *dy, const float *x,
                            const float *gamma, const float *beta, int B, int C, int N, int G, int silu) {
    const int cg = C / G;
    const size_t M = (size_t)cg * N;
    double *dn = malloc(M * sizeof *dn), *nh = malloc(M * sizeof *nh);
    for (int b = 0; b < B; b++)
        for (int g = 0; g < G; g++) {
            double m, r;
            group_stats(x, b, g, C, N, G, &m, &r);
            double sdn = 0, sdnn = 0;
            for (int c = g * cg; c < (g + 1) * cg; c++)
                for (int i = 0; i < N; i++) {
                    const size_t k = ((size_t)b * C + c) * N + i, q = (size_t)(c - g * cg) * N + i;
                    const double n = (x[k] - m) * r, a = n * gamma[c] + beta[c];
                    const double da = dy[k] * (silu ? ref_dsilu(a) : 1.0);
                    if (dgamma) dgamma[c] += da * n;
                    if (dbeta) dbeta[c] += da;
                    dn[q] = da * gamma[c];
                    nh[q] = n;
                    sdn += dn[q];
                    sdnn += dn[q] * n;
                }
            if (!dx) continue;
            for (int c = g * cg; c < (g + 1) * cg; c++)
                for (int i = 0; i < N; i++) {
                    const size_t k = ((size_t)b * C + c) * N + i, q = (size_t)(c - g * cg) * N + i;
                    dx[k] += r * (dn[q] - sdn / (double)M - nh[q] * sdnn / (double)M);
                }
        }
    free(dn);
    free(nh);
}

/* A (N, N) of image b, in double */
static void attn_matrix(double *A, const float *qkv, int b, int C, int N) {
    const float *q = qkv + (size_t)b * 3 * C * N, *k = q + (size_t)C * N;
    const double sc = 1.0 / sqrt((double)C);
    for (int i = 0; i < N; i++) {
        double mx = -1e300;
        for (int j = 0; j < N; j++) {
            double s = 0;
            for (int c = 0; c < C; c++) s += (double)q[(size_t)c * N + i] * k[(size_t)c * N + j];
            A[(size_t)i * N + j] = s * sc;
            if (A[(size_t)i * N + j] > mx) mx = A[(size_t)i * N + j];
        }
        double z = 0;
        for (int j = 0; j < N; j++) z += (A[(size_t)i * N + j] = exp(A[(size_t)i * N + j] - mx));
        for (int j = 0; j < N; j++) A[(size_t)i * N + j] /= z;
    }
}

void ref_attention_forward(double *out, double *attn, const float *qkv, int B, int C, int N) {
    double *A = malloc((size_t)N * N * sizeof *A);
    for (int b = 0; b < B; b++) {
        attn_matrix(A, qkv, b, C, N);
        const float *v = qkv + (size_t)b * 3 * C * N + 2 * (size_t)C * N;
        for (int c = 0; c < C; c++)
            for (int i = 0; i < N; i++) {
                double s = 0;
                for (int j = 0; j < N; j++) s += (double)v[(size_t)c * N + j] * A[(size_t)i * N + j];
                out[((size_t)b * C + c) * N + i] = s;
            }
        if (attn) memcpy(attn + (size_t)b * N * N, A, (size_t)N * N * sizeof *A);
    }
    free(A);
}

void ref_attention_backward(double *dqkv, const float *dout, const float *qkv, int B, int C, int N) {
    double *A = malloc((size_t)N * N * sizeof *A), *dS = malloc((size_t)N * N * sizeof *dS);
    const double sc = 1.0 / sqrt((double)C);
    for (int b = 0; b < B; b++) {
        attn_matrix(A, qkv, b, C, N);
        const float *q = qkv + (size_t)b * 3 * C * N, *k = q + (size_t)C * N, *v = k + (size_t)C * N;
        const float *go = dout + (size_t)b * C * N;
        double *dq = dqkv + (size_t)b * 3 * C * N, *dk = dq + (size_t)C * N, *dv = dk + (size_t)C * N;
        for (int i = 0; i < N; i++) {
            double rowsum = 0;
            for (int j = 0; j < N; j++) {
                double dA = 0;
                for (int c = 0; c < C; c++) dA += (double)go[(size_t)c * N + i] * v[(size_t)c * N + j];
                dS[(size_t)i * N + j] = dA;
                rowsum += dA * A[(size_t)i * N + j];
            }
            for (int j = 0; j < N; j++) dS[(size_t)i * N + j] = A[(size_t)i * N + j] * (dS[(size_t)i * N + j] - rowsum);
        }
        for (int c = 0; c < C; c++)
            for (int j = 0; j < N; j++) {
                double sv = 0, sk = 0;
                for (int i = 0; i < N; i++) {
                    sv += (double)go[(size_t)c * N + i] * A[(size_t)i * N + j];
                    sk += dS[(size_t)i * N + j] * q[(size_t)c * N + i];
                }
                dv[(size_t)c * N + j] += sv;
                dk[(size_t)c * N + j] += sk * sc;
            }
        for (int c = 0; c < C; c++)
            for (int i = 0; i < N; i++) {
                double s = 0;
                for (int j = 0; j < N; j++) s += dS[(size_t)i * N + j] * k[(size_t)c * N + j];
                dq[(size_t)c * N + i] += s * sc;
            }
    }
    free(A);
    free(dS);
}

void ref_timestep_embedding(double *y, const int64_t *t, int B, int dim) {
    const int half = dim / 2;
    for (int b = 0; b < B; b++) {
        for (int j = 0; j < half; j++) {
            const double f = exp(-log(10000.0) * j / half), a = (double)t[b] * f;
            y[(size_t)b * dim + j] = sin(a);
            y[(size_t)b * dim + half + j] = cos(a);
        }
        if (dim % 2) y[(size_t)b * dim + dim - 1] = 0.0;
    }
}

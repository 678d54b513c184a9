/* Engine-internal inline maths: an exp that the compiler can vectorise (glibc's expf
 * is a call per value and dominated the cost of SiLU, GroupNorm+SiLU and softmax), and
 * float sums accumulated in double with fixed lanes, so they vectorise and give the
 * same bits whatever the thread count. Not part of the engine's public API. */
#ifndef D2C_ENGINE_VECMATH_H
#define D2C_ENGINE_VECMATH_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* exp(x) for float, Cephes' range reduction and degree-6 polynomial: within 2 ulp of
 * expf over the clamped range [-87, 88]; outside it saturates at exp(-87) ~ 1.6e-38 and
 * exp(88) ~ 1.7e38 instead of reaching 0 or inf; NaN gives NaN. Branch-free, so loops
 * vectorise. */
static inline float fast_expf(float x_in) {
    /* the comparisons are written so that a NaN is clamped to -87 (converting a NaN to
     * int32_t below would be undefined behaviour); the NaN is returned at the end */
    float x = x_in > -87.0f ? x_in : -87.0f;
    x = x < 88.0f ? x : 88.0f;
    /* n = round(x / ln 2) by the 1.5 * 2^23 trick (round to nearest even) */
    float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    float r = x - n * 0.693359375f;  /* ln 2 split in two for an exact product */
    r = r + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    int32_t bits = ((int32_t)n + 127) << 23; /* 2^n, n in [-126, 127] */
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return x_in == x_in ? p * scale : x_in;
}

static inline float sigmoidf(float x) { return 1.0f / (1.0f + fast_expf(-x)); }

/* sum x[i] in double, eight independent partial sums added in a fixed order. */
static inline double sum_f64(const float *x, size_t n) {
    double lane[8] = {0};
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int l = 0; l < 8; l++) lane[l] += (double)x[i + l];
    double s = 0;
    for (; i < n; i++) s += (double)x[i];
    for (int l = 0; l < 8; l++) s += lane[l];
    return s;
}

/* sum x[i] y[i] in double, same lanes. */
static inline double dot_f64(const float *x, const float *y, size_t n) {
    double lane[8] = {0};
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int l = 0; l < 8; l++) lane[l] += (double)x[i + l] * (double)y[i + l];
    double s = 0;
    for (; i < n; i++) s += (double)x[i] * (double)y[i];
    for (int l = 0; l < 8; l++) s += lane[l];
    return s;
}

/* sum (x[i] - c)^2 in double, same lanes. */
static inline double sum_sq_dev_f64(const float *x, double c, size_t n) {
    double lane[8] = {0};
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int l = 0; l < 8; l++) {
            double d = (double)x[i + l] - c;
            lane[l] += d * d;
        }
    double s = 0;
    for (; i < n; i++) s += ((double)x[i] - c) * ((double)x[i] - c);
    for (int l = 0; l < 8; l++) s += lane[l];
    return s;
}

#endif

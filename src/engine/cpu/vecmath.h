/* Engine-internal inline maths: an exp that the compiler can vectorise (glibc's expf
 * is a call per value and dominated the cost of SiLU, GroupNorm+SiLU and softmax), and
 * float sums accumulated in double with fixed lanes, so they vectorise and give the
 * same bits whatever the thread count. The CPU engine is compiled with
 * -ffp-contract=fast (CMakeLists.txt), so a * b + c is one FMA where the CPU has one.
 * Not part of the engine's public API. */
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

/* Float sums in double: VEC_LANES independent partial sums (lane l takes x[i] with
 * i % VEC_LANES == l, the tail included), then added pairwise in a fixed tree. Enough
 * lanes that the additions are not one dependency chain (32 doubles: four 512-bit
 * accumulators); the order depends only on n, so the bits do not depend on threads. */
#define VEC_LANES 32

static inline double lanes_total(double *lane) {
    for (int w = VEC_LANES / 2; w > 0; w /= 2)
        for (int l = 0; l < w; l++) lane[l] += lane[l + w];
    return lane[0];
}

/* sum x[i] */
static inline double sum_f64(const float *x, size_t n) {
    double lane[VEC_LANES] = {0};
    size_t i = 0;
    for (; i + VEC_LANES <= n; i += VEC_LANES)
        for (int l = 0; l < VEC_LANES; l++) lane[l] += (double)x[i + l];
    for (int l = 0; i + l < n; l++) lane[l] += (double)x[i + l];
    return lanes_total(lane);
}

/* sum x[i] y[i] */
static inline double dot_f64(const float *x, const float *y, size_t n) {
    double lane[VEC_LANES] = {0};
    size_t i = 0;
    for (; i + VEC_LANES <= n; i += VEC_LANES)
        for (int l = 0; l < VEC_LANES; l++) lane[l] += (double)x[i + l] * (double)y[i + l];
    for (int l = 0; i + l < n; l++) lane[l] += (double)x[i + l] * (double)y[i + l];
    return lanes_total(lane);
}

/* sum (x[i] - c)^2 */
static inline double sum_sq_dev_f64(const float *x, double c, size_t n) {
    double lane[VEC_LANES] = {0};
    size_t i = 0;
    for (; i + VEC_LANES <= n; i += VEC_LANES)
        for (int l = 0; l < VEC_LANES; l++) {
            double d = (double)x[i + l] - c;
            lane[l] += d * d;
        }
    for (int l = 0; i + l < n; l++) lane[l] += ((double)x[i + l] - c) * ((double)x[i + l] - c);
    return lanes_total(lane);
}

#endif

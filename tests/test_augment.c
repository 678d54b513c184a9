/* DSA augmentation (src/condense/augment.c): augment_backward is the adjoint of the
 * linear part of augment_forward. A is affine (the brightness offset), so with
 * L x = A(x) - A(0) the identity <L x, y> = <x, A^T y> must hold for every x, y. It is
 * checked in double sums (three probes, see adjoint_error) for random draws
 * (augment_draw) and hand-picked parameters (flip on and off, cutouts overhanging an
 * edge, zoom in and out, no cutout), for C = 1 and C = 3 and square and non-square
 * images, to a relative tolerance of 1e-5 of |L x| |y| (measured: 2e-8 at worst). Then
 * the same check must FAIL (error > 1e-3) for wrong adjoints: the backward pass of
 * perturbed parameters (angle, shift, scale, flip) or with a stage left out (contrast,
 * saturation, cutout). Also: identity parameters give the identity, and
 * augment_backward accumulates (+=). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "condense/augment.h"
#include "core/rng.h"
#include "core/util.h"
#include "testing.h"
#include "engine/backend.h"

#define TOL 1e-5

static double dot(const float *a, const float *b, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)a[i] * b[i];
    return s;
}

/* Relative adjoint mismatch |<L x, y> - <x, B^T y>| / (|L x| |y|), with L from `fwd` and
 * the transpose B^T taken with `bwd` (the same parameters for a correct adjoint); the
 * largest over three probes: x, y random (any pair); y = L x; x = B^T y with y random.
 * For random pairs a wrong transpose shows only as an error shrunk by about 1/sqrt(n);
 * with y = L x (then <L x, y> = |L x|^2) or x = B^T y it shows as an O(1) error (the
 * third probe is the one that sees a cutout left out, where L x is zero anyway). */
static double adjoint_error(const AugmentParams *fwd, const AugmentParams *bwd, int B, int C, int H, int W,
                            uint64_t seed) {
    const size_t n = (size_t)B * C * H * W;
    float *x = xmalloc_floats(n), *y = xmalloc_floats(n), *ax = xmalloc_floats(n), *a0 = xmalloc_floats(n);
    float *zero = xcalloc(n, sizeof(float)), *aty = xmalloc_floats(n), *y0 = xmalloc_floats(n);
    Rng r = rng_stream(seed, RNG_EVAL, 77);
    rng_fill_normal(&r, x, n);
    rng_fill_normal(&r, y0, n);
    augment_forward(fwd, zero, a0, B, C, H, W);
    double worst = 0;
    for (int probe = 0; probe < 3; probe++) {
        memcpy(y, y0, n * sizeof(float));
        if (probe == 2) { /* x = B^T y */
            memset(x, 0, n * sizeof(float));
            augment_backward(bwd, y, x, B, C, H, W);
        }
        augment_forward(fwd, x, ax, B, C, H, W);
        for (size_t i = 0; i < n; i++) ax[i] -= a0[i];
        if (probe == 1) memcpy(y, ax, n * sizeof(float));
        memset(aty, 0, n * sizeof(float));
        augment_backward(bwd, y, aty, B, C, H, W);
        const double lhs = dot(ax, y, n), rhs = dot(x, aty, n);
        const double scale = sqrt(dot(ax, ax, n)) * sqrt(dot(y, y, n));
        const double err = fabs(lhs - rhs) / (scale > 0 ? scale : 1e-30);
        if (!(err <= worst)) worst = err; /* NaN propagates */
    }
    free(x); free(y); free(y0); free(ax); free(a0); free(zero); free(aty);
    return worst;
}

static void describe(char *buf, size_t size, const AugmentParams *a) {
    snprintf(buf, size, "b=%+.2f s=%.2f c=%.2f flip=%d scale=%.2f angle=%+.3f shift=(%+.2f,%+.2f) cut=(%d,%d,%d)",
             a->brightness, a->saturation, a->contrast, a->flip, a->scale, a->angle, a->shift_x, a->shift_y, a->cut_x,
             a->cut_y, a->cut_size);
}

static void check_adjoint(const AugmentParams *a, int B, int C, int H, int W, uint64_t seed) {
    double err = adjoint_error(a, a, B, C, H, W, seed);
    char d[256];
    describe(d, sizeof d, a);
    int ok = isfinite(err) && err <= TOL;
    printf("%-4s adjoint C=%d %dx%d %s: %.2e (<= %.0e)\n", ok ? "ok" : "FAIL", C, H, W, d, err, TOL);
    CHECK(ok);
}

/* A wrong adjoint (backward with parameters `wrong`) must be detected. */
static void check_detects(const char *what, const AugmentParams *a, const AugmentParams *wrong, int C, int H, int W) {
    double err = adjoint_error(a, wrong, 2, C, H, W, 5);
    int ok = isfinite(err) && err > 100 * TOL;
    printf("%-4s wrong adjoint (%s) C=%d detected: %.2e (> %.0e)\n", ok ? "ok" : "FAIL", what, C, err, 100 * TOL);
    CHECK(ok);
}

static AugmentParams fixed(int flip, int H, int W) {
    AugmentParams a;
    a.brightness = 0.3f;
    a.saturation = 1.7f;
    a.contrast = 0.6f;
    a.flip = flip;
    a.scale = flip ? 1.15f : 0.85f;
    a.angle = flip ? 0.21f : -0.17f;
    a.shift_x = flip ? -2.4f : 1.3f;
    a.shift_y = flip ? 1.6f : -3.1f;
    a.cut_size = H / 2;
    a.cut_x = flip ? -3 : W - 5;  /* overhanging the left / right edge */
    a.cut_y = flip ? H - 6 : -2;  /* and the bottom / top edge */
    return a;
}

int main(void) {
    engine_set_num_threads(1);
    const int shapes[][3] = {{1, 28, 28}, {3, 32, 32}, {1, 12, 17}, {3, 17, 12}};
    for (int s = 0; s < 4; s++) {
        const int C = shapes[s][0], H = shapes[s][1], W = shapes[s][2];
        /* random draws with DSA's ranges */
        for (int k = 0; k < 6; k++) {
            Rng r = rng_stream(1234 + s, RNG_EVAL, (uint64_t)k);
            AugmentParams a = augment_draw(&r, H, W);
            check_adjoint(&a, 3, C, H, W, 100 + k);
        }
        /* hand-picked: both flips, overhanging cutouts, zoom in and out, no cutout */
        for (int flip = 0; flip < 2; flip++) {
            AugmentParams a = fixed(flip, H, W);
            check_adjoint(&a, 2, C, H, W, 7);
            a.cut_size = 0;
            check_adjoint(&a, 2, C, H, W, 8);
        }
    }

    /* identity parameters: A(x) = x */
    {
        AugmentParams id = {0, 1, 1, 0, 1, 0, 0, 0, 0, 0, 0};
        const int C = 3, H = 9, W = 11;
        const size_t n = (size_t)2 * C * H * W;
        float *x = xmalloc_floats(n), *y = xmalloc_floats(n);
        Rng r = rng_stream(3, RNG_EVAL, 0);
        rng_fill_normal(&r, x, n);
        augment_forward(&id, x, y, 2, C, H, W);
        check_close("identity parameters: A(x) = x", y, x, n, 1e-6);
        /* backward accumulates: dx = x + A^T(y) = x + y for the identity */
        float *dx = xmalloc_floats(n), *want = xmalloc_floats(n);
        memcpy(dx, x, n * sizeof(float));
        rng_fill_normal(&r, y, n);
        for (size_t i = 0; i < n; i++) want[i] = x[i] + y[i];
        augment_backward(&id, y, dx, 2, C, H, W);
        check_close("augment_backward accumulates (+=)", dx, want, n, 1e-6);
        free(x); free(y); free(dx); free(want);
    }

    /* wrong adjoints are caught */
    for (int C = 1; C <= 3; C += 2) {
        const int H = 28, W = 28;
        const AugmentParams a = fixed(1, H, W);
        AugmentParams w;
        w = a, w.angle += 0.05f;
        check_detects("angle + 0.05", &a, &w, C, H, W);
        w = a, w.shift_x += 0.5f;
        check_detects("shift_x + 0.5", &a, &w, C, H, W);
        w = a, w.scale *= 1.05f;
        check_detects("scale * 1.05", &a, &w, C, H, W);
        w = a, w.flip = !a.flip;
        check_detects("flip toggled", &a, &w, C, H, W);
        w = a, w.contrast = 1.0f;
        check_detects("contrast adjoint left out", &a, &w, C, H, W);
        w = a, w.cut_size = 0;
        check_detects("cutout left out", &a, &w, C, H, W);
        if (C > 1) {
            w = a, w.saturation = 1.0f;
            check_detects("saturation adjoint left out", &a, &w, C, H, W);
        }
    }
    return test_finish();
}

/* The distribution-matching selections (src/condense/kherding.c, gadc.c, facility.c) and
 * their PCA feature space (features.c), on synthetic data:
 *
 * 1. PCA against an independent computation: data with a known, well separated spectrum
 *    (random orthonormal directions, variances 9, 7, 5, 3.5, 2, then 0.05); the test
 *    builds the covariance itself in double and diagonalises it with LAPACKE_dsyev (the QR
 *    driver, not ssyevr): eigenvalues agree to 1e-3 relative, each component is parallel
 *    to dsyev's eigenvector (|cos| > 0.9999), the basis is orthonormal, the projection
 *    equals (x - mean) . v computed here, and total_variance is the covariance's trace.
 * 2. Per-class cores on a Gaussian mixture (three modes of unequal weight): the kherding
 *    subset's squared MMD to its class (computed here, naively in double) and the gadc
 *    subset's moment distance (also computed here) are below those of every one of 10
 *    random subsets; the library's objectives equal the naive ones; the swap refinement
 *    does not raise gadc's objective over its greedy start.
 * 3. Against brute force on a small class: kherding's picks equal the greedy that
 *    evaluates the MMD of every candidate set directly; gadc's greedy start (0 passes)
 *    equals the brute-force greedy of the objective, and after refinement no single swap
 *    lowers the objective (checked by recomputing it for every swap), so the O(d) swap
 *    scores of gadc.c are the exact changes.
 * 4. Determinism: the same picks twice and with 1 and 2 threads; whole-data-set runs
 *    (select_kherding, select_gadc, select_facility) give ipc distinct images of the right
 *    class, the same indices for the same seed, an objective below the random subset's, and
 *    D2C_ERR_INPUT for a bad --pca-dim or a class smaller than ipc.
 * 5. Facility location against brute force: the lazy greedy's picks equal the plain greedy
 *    that evaluates F(S + {i}) = sum_j max_{s in S + {i}} k(x_j, s) for every candidate in
 *    double with the naive kernel; its F is monotone along the picks with non-increasing
 *    gains (submodularity), equals the naive F of every prefix, is within (1 - 1/e) of the
 *    best subset found by enumerating all of them (a tiny problem), and beats every one of
 *    10 random subsets; the same picks with 1 and 2 threads. The blend with kherding's MMD
 *    (mmd_weight w > 0) equals the plain greedy of (1 - F(S)/n) + w MMD^2(S) computed
 *    naively, and on the synthetic data set a weight of 10 lowers the MMD. */
#include <lapacke.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "condense/distmatch.h"
#include "condense/features.h"
#include "core/rng.h"
#include "core/status.h"
#include "core/util.h"
#include "testing.h"

/* ---------------------------------------------------------------- synthetic data */

/* n points in d dimensions: a mixture of three Gaussian modes (weights 0.6, 0.3, 0.1). */
static float *mixture(int n, int d, uint64_t seed) {
    float *f = xmalloc_floats((size_t)n * d);
    Rng r = rng_stream(seed, RNG_EVAL, 77);
    float centres[3][64];
    for (int c = 0; c < 3; c++)
        for (int j = 0; j < d; j++) centres[c][j] = 3.0f * rng_normal(&r);
    for (int i = 0; i < n; i++) {
        const float u = rng_uniform(&r);
        const int c = u < 0.6f ? 0 : u < 0.9f ? 1 : 2;
        for (int j = 0; j < d; j++) f[(size_t)i * d + j] = centres[c][j] + (j % 2 ? 0.5f : 1.5f) * rng_normal(&r);
    }
    return f;
}

static void random_subset(int n, int m, uint64_t seed, int *pick) {
    int *perm = xcalloc((size_t)n, sizeof(int));
    for (int i = 0; i < n; i++) perm[i] = i;
    Rng r = rng_stream(seed, RNG_BATCH, 5);
    rng_shuffle(&r, perm, n);
    memcpy(pick, perm, (size_t)m * sizeof(int));
    free(perm);
}

/* ---------------------------------------------------------------- naive objectives */

static double kern(const float *a, const float *b, int d, double gamma) {
    double s = 0;
    for (int j = 0; j < d; j++) s += ((double)a[j] - b[j]) * ((double)a[j] - b[j]);
    return exp(-gamma * s);
}

static double naive_mmd2(const float *f, int n, int d, double gamma, const int *pick, int m) {
    double ss = 0, sp = 0, pp = 0;
    for (int a = 0; a < m; a++)
        for (int b = 0; b < m; b++) ss += kern(f + (size_t)pick[a] * d, f + (size_t)pick[b] * d, d, gamma);
    for (int a = 0; a < m; a++)
        for (int i = 0; i < n; i++) sp += kern(f + (size_t)pick[a] * d, f + (size_t)i * d, d, gamma);
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) pp += kern(f + (size_t)i * d, f + (size_t)j * d, d, gamma);
    return ss / ((double)m * m) - 2 * sp / ((double)m * n) + pp / ((double)n * n);
}

/* |mu_S - mu|^2 + lambda / tr(Sigma) |Sigma_S - Sigma|_F^2, 1/n covariances. */
static double naive_moments(const float *f, int n, int d, const int *pick, int m, double lambda) {
    double mu[64] = {0}, ms[64] = {0}, sig[64][64] = {{0}}, ss[64][64] = {{0}};
    for (int i = 0; i < n; i++)
        for (int j = 0; j < d; j++) mu[j] += f[(size_t)i * d + j] / (double)n;
    for (int t = 0; t < m; t++)
        for (int j = 0; j < d; j++) ms[j] += f[(size_t)pick[t] * d + j] / (double)m;
    for (int i = 0; i < n; i++)
        for (int a = 0; a < d; a++)
            for (int b = 0; b < d; b++) sig[a][b] += (f[(size_t)i * d + a] - mu[a]) * (f[(size_t)i * d + b] - mu[b]) / n;
    for (int t = 0; t < m; t++)
        for (int a = 0; a < d; a++)
            for (int b = 0; b < d; b++)
                ss[a][b] += (f[(size_t)pick[t] * d + a] - ms[a]) * (f[(size_t)pick[t] * d + b] - ms[b]) / m;
    double tr = 0, mean = 0, cov = 0;
    for (int a = 0; a < d; a++) {
        tr += sig[a][a];
        mean += (ms[a] - mu[a]) * (ms[a] - mu[a]);
        for (int b = 0; b < d; b++) cov += (ss[a][b] - sig[a][b]) * (ss[a][b] - sig[a][b]);
    }
    return mean + lambda / tr * cov;
}

static int same_picks(const int *a, const int *b, int m) { return memcmp(a, b, (size_t)m * sizeof(int)) == 0; }

/* ---------------------------------------------------------------- 1. PCA */

static void test_pca(void) {
    enum { N = 3000, D = 24, K = 5 };
    const double var[K] = {9, 7, 5, 3.5, 2};
    Rng r = rng_stream(11, RNG_EVAL, 1);
    /* K orthonormal directions by Gram-Schmidt of random vectors */
    double dir[K][D];
    for (int k = 0; k < K; k++) {
        for (int j = 0; j < D; j++) dir[k][j] = rng_normal(&r);
        for (int q = 0; q < k; q++) {
            double p = 0;
            for (int j = 0; j < D; j++) p += dir[k][j] * dir[q][j];
            for (int j = 0; j < D; j++) dir[k][j] -= p * dir[q][j];
        }
        double nn = 0;
        for (int j = 0; j < D; j++) nn += dir[k][j] * dir[k][j];
        for (int j = 0; j < D; j++) dir[k][j] /= sqrt(nn);
    }
    float *x = xmalloc_floats((size_t)N * D);
    for (int i = 0; i < N; i++) {
        for (int j = 0; j < D; j++) x[(size_t)i * D + j] = 0.4f + 0.05f * (float)j + sqrtf(0.05f) * rng_normal(&r);
        for (int k = 0; k < K; k++) {
            const double z = sqrt(var[k]) * rng_normal(&r);
            for (int j = 0; j < D; j++) x[(size_t)i * D + j] += (float)(z * dir[k][j]);
        }
    }
    Pca p;
    test_require_ok(pca_fit(&p, x, N, D, K));
    /* the reference: covariance in double by direct sums, dsyev */
    double mean[D] = {0}, *cov = xcalloc((size_t)D * D, sizeof(double)), w[D];
    for (int i = 0; i < N; i++)
        for (int j = 0; j < D; j++) mean[j] += x[(size_t)i * D + j] / (double)N;
    for (int i = 0; i < N; i++)
        for (int a = 0; a < D; a++)
            for (int b = 0; b < D; b++)
                cov[a * D + b] += (x[(size_t)i * D + a] - mean[a]) * (x[(size_t)i * D + b] - mean[b]) / N;
    double trace = 0;
    for (int a = 0; a < D; a++) trace += cov[a * D + a];
    CHECK(fabs(p.total_variance - trace) < 1e-4 * trace);
    CHECK(LAPACKE_dsyev(LAPACK_ROW_MAJOR, 'V', 'U', D, cov, D, w) == 0); /* ascending; columns of cov */
    double worst_val = 0, worst_cos = 1, worst_orth = 0, worst_mean = 0;
    for (int k = 0; k < K; k++) {
        const double ref = w[D - 1 - k];
        worst_val = fmax(worst_val, fabs(p.eigenvalues[k] - ref) / ref);
        double c = 0;
        for (int j = 0; j < D; j++) c += p.basis[(size_t)k * D + j] * cov[j * D + (D - 1 - k)];
        worst_cos = fmin(worst_cos, fabs(c));
        for (int q = 0; q < K; q++) {
            double g = 0;
            for (int j = 0; j < D; j++) g += (double)p.basis[(size_t)k * D + j] * p.basis[(size_t)q * D + j];
            worst_orth = fmax(worst_orth, fabs(g - (k == q)));
        }
        worst_mean = fmax(worst_mean, fabs(p.mean[k] - mean[k]));
    }
    printf("PCA: eigenvalues %.4f %.4f %.4f %.4f %.4f (planted 9 7 5 3.5 2 + 0.05)\n", p.eigenvalues[0], p.eigenvalues[1],
           p.eigenvalues[2], p.eigenvalues[3], p.eigenvalues[4]);
    printf("PCA vs dsyev: eigenvalue rel err %.2e, min |cos| %.7f, orthonormality %.2e, mean %.2e\n", worst_val, worst_cos,
           worst_orth, worst_mean);
    CHECK(worst_val < 1e-3);
    CHECK(worst_cos > 0.9999);
    CHECK(worst_orth < 1e-5);
    CHECK(worst_mean < 1e-5);
    for (int k = 0; k < K; k++) CHECK(fabs(p.eigenvalues[k] - (var[k] + 0.05)) < 0.15 * var[k]); /* sampling noise */
    /* projection */
    float *f = xmalloc_floats((size_t)N * K);
    pca_project(&p, x, N, f);
    double worst_proj = 0;
    for (int i = 0; i < N; i += 37)
        for (int k = 0; k < K; k++) {
            double s = 0;
            for (int j = 0; j < D; j++) s += (x[(size_t)i * D + j] - mean[j]) * p.basis[(size_t)k * D + j];
            worst_proj = fmax(worst_proj, fabs(s - f[(size_t)i * K + k]));
        }
    printf("PCA projection: max abs err %.2e\n", worst_proj);
    CHECK(worst_proj < 1e-4);
    pca_free(&p);
    /* bad input */
    CHECK(pca_fit(&p, x, N, D, 0) == D2C_ERR_INPUT && strstr(d2c_last_error(), "--pca-dim"));
    CHECK(pca_fit(&p, x, N, D, D + 1) == D2C_ERR_INPUT && strstr(d2c_last_error(), "--pca-dim"));
    CHECK(pca_fit(&p, x, 1, D, 2) == D2C_ERR_INPUT);
    free(x), free(f), free(cov);
}

/* ---------------------------------------------------------------- 2. beats random */

static void test_beats_random(void) {
    enum { N = 800, D = 6, M = 20, TRIALS = 10 };
    float *f = mixture(N, D, 3);
    const double gamma = 1.0 / (2.0 * kherding_median_sq_distance(f, N, D));
    double *mk = xcalloc(N, sizeof(double));
    kherding_mean_kernel(f, N, D, gamma, mk);
    int kh[M], ga[M], ga0[M], rnd[M];
    kherding_select(f, N, D, gamma, mk, M, kh);
    const double kh_mmd = naive_mmd2(f, N, D, gamma, kh, M);
    CHECK(fabs(kherding_mmd2(f, N, D, gamma, mk, kh, M) - kh_mmd) < 1e-4 * fabs(kh_mmd) + 1e-7);
    long swaps = 0;
    int passes = 0;
    gadc_select(f, N, D, M, 1.0, 5, ga, &swaps, &passes);
    gadc_select(f, N, D, M, 1.0, 0, ga0, NULL, NULL);
    const double ga_obj = naive_moments(f, N, D, ga, M, 1.0), ga0_obj = naive_moments(f, N, D, ga0, M, 1.0);
    CHECK(fabs(gadc_objective(f, N, D, ga, M, 1.0) - ga_obj) < 1e-6 * ga_obj);
    CHECK(ga_obj <= ga0_obj);
    double best_kh = INFINITY, best_ga = INFINITY;
    for (int t = 0; t < TRIALS; t++) {
        random_subset(N, M, 100 + t, rnd);
        best_kh = fmin(best_kh, naive_mmd2(f, N, D, gamma, rnd, M));
        best_ga = fmin(best_ga, naive_moments(f, N, D, rnd, M, 1.0));
    }
    printf("mixture, %d of %d: kherding MMD^2 %.3g, best of %d random %.3g; gadc objective %.3g (greedy %.3g, %ld swaps, "
           "%d passes), best random %.3g\n", M, N, kh_mmd, TRIALS, best_kh, ga_obj, ga0_obj, swaps, passes, best_ga);
    CHECK(kh_mmd < best_kh);
    CHECK(ga_obj < best_ga);
    CHECK(swaps > 0);
    /* determinism: again, and on one thread */
    int again[M];
    kherding_select(f, N, D, gamma, mk, M, again);
    CHECK(same_picks(kh, again, M));
    gadc_select(f, N, D, M, 1.0, 5, again, NULL, NULL);
    CHECK(same_picks(ga, again, M));
    const int threads = omp_get_max_threads();
    omp_set_num_threads(1);
    double *mk1 = xcalloc(N, sizeof(double));
    kherding_mean_kernel(f, N, D, gamma, mk1);
    kherding_select(f, N, D, gamma, mk1, M, again);
    CHECK(same_picks(kh, again, M));
    gadc_select(f, N, D, M, 1.0, 5, again, NULL, NULL);
    CHECK(same_picks(ga, again, M));
    omp_set_num_threads(threads);
    free(mk), free(mk1), free(f);
}

/* ---------------------------------------------------------------- 3. brute force */

static void test_brute_force(void) {
    enum { N = 70, D = 3, M = 7 };
    float *f = mixture(N, D, 8);
    const double gamma = 1.0 / (2.0 * kherding_median_sq_distance(f, N, D));
    double *mk = xcalloc(N, sizeof(double));
    kherding_mean_kernel(f, N, D, gamma, mk);
    int kh[M], ref[M], cand[M];
    kherding_select(f, N, D, gamma, mk, M, kh);
    /* greedy by direct MMD of every grown set (and the same by the moment objective) */
    for (int obj = 0; obj < 2; obj++) {
        for (int t = 0; t < M; t++) {
            double best = INFINITY;
            for (int i = 0; i < N; i++) {
                int used = 0;
                for (int s = 0; s < t; s++) used |= ref[s] == i;
                if (used) continue;
                memcpy(cand, ref, sizeof(int) * t);
                cand[t] = i;
                const double v = obj == 0 ? naive_mmd2(f, N, D, gamma, cand, t + 1) : naive_moments(f, N, D, cand, t + 1, 1.0);
                if (v < best - 1e-12) best = v, ref[t] = i;
            }
        }
        if (obj == 0) {
            CHECK(same_picks(kh, ref, M));
        } else {
            int g0[M];
            gadc_select(f, N, D, M, 1.0, 0, g0, NULL, NULL);
            CHECK(same_picks(g0, ref, M));
        }
    }
    /* after refinement to convergence no single swap lowers the objective; lambda 30
     * makes the covariance term (the intricate part of the swap score) dominate */
    const double lambdas[2] = {1, 30};
    for (int l = 0; l < 2; l++) {
        int ga[M];
        int passes = 0;
        gadc_select(f, N, D, M, lambdas[l], 1000, ga, NULL, &passes);
        const double J = naive_moments(f, N, D, ga, M, lambdas[l]);
        double best_swap = INFINITY;
        for (int s = 0; s < M; s++)
            for (int i = 0; i < N; i++) {
                int used = 0;
                for (int q = 0; q < M; q++) used |= ga[q] == i;
                if (used) continue;
                memcpy(cand, ga, sizeof cand);
                cand[s] = i;
                best_swap = fmin(best_swap, naive_moments(f, N, D, cand, M, lambdas[l]));
            }
        printf("brute force, %d of %d, lambda %g: gadc objective %.6g after %d passes, best single swap %.6g\n", M, N,
               lambdas[l], J, passes, best_swap);
        CHECK(passes < 1000);
        CHECK(best_swap >= J * (1 - 1e-9));
    }
    free(mk), free(f);
}

/* ---------------------------------------------------------------- 5. facility location */

/* F(S) = sum_j max_{s in S} k(x_j, s), naive, in double. */
static double naive_facility(const float *f, int n, int d, double gamma, const int *pick, int m) {
    double v = 0;
    for (int j = 0; j < n; j++) {
        double c = 0;
        for (int s = 0; s < m; s++) c = fmax(c, kern(f + (size_t)j * d, f + (size_t)pick[s] * d, d, gamma));
        v += c;
    }
    return v;
}

/* The plain greedy of a set score, as the reference of the selections: m steps, each adding
 * the unused index of 0..n-1 whose set (ref[0..t] with it) scores strictly best (highest,
 * or lowest with minimise), so ties go to the lowest index. */
typedef double (*SetScore)(const void *ctx, const int *pick, int m);
static void naive_greedy(int n, int m, SetScore score, const void *ctx, int minimise, int *ref) {
    for (int t = 0; t < m; t++) {
        double best = minimise ? INFINITY : -INFINITY;
        int arg = -1;
        for (int i = 0; i < n; i++) {
            int used = 0;
            for (int s = 0; s < t; s++) used |= ref[s] == i;
            if (used) continue;
            ref[t] = i;
            const double v = score(ctx, ref, t + 1);
            if (minimise ? v < best : v > best) best = v, arg = i;
        }
        ref[t] = arg;
    }
}

typedef struct {
    const float *f;
    int n, d;
    double gamma, w; /* w: the blend's MMD weight */
    const float *K;  /* for kernel_facility */
} ScoreCtx;

static double facility_score(const void *ctx, const int *pick, int m) {
    const ScoreCtx *c = ctx;
    return naive_facility(c->f, c->n, c->d, c->gamma, pick, m);
}

static double blend_score(const void *ctx, const int *pick, int m) {
    const ScoreCtx *c = ctx;
    return 1 - naive_facility(c->f, c->n, c->d, c->gamma, pick, m) / c->n + c->w * naive_mmd2(c->f, c->n, c->d, c->gamma, pick, m);
}

static double kernel_facility(const void *ctx, const int *pick, int m) {
    const ScoreCtx *c = ctx;
    return facility_value(c->K, c->n, pick, m);
}

/* Facility's lazy greedy against the plain greedy on the naive objective, and its value
 * along the picks, on n points of the mixture with bandwidth bw (of the median). */
static void facility_against_greedy(int n, int d, int m, double bw, uint64_t seed) {
    float *f = mixture(n, d, seed);
    const double gamma = kherding_gamma(f, n, d, bw, NULL);
    float *K = xmalloc_floats((size_t)n * n);
    facility_kernel(f, n, d, gamma, K);
    int *pick = xcalloc((size_t)m, sizeof(int)), *ref = xcalloc((size_t)m, sizeof(int));
    double *value = xcalloc((size_t)m, sizeof(double));
    const long evals = facility_select(K, n, m, pick, value);
    const ScoreCtx ctx = {.f = f, .n = n, .d = d, .gamma = gamma};
    naive_greedy(n, m, facility_score, &ctx, 0, ref);
    int monotone = 1, concave = 1, prefix = 1;
    for (int t = 0; t < m; t++) {
        const double naive = naive_facility(f, n, d, gamma, pick, t + 1);
        prefix &= fabs(naive - value[t]) < 1e-4 * naive;
        if (t > 0) monotone &= value[t] >= value[t - 1];
        if (t > 1) concave &= value[t] - value[t - 1] <= value[t - 1] - value[t - 2] + 1e-6 * value[t];
    }
    printf("facility, %d of %d, bandwidth %g: F %.6g (F/n %.4f), %ld gain evaluations (plain greedy: %ld)\n", m, n,
           bw, value[m - 1], value[m - 1] / n, evals, (long)n * m);
    CHECK(same_picks(pick, ref, m));
    CHECK(monotone);
    CHECK(concave);
    CHECK(prefix);
    CHECK(fabs(facility_value(K, n, pick, m) - value[m - 1] / n) < 1e-6);
    /* determinism: one thread */
    const int threads = omp_get_max_threads();
    omp_set_num_threads(1);
    int *again = xcalloc((size_t)m, sizeof(int));
    facility_select(K, n, m, again, NULL);
    CHECK(same_picks(pick, again, m));
    omp_set_num_threads(threads);
    free(again), free(pick), free(ref), free(value), free(K), free(f);
}

/* The blend against the plain greedy of its objective computed naively. */
static void facility_mmd_against_greedy(int n, int d, int m, double bw, double w, uint64_t seed) {
    float *f = mixture(n, d, seed);
    const double gamma = kherding_gamma(f, n, d, bw, NULL);
    float *K = xmalloc_floats((size_t)n * n);
    facility_kernel(f, n, d, gamma, K);
    double *mk = xcalloc((size_t)n, sizeof(double)), *value = xcalloc((size_t)m, sizeof(double));
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < n; j++) mk[i] += K[(size_t)i * n + j];
        mk[i] /= n;
    }
    int *pick = xcalloc((size_t)m, sizeof(int)), *ref = xcalloc((size_t)m, sizeof(int)), *alone = xcalloc((size_t)m, sizeof(int));
    facility_mmd_select(K, n, m, mk, w, pick, value);
    const ScoreCtx ctx = {.f = f, .n = n, .d = d, .gamma = gamma, .w = w};
    naive_greedy(n, m, blend_score, &ctx, 1, ref);
    facility_select(K, n, m, alone, NULL);
    const double mmd = naive_mmd2(f, n, d, gamma, pick, m), mmd_alone = naive_mmd2(f, n, d, gamma, alone, m);
    printf("facility + %g x MMD^2, %d of %d: F/n %.4f, MMD^2 %.4g (facility alone: MMD^2 %.4g)\n", w, m, n,
           value[m - 1] / n, mmd, mmd_alone);
    CHECK(same_picks(pick, ref, m));
    CHECK(fabs(naive_facility(f, n, d, gamma, pick, m) - value[m - 1]) < 1e-4 * value[m - 1]);
    CHECK(mmd < mmd_alone);
    free(alone), free(pick), free(ref), free(value), free(mk), free(K), free(f);
}

static void test_facility(void) {
    facility_against_greedy(60, 3, 6, 1.0, 21);
    facility_against_greedy(90, 5, 9, 0.3, 22);
    facility_mmd_against_greedy(60, 3, 8, 0.5, 3.0, 23);
    facility_mmd_against_greedy(70, 4, 7, 1.0, 30.0, 24);
    /* the (1 - 1/e) guarantee against the best of all C(14, 3) subsets */
    {
        enum { N = 14, D = 2, M = 3 };
        float *f = mixture(N, D, 9);
        const double gamma = kherding_gamma(f, N, D, 0.5, NULL);
        float K[N * N];
        facility_kernel(f, N, D, gamma, K);
        int pick[M], sub[M];
        double value[M], opt = 0;
        facility_select(K, N, M, pick, value);
        for (sub[0] = 0; sub[0] < N; sub[0]++)
            for (sub[1] = sub[0] + 1; sub[1] < N; sub[1]++)
                for (sub[2] = sub[1] + 1; sub[2] < N; sub[2]++) opt = fmax(opt, naive_facility(f, N, D, gamma, sub, M));
        printf("facility, %d of %d: greedy F %.6g, best subset %.6g (ratio %.4f, bound %.4f)\n", M, N, value[M - 1], opt,
               value[M - 1] / opt, 1 - exp(-1.0));
        CHECK(value[M - 1] <= opt * (1 + 1e-6));
        CHECK(value[M - 1] >= (1 - exp(-1.0)) * opt);
        free(f);
    }
    /* exact ties (every point twice: equal kernel rows, equal gains) go to the lowest index,
     * as in a plain greedy over facility_value with a strict comparison */
    {
        enum { H = 12, N = 2 * H, M = 6 };
        float *f = mixture(H, 2, 13), K[N * N];
        for (int i = 0; i < N; i++)
            for (int j = 0; j < N; j++) K[i * N + j] = (float)kern(f + (i % H) * 2, f + (j % H) * 2, 2, 0.4);
        int pick[M], ref[M];
        facility_select(K, N, M, pick, NULL);
        const ScoreCtx ctx = {.n = N, .K = K};
        naive_greedy(N, M, kernel_facility, &ctx, 0, ref);
        int low = 1;
        for (int t = 0; t < M; t++) low &= pick[t] < H; /* a duplicate's first copy is always the earlier */
        CHECK(same_picks(pick, ref, M));
        CHECK(low);
        free(f);
    }
    /* against random subsets */
    {
        enum { N = 800, D = 6, M = 20, TRIALS = 10 };
        float *f = mixture(N, D, 3);
        float *K = xmalloc_floats((size_t)N * N);
        int pick[M], rnd[M];
        const double gamma = kherding_gamma(f, N, D, 0.3, NULL);
        facility_kernel(f, N, D, gamma, K);
        facility_select(K, N, M, pick, NULL);
        const double fv = facility_value(K, N, pick, M);
        double best = 0;
        for (int t = 0; t < TRIALS; t++) {
            random_subset(N, M, 100 + t, rnd);
            best = fmax(best, facility_value(K, N, rnd, M));
        }
        printf("facility, %d of %d, bandwidth 0.3: F/n %.4f, best of %d random %.4f\n", M, N, fv, TRIALS, best);
        CHECK(fv > best);
        free(K), free(f);
    }
}

/* ---------------------------------------------------------------- 4. data sets */

static Dataset synthetic_dataset(int per_class, int classes) {
    Dataset d = {0};
    d.n = per_class * classes, d.c = 1, d.h = 6, d.w = 6, d.num_classes = classes;
    const int D = 36;
    d.images = xmalloc_floats((size_t)d.n * D);
    d.labels = xcalloc((size_t)d.n, sizeof(int64_t));
    d.source = xstrdup("synthetic");
    Rng r = rng_stream(5, RNG_EVAL, 3);
    for (int i = 0; i < d.n; i++) {
        const int k = (i * 7) % classes; /* interleaved classes */
        d.labels[i] = k;
        const float mode = rng_uniform(&r) < 0.7f ? 0.3f : -0.3f;
        for (int j = 0; j < D; j++) {
            const float v = mode * (float)((j + k) % 5 - 2) / 2 + 0.2f * rng_normal(&r);
            d.images[(size_t)i * D + j] = v < -1 ? -1 : v > 1 ? 1 : v;
        }
    }
    return d;
}

static void test_datasets(void) {
    enum { PER = 150, CLASSES = 3, IPC = 12 };
    Dataset d = synthetic_dataset(PER, CLASSES);
    ClassIndex ci = class_index_build(&d);
    DistMatchOptions o = {10, 1.0, 1.0, 5, 7, 0};
    int a[CLASSES * IPC], b[CLASSES * IPC];
    static const char *const names[3] = {"kherding", "gadc", "facility"};
    for (int method = 0; method < 3; method++) {
        DistMatchReport rep;
        int (*fn)(const Dataset *, const ClassIndex *, int, const DistMatchOptions *, int *, DistMatchReport *) =
            method == 2 ? select_facility : method ? select_gadc : select_kherding;
        test_require_ok(fn(&d, &ci, IPC, &o, a, &rep));
        int ok = 1;
        for (int k = 0; k < CLASSES; k++)
            for (int p = 0; p < IPC; p++) {
                const int i = a[k * IPC + p];
                ok &= i >= 0 && i < d.n && d.labels[i] == k;
                for (int q = 0; q < p; q++) ok &= a[k * IPC + q] != i;
            }
        printf("%s on the synthetic data set: objective %.4g, random subset %.4g, PCA keeps %.1f%%\n",
               names[method], rep.objective, rep.objective_random, 100 * rep.explained);
        CHECK(ok);
        CHECK(rep.objective < rep.objective_random);
        CHECK(rep.explained > 0 && rep.explained <= 1 + 1e-6);
        test_require_ok(fn(&d, &ci, IPC, &o, b, NULL));
        CHECK(same_picks(a, b, CLASSES * IPC));
        DistMatchOptions bad = o;
        bad.pca_dim = 37;
        CHECK(fn(&d, &ci, IPC, &bad, b, NULL) == D2C_ERR_INPUT && strstr(d2c_last_error(), "--pca-dim"));
        CHECK(fn(&d, &ci, PER + 1, &o, b, NULL) == D2C_ERR_INPUT && strstr(d2c_last_error(), "fewer than"));
        if (method == 2) {
            bad = o;
            bad.bandwidth = 0;
            CHECK(fn(&d, &ci, IPC, &bad, b, NULL) == D2C_ERR_INPUT && strstr(d2c_last_error(), "--bandwidth"));
            CHECK(rep.mmd2 > 0 && rep.mmd2_random > 0 && rep.evaluations >= CLASSES * PER);
            bad = o;
            bad.mmd_weight = -1;
            CHECK(fn(&d, &ci, IPC, &bad, b, NULL) == D2C_ERR_INPUT && strstr(d2c_last_error(), "--mmd-weight"));
            /* the blend: below its random subset, and a heavier MMD weight gives a lower MMD */
            DistMatchOptions blend = o;
            blend.mmd_weight = 10;
            DistMatchReport rb;
            test_require_ok(fn(&d, &ci, IPC, &blend, b, &rb));
            printf("facility + 10 x MMD^2 on the synthetic data set: objective %.4g (random %.4g), MMD^2 %.4g "
                   "(facility alone %.4g), 1 - F/n %.4g (alone %.4g)\n", rb.objective, rb.objective_random, rb.mmd2,
                   rep.mmd2, rb.coverage, rep.coverage);
            CHECK(rb.objective < rb.objective_random);
            CHECK(rb.mmd2 < rep.mmd2);
            CHECK(rb.coverage >= rep.coverage);
        }
    }
    class_index_free(&ci);
    dataset_free(&d);
}

int main(void) {
    test_pca();
    test_beats_random();
    test_brute_force();
    test_datasets();
    test_facility();
    return test_finish();
}

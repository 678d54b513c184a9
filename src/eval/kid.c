/* The kernel inception distance (KID; Binkowski et al. 2018): the unbiased MMD^2 between
 * real and fake features with the cubic polynomial kernel k(x, y) = (x.y / D + 1)^3,
 * averaged over random subsets, as torch-fidelity (kid_subsets = 100, kid_subset_size =
 * 1000, unbiased estimator, std with ddof 0) and clean-fid compute it. Unlike FID it is
 * unbiased in the number of samples, so it is the number to read below 10,000 samples.
 *
 * Every kernel sum is in double: MMD^2 is a small difference of sums of values near 1,
 * and float Gram matrices would lose its leading digits. Gram matrices come from dsyrk
 * (X X^T) and dgemm (X Y^T); the sums are per row, then over rows in order, so the result
 * does not depend on the thread count.
 *
 * Shapes: N real points, M fake points, D features, m the subset size. */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "core/util.h"
#include "eval/metrics.h"

KidOptions kid_default_options(void) {
    KidOptions o = {.n_subsets = KID_SUBSETS, .subset_size = 0, .seed = 0};
    return o;
}

void kid_subset_indices(uint64_t seed, int subset, int which, int n, int m, int *idx, int *scratch) {
    Rng r = rng_stream(seed, RNG_EVAL, (uint64_t)KID_STREAM + 2 * (uint64_t)subset + (uint64_t)which);
    for (int i = 0; i < n; i++) scratch[i] = i;
    for (int j = 0; j < m; j++) { /* partial Fisher-Yates: scratch[0..j] is the subset so far */
        int t = j + (int)rng_below(&r, (uint32_t)(n - j));
        int keep = scratch[j];
        scratch[j] = scratch[t];
        scratch[t] = keep;
        idx[j] = scratch[j];
    }
}

static inline double cubic(double dot, double inv_d) {
    double v = dot * inv_d + 1.0;
    return v * v * v;
}

/* Sum over i != j of k(x_i, x_j) for the rows of X (m, D): gram (m, m) scratch. */
static double offdiag_kernel_sum(const double *X, int m, int d, double *gram, double *rows) {
    cblas_dsyrk(CblasRowMajor, CblasUpper, CblasNoTrans, m, d, 1.0, X, d, 0.0, gram, m);
    double inv_d = 1.0 / d;
#pragma omp parallel for schedule(static)
    for (int i = 0; i < m; i++) {
        double s = 0;
        for (int j = i + 1; j < m; j++) s += cubic(gram[(size_t)i * m + j], inv_d);
        rows[i] = s;
    }
    double total = 0;
    for (int i = 0; i < m; i++) total += rows[i];
    return 2.0 * total;
}

static double cross_kernel_sum(const double *X, const double *Y, int m, int d, double *gram, double *rows) {
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, m, d, 1.0, X, d, Y, d, 0.0, gram, m);
    double inv_d = 1.0 / d;
#pragma omp parallel for schedule(static)
    for (int i = 0; i < m; i++) {
        double s = 0;
        for (int j = 0; j < m; j++) s += cubic(gram[(size_t)i * m + j], inv_d);
        rows[i] = s;
    }
    double total = 0;
    for (int i = 0; i < m; i++) total += rows[i];
    return total;
}

static int check_features(const float *x, int n, int d, const char *what) {
    if (!x || n <= 0 || d <= 0) return d2c_error(D2C_ERR_INPUT, "KID: empty %s feature array (%d x %d)", what, n, d);
    for (size_t i = 0; i < (size_t)n * d; i++)
        if (!isfinite(x[i]))
            return d2c_error(D2C_ERR_INPUT, "KID: %s features hold a non-finite value in row %zu", what, i / (size_t)d);
    return D2C_OK;
}

int kid_compute(const float *real, int n_real, const float *fake, int n_fake, int d, const KidOptions *o,
                double *mean, double *std, double *mmds) {
    *mean = *std = NAN;
    D2C_TRY(check_features(real, n_real, d, "real"));
    D2C_TRY(check_features(fake, n_fake, d, "fake"));
    int m = o->subset_size > 0 ? o->subset_size : D2C_MIN(KID_SUBSET_SIZE, D2C_MIN(n_real, n_fake));
    if (o->n_subsets < 1) return d2c_error(D2C_ERR_INPUT, "KID: needs at least one subset, got %d", o->n_subsets);
    if (m < 2 || m > n_real || m > n_fake)
        return d2c_error(D2C_ERR_INPUT, "KID: subsets of %d points need 2 <= m <= both set sizes (real %d, fake %d)", m,
                         n_real, n_fake);
    int *idx = xcalloc((size_t)m, sizeof *idx);
    int *scratch = xcalloc((size_t)D2C_MAX(n_real, n_fake), sizeof *scratch);
    double *X = xmalloc((size_t)m * d * sizeof(double)), *Y = xmalloc((size_t)m * d * sizeof(double));
    double *gram = xmalloc((size_t)m * m * sizeof(double)), *rows = xmalloc((size_t)m * sizeof(double));
    double *values = xmalloc((size_t)o->n_subsets * sizeof(double));
    for (int s = 0; s < o->n_subsets; s++) {
        kid_subset_indices(o->seed, s, 0, n_real, m, idx, scratch);
        for (int i = 0; i < m; i++)
            for (int j = 0; j < d; j++) X[(size_t)i * d + j] = real[(size_t)idx[i] * d + j];
        kid_subset_indices(o->seed, s, 1, n_fake, m, idx, scratch);
        for (int i = 0; i < m; i++)
            for (int j = 0; j < d; j++) Y[(size_t)i * d + j] = fake[(size_t)idx[i] * d + j];
        double kxx = offdiag_kernel_sum(X, m, d, gram, rows);
        double kyy = offdiag_kernel_sum(Y, m, d, gram, rows);
        double kxy = cross_kernel_sum(X, Y, m, d, gram, rows);
        values[s] = (kxx + kyy) / ((double)m * (m - 1)) - 2.0 * kxy / ((double)m * m);
    }
    double sum = 0, sq = 0;
    for (int s = 0; s < o->n_subsets; s++) sum += values[s];
    *mean = sum / o->n_subsets;
    for (int s = 0; s < o->n_subsets; s++) sq += (values[s] - *mean) * (values[s] - *mean);
    *std = sqrt(sq / o->n_subsets);
    if (mmds) memcpy(mmds, values, (size_t)o->n_subsets * sizeof(double));
    free(idx);
    free(scratch);
    free(X);
    free(Y);
    free(gram);
    free(rows);
    free(values);
    return D2C_OK;
}

/* Feature statistics, Frechet distance, Inception Score, class accuracy, and the
 * one-call quality_metrics_compute. Precision/recall/density/coverage live in prdc.c,
 * KID in kid.c. Errors are statuses (core/status.h).
 *
 * Shapes: N points, D feature dimensions, K classes. All accumulation is in double. */
#include "eval/metrics.h"

#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"

enum { STATS_ROW_CHUNK = 512 }; /* rows centred and folded into the covariance at a time */

static int check_finite_floats(const float *x, size_t count, const char *what) {
    for (size_t i = 0; i < count; i++)
        if (!isfinite(x[i])) return d2c_error(D2C_ERR_INPUT, "%s holds a non-finite value at flat index %zu", what, i);
    return D2C_OK;
}

/* ---------------------------------------------------------------- statistics */

int feature_stats_compute(FeatureStats *out, const float *feats, int n, int d) {
    memset(out, 0, sizeof *out);
    if (!feats || n <= 0 || d <= 0)
        return d2c_error(D2C_ERR_INPUT, "feature statistics: empty feature array (%d x %d)", n, d);
    if (n < 2) return d2c_error(D2C_ERR_INPUT, "feature statistics: a covariance needs at least 2 points, got %d", n);
    D2C_TRY(check_finite_floats(feats, (size_t)n * d, "feature array"));

    FeatureStats s = {.n = n, .d = d};
    s.mean = xcalloc((size_t)d, sizeof(double));
    s.cov = xcalloc((size_t)d * d, sizeof(double));
    for (int i = 0; i < n; i++) {
        const float *row = feats + (size_t)i * d;
        for (int j = 0; j < d; j++) s.mean[j] += row[j];
    }
    for (int j = 0; j < d; j++) s.mean[j] /= n;

    /* cov = Xc^T Xc / (N - 1), Xc the centred rows, folded in chunk by chunk (dsyrk,
     * upper triangle) so memory stays at STATS_ROW_CHUNK x D doubles. */
    int chunk_rows = D2C_MIN(n, STATS_ROW_CHUNK);
    double *centred = xmalloc((size_t)chunk_rows * d * sizeof(double)); /* (chunk, D) */
    for (int r0 = 0; r0 < n; r0 += chunk_rows) {
        int rows = D2C_MIN(chunk_rows, n - r0);
        for (int i = 0; i < rows; i++) {
            const float *row = feats + (size_t)(r0 + i) * d;
            double *crow = centred + (size_t)i * d;
            for (int j = 0; j < d; j++) crow[j] = (double)row[j] - s.mean[j];
        }
        cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, d, rows, 1.0 / (n - 1), centred, d,
                    1.0, s.cov, d);
    }
    free(centred);
    for (int i = 0; i < d; i++)
        for (int j = 0; j < i; j++) s.cov[(size_t)i * d + j] = s.cov[(size_t)j * d + i];
    *out = s;
    return D2C_OK;
}

void feature_stats_free(FeatureStats *stats) {
    free(stats->mean);
    free(stats->cov);
    stats->mean = stats->cov = NULL;
}

/* ---------------------------------------------------------------- Frechet distance */

/* tr(sqrtm(cov1 cov2)) for symmetric PSD cov1, cov2 (D, D), each with offset added to
 * its diagonal. A = sqrtm(cov1) = V diag(sqrt(w)) V^T; cov1 cov2 = A (A cov2) has the
 * same eigenvalues as (A cov2) A = A cov2 A, which is symmetric PSD, and the principal
 * square root of cov1 cov2 has their square roots as eigenvalues. Returns NAN if an
 * eigensolver fails. */
static double trace_sqrt_product(const double *cov1, const double *cov2, int d, double offset) {
    size_t dd = (size_t)d * d;
    double *vecs = xmalloc(dd * sizeof(double));  /* (D, D) eigenvectors of cov1, columns */
    double *evals = xmalloc((size_t)d * sizeof(double));
    double *sqrt1 = xcalloc(dd, sizeof(double));  /* (D, D) A = sqrtm(cov1) */
    double *cov2_off = xmalloc(dd * sizeof(double));
    double *tmp = xmalloc(dd * sizeof(double));
    double result = NAN;

    memcpy(vecs, cov1, dd * sizeof(double));
    memcpy(cov2_off, cov2, dd * sizeof(double));
    for (int i = 0; i < d; i++) {
        vecs[(size_t)i * d + i] += offset;
        cov2_off[(size_t)i * d + i] += offset;
    }
    if (LAPACKE_dsyevd(LAPACK_ROW_MAJOR, 'V', 'U', d, vecs, d, evals) != 0) goto done;

    /* A = C C^T with C = V diag(w^(1/4)), negative round-off eigenvalues clamped to 0. */
    for (int j = 0; j < d; j++) {
        double scale = sqrt(sqrt(fmax(evals[j], 0.0)));
        for (int i = 0; i < d; i++) vecs[(size_t)i * d + j] *= scale;
    }
    cblas_dsyrk(CblasRowMajor, CblasUpper, CblasNoTrans, d, d, 1.0, vecs, d, 0.0, sqrt1, d);
    for (int i = 0; i < d; i++)
        for (int j = 0; j < i; j++) sqrt1[(size_t)i * d + j] = sqrt1[(size_t)j * d + i];

    /* M = A cov2 A, symmetrised against round-off. vecs is reused for M. */
    cblas_dsymm(CblasRowMajor, CblasLeft, CblasUpper, d, d, 1.0, sqrt1, d, cov2_off, d, 0.0,
                tmp, d);
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, d, d, d, 1.0, tmp, d, sqrt1, d, 0.0,
                vecs, d);
    for (int i = 0; i < d; i++)
        for (int j = 0; j < i; j++) {
            double avg = 0.5 * (vecs[(size_t)i * d + j] + vecs[(size_t)j * d + i]);
            vecs[(size_t)i * d + j] = vecs[(size_t)j * d + i] = avg;
        }
    if (LAPACKE_dsyevd(LAPACK_ROW_MAJOR, 'N', 'U', d, vecs, d, evals) != 0) goto done;
    result = 0;
    for (int j = 0; j < d; j++) result += sqrt(fmax(evals[j], 0.0));

done:
    free(vecs);
    free(evals);
    free(sqrt1);
    free(cov2_off);
    free(tmp);
    return result;
}

int frechet_distance(const double *mean1, const double *cov1, const double *mean2,
                     const double *cov2, int d, double *fid) {
    *fid = NAN;
    if (d <= 0) return d2c_error(D2C_ERR_INPUT, "Frechet distance: feature dimension must be positive, got %d", d);
    size_t dd = (size_t)d * d;
    for (size_t i = 0; i < dd; i++)
        if (!isfinite(cov1[i]) || !isfinite(cov2[i]))
            return d2c_error(D2C_ERR_INPUT, "Frechet distance: a covariance holds a non-finite value");
    double mean_term = 0, trace1 = 0, trace2 = 0;
    for (int i = 0; i < d; i++) {
        if (!isfinite(mean1[i]) || !isfinite(mean2[i]))
            return d2c_error(D2C_ERR_INPUT, "Frechet distance: a mean holds a non-finite value");
        double diff = mean1[i] - mean2[i];
        mean_term += diff * diff;
        trace1 += cov1[(size_t)i * d + i];
        trace2 += cov2[(size_t)i * d + i];
    }
    double trace_sqrt = trace_sqrt_product(cov1, cov2, d, 0.0);
    if (!isfinite(trace_sqrt)) {
        /* pytorch-fid's fallback for a product it cannot take the root of: 1e-6 on both
         * diagonals. The eigen route rarely needs it (only if dsyevd fails to converge). */
        warn_msg("Frechet distance: eigensolver failed; adding 1e-6 to the covariance diagonals");
        trace_sqrt = trace_sqrt_product(cov1, cov2, d, 1e-6);
        if (!isfinite(trace_sqrt)) return d2c_error(D2C_ERR_FAIL, "Frechet distance: eigendecomposition failed");
    }
    *fid = mean_term + trace1 + trace2 - 2.0 * trace_sqrt;
    return D2C_OK;
}

int fid_from_stats(const FeatureStats *a, const FeatureStats *b, double *fid) {
    *fid = NAN;
    if (a->d != b->d) return d2c_error(D2C_ERR_INPUT, "FID: feature dimensions differ (%d vs %d)", a->d, b->d);
    return frechet_distance(a->mean, a->cov, b->mean, b->cov, a->d, fid);
}

/* ---------------------------------------------------------------- Inception Score */

static int check_probs(const float *probs, int n, int k, const char *who) {
    if (!probs || n <= 0 || k <= 0) return d2c_error(D2C_ERR_INPUT, "%s: empty probability array (%d x %d)", who, n, k);
    for (size_t i = 0; i < (size_t)n * k; i++)
        if (!isfinite(probs[i]) || probs[i] < 0)
            return d2c_error(D2C_ERR_INPUT, "%s: class probabilities must be finite and >= 0 (row %zu holds %g)", who,
                             i / (size_t)k, (double)probs[i]);
    return D2C_OK;
}

int inception_score(const float *probs, int n, int k, int n_splits, double *mean, double *std) {
    *mean = *std = NAN;
    D2C_TRY(check_probs(probs, n, k, "Inception Score"));
    if (n_splits <= 0)
        return d2c_error(D2C_ERR_INPUT, "Inception Score: number of splits must be positive, got %d", n_splits);
    if (n < n_splits)
        return d2c_error(D2C_ERR_INPUT, "Inception Score: %d samples cannot fill %d splits", n, n_splits);

    double *marginal = xmalloc((size_t)k * sizeof(double)); /* (K) p(y) of one split */
    double *scores = xmalloc((size_t)n_splits * sizeof(double));
    for (int s = 0; s < n_splits; s++) {
        int begin = (int)((int64_t)s * n / n_splits), end = (int)((int64_t)(s + 1) * n / n_splits);
        for (int c = 0; c < k; c++) marginal[c] = 0;
        for (int i = begin; i < end; i++)
            for (int c = 0; c < k; c++) marginal[c] += probs[(size_t)i * k + c];
        for (int c = 0; c < k; c++) marginal[c] /= (end - begin);
        double kl_sum = 0;
        for (int i = begin; i < end; i++)
            for (int c = 0; c < k; c++) {
                double p = probs[(size_t)i * k + c];
                if (p > 0) kl_sum += p * (log(p) - log(marginal[c]));
            }
        scores[s] = exp(kl_sum / (end - begin));
    }
    double sum = 0, sq = 0;
    for (int s = 0; s < n_splits; s++) sum += scores[s];
    *mean = sum / n_splits;
    for (int s = 0; s < n_splits; s++) sq += (scores[s] - *mean) * (scores[s] - *mean);
    *std = sqrt(sq / n_splits);
    free(marginal);
    free(scores);
    return D2C_OK;
}

/* ---------------------------------------------------------------- class accuracy */

int class_accuracy(const float *probs, int n, int k, const int64_t *labels, double *accuracy) {
    *accuracy = NAN;
    D2C_TRY(check_probs(probs, n, k, "class accuracy"));
    if (!labels) return d2c_error(D2C_ERR_INPUT, "class accuracy: no labels given");
    int64_t correct = 0;
    for (int i = 0; i < n; i++) {
        if (labels[i] < 0 || labels[i] >= k)
            return d2c_error(D2C_ERR_INPUT, "class accuracy: label %lld of sample %d is outside [0, %d)",
                             (long long)labels[i], i, k);
        const float *row = probs + (size_t)i * k;
        int best = 0;
        for (int c = 1; c < k; c++)
            if (row[c] > row[best]) best = c;
        correct += (best == labels[i]);
    }
    *accuracy = (double)correct / n;
    return D2C_OK;
}

/* ---------------------------------------------------------------- everything at once */

int quality_metrics_compute(const QualityInputs *in, QualityMetrics *q) {
    memset(q, 0, sizeof *q);
    q->fid = q->kid = q->kid_std = q->is_mean = q->is_std = q->class_accuracy = NAN;
    q->precision = q->recall = q->density = q->coverage = NAN;
    if (!in->real_feats || in->n_ref <= 0) return d2c_error(D2C_ERR_INPUT, "quality metrics: no reference features");
    if (!in->fake_feats || in->n_samples <= 0) return d2c_error(D2C_ERR_INPUT, "quality metrics: no sample features");
    if (in->d <= 0) return d2c_error(D2C_ERR_INPUT, "quality metrics: feature dimension must be positive, got %d", in->d);
    const FeatureStats *real_stats = in->real_stats;
    if (real_stats && real_stats->d != in->d)
        return d2c_error(D2C_ERR_INPUT, "quality metrics: cached reference statistics have dimension %d, features %d",
                         real_stats->d, in->d);
    if (real_stats && real_stats->n != in->n_ref)
        return d2c_error(D2C_ERR_INPUT, "quality metrics: cached reference statistics come from %d points, features "
                                        "hold %d", real_stats->n, in->n_ref);
    FeatureStats computed_real = {0}, fake_stats = {0};
    int st = D2C_OK;
    if (!real_stats) {
        D2C_TRY_GOTO(st, feature_stats_compute(&computed_real, in->real_feats, in->n_ref, in->d), done);
        real_stats = &computed_real;
    }
    D2C_TRY_GOTO(st, feature_stats_compute(&fake_stats, in->fake_feats, in->n_samples, in->d), done);
    QualityMetrics r = {.n_samples = in->n_samples, .n_ref = in->n_ref, .class_accuracy = NAN};
    D2C_TRY_GOTO(st, fid_from_stats(real_stats, &fake_stats, &r.fid), done);
    KidOptions kid = in->kid ? *in->kid : kid_default_options();
    D2C_TRY_GOTO(st, kid_compute(in->real_feats, in->n_ref, in->fake_feats, in->n_samples, in->d, &kid, &r.kid,
                                 &r.kid_std, NULL), done);
    D2C_TRY_GOTO(st, inception_score(in->fake_probs, in->n_samples, in->n_classes, METRICS_IS_SPLITS, &r.is_mean,
                                     &r.is_std), done);
    PrdcMetrics prdc;
    D2C_TRY_GOTO(st, prdc_compute_with_radii(in->real_feats, in->n_ref, in->real_radii, in->fake_feats, in->n_samples,
                                             in->d, METRICS_PRDC_K, &prdc), done);
    r.precision = prdc.precision;
    r.recall = prdc.recall;
    r.density = prdc.density;
    r.coverage = prdc.coverage;
    if (in->fake_labels)
        D2C_TRY_GOTO(st, class_accuracy(in->fake_probs, in->n_samples, in->n_classes, in->fake_labels,
                                        &r.class_accuracy), done);
    *q = r;
done:
    feature_stats_free(&fake_stats);
    feature_stats_free(&computed_real);
    return st;
}

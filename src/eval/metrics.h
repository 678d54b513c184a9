/* Generative-quality metrics on evaluator outputs: the maths only, on plain arrays.
 * The evaluator network that turns images into features and class probabilities lives
 * elsewhere; here we take its outputs and compute
 *   - feature statistics (mean, unbiased covariance) and the Frechet distance (FID),
 *   - the Inception Score (IS) from class probabilities,
 *   - precision / recall (Kynkaanniemi et al. 2019) and density / coverage (Naeem et
 *     al. 2020) from k-nearest-neighbour balls in feature space,
 *   - class-consistency accuracy (does the evaluator agree with the conditioning label).
 *
 * Shapes: N real (reference) points, M fake (generated) points, D feature dimensions,
 * K classes. Features and probabilities are float, row-major; results are double.
 * Bad input (empty arrays, mismatched shapes, too few points, non-finite values) ends the
 * process through die_input (exit status 2, one "d2c: error:" line). */
#ifndef D2C_EVAL_METRICS_H
#define D2C_EVAL_METRICS_H

#include <stdint.h>
#include "eval/legacy_exit.h" /* TEMPORARY, issue 9 */

enum {
    METRICS_PRDC_K = 3,     /* neighbourhood size for precision/recall/density/coverage */
    METRICS_IS_SPLITS = 10, /* consecutive splits for the Inception Score */
};

/* Mean and unbiased (N - 1) covariance of a feature set, as numpy.cov(rowvar=False). */
typedef struct {
    int n;        /* number of points the statistics came from */
    int d;        /* feature dimension */
    double *mean; /* (D) */
    double *cov;  /* (D, D), symmetric */
} FeatureStats;

/* Computes the statistics of feats (n, d); needs n >= 2. Free with feature_stats_free. */
FeatureStats feature_stats_compute(const float *feats, int n, int d);
void feature_stats_free(FeatureStats *stats);

/* Frechet distance between N(mean1, cov1) and N(mean2, cov2), all (D) / (D, D):
 *   |mean1 - mean2|^2 + tr(cov1) + tr(cov2) - 2 tr(sqrtm(cov1 cov2)).
 * The trace term goes through two symmetric eigendecompositions (LAPACK dsyevd):
 * A = sqrtm(cov1), and tr(sqrtm(cov1 cov2)) = sum sqrt(eig(A cov2 A)), exact for
 * positive semi-definite inputs, rank-deficient ones included. */
double frechet_distance(const double *mean1, const double *cov1, const double *mean2,
                        const double *cov2, int d);
/* frechet_distance of two FeatureStats with the same d. */
double fid_from_stats(const FeatureStats *a, const FeatureStats *b);

/* Inception Score of probs (n, k): the rows are cut into n_splits consecutive splits
 * [i n / n_splits, (i + 1) n / n_splits); per split exp(mean_x KL(p(y|x) || p(y))) with
 * p(y) the split's mean row; *mean and *std (population std, ddof 0) across splits.
 * Zero probabilities contribute 0 (0 log 0 = 0). Needs n >= n_splits. */
void inception_score(const float *probs, int n, int k, int n_splits, double *mean, double *std);

/* Fraction of rows of probs (n, k) whose argmax (first on ties) equals labels[i]. */
double class_accuracy(const float *probs, int n, int k, const int64_t *labels);

/* Squared Euclidean distance from each point of feats (n, d) to its k-th nearest
 * neighbour among the others (the point itself excluded by index, duplicates counted):
 * radii (n). Needs 1 <= k < n. */
void knn_radii(const float *feats, int n, int d, int k, double *radii);

typedef struct {
    double precision; /* fraction of fake points inside some real k-NN ball */
    double recall;    /* fraction of real points inside some fake k-NN ball */
    double density;   /* sum over fakes of the number of real balls holding it, / (k M) */
    double coverage;  /* fraction of real balls holding at least one fake point */
} PrdcMetrics;

/* Precision, recall, density and coverage with k-NN balls of squared Euclidean radius
 * (closed balls: a point at exactly the radius is inside). real (n_real, d), fake
 * (n_fake, d); needs 1 <= k < n_real and k < n_fake. */
PrdcMetrics prdc_compute(const float *real, int n_real, const float *fake, int n_fake, int d,
                         int k);

/* The metrics INTERFACE.md's METRICS file reports. */
typedef struct {
    double fid, is_mean, is_std, precision, recall, density, coverage, class_accuracy;
    int n_samples; /* M, generated samples */
    int n_ref;     /* N, reference samples */
} QualityMetrics;

/* What quality_metrics_compute needs: evaluator outputs on the reference set and on the
 * generated samples. */
typedef struct {
    const float *real_feats;        /* (N, D) evaluator features of the reference images */
    int n_ref;                      /* N */
    const FeatureStats *real_stats; /* optional cached statistics of real_feats; NULL: computed */
    const float *fake_feats;        /* (M, D) evaluator features of the generated images */
    const float *fake_probs;        /* (M, K) evaluator class probabilities (softmax) */
    const int64_t *fake_labels;     /* (M) class each sample was generated for */
    int n_samples;                  /* M */
    int d;                          /* D */
    int n_classes;                  /* K */
} QualityInputs;

/* FID, IS (METRICS_IS_SPLITS splits), precision/recall/density/coverage
 * (k = METRICS_PRDC_K) and class accuracy. */
QualityMetrics quality_metrics_compute(const QualityInputs *in);

#endif

/* Generative-quality metrics on evaluator outputs: the maths only, on plain arrays.
 * The evaluator network that turns images into features and class probabilities lives
 * elsewhere; here we take its outputs and compute
 *   - feature statistics (mean, unbiased covariance) and the Frechet distance (FID),
 *   - the Inception Score (IS) from class probabilities,
 *   - precision / recall (Kynkaanniemi et al. 2019) and density / coverage (Naeem et
 *     al. 2020) from k-nearest-neighbour balls in feature space,
 *   - the kernel inception distance (KID, Binkowski et al. 2018) as torch-fidelity and
 *     clean-fid compute it (kid.c),
 *   - class-consistency accuracy (does the evaluator agree with the conditioning label).
 *
 * Shapes: N real (reference) points, M fake (generated) points, D feature dimensions,
 * K classes. Features and probabilities are float, row-major; results are double.
 * Errors follow core/status.h: bad input (empty arrays, mismatched shapes, too few
 * points, non-finite values) returns D2C_ERR_INPUT with a message; a failed
 * eigensolver D2C_ERR_FAIL. Results go to out-parameters. */
#ifndef D2C_EVAL_METRICS_H
#define D2C_EVAL_METRICS_H

#include <stdint.h>

#include "core/status.h"

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

/* Computes the statistics of feats (n, d) into *out; needs n >= 2. Free with
 * feature_stats_free (also safe on a zeroed or failed FeatureStats). */
int feature_stats_compute(FeatureStats *out, const float *feats, int n, int d);
void feature_stats_free(FeatureStats *stats);

/* Frechet distance between N(mean1, cov1) and N(mean2, cov2), all (D) / (D, D):
 *   |mean1 - mean2|^2 + tr(cov1) + tr(cov2) - 2 tr(sqrtm(cov1 cov2)).
 * The trace term goes through two symmetric eigendecompositions (LAPACK dsyevd):
 * A = sqrtm(cov1), and tr(sqrtm(cov1 cov2)) = sum sqrt(eig(A cov2 A)), exact for
 * positive semi-definite inputs, rank-deficient ones included. */
int frechet_distance(const double *mean1, const double *cov1, const double *mean2,
                     const double *cov2, int d, double *fid);
/* frechet_distance of two FeatureStats with the same d. */
int fid_from_stats(const FeatureStats *a, const FeatureStats *b, double *fid);

/* Inception Score of probs (n, k): the rows are cut into n_splits consecutive splits
 * [i n / n_splits, (i + 1) n / n_splits); per split exp(mean_x KL(p(y|x) || p(y))) with
 * p(y) the split's mean row; *mean and *std (population std, ddof 0) across splits.
 * Zero probabilities contribute 0 (0 log 0 = 0). Needs n >= n_splits. */
int inception_score(const float *probs, int n, int k, int n_splits, double *mean, double *std);

/* Fraction of rows of probs (n, k) whose argmax (first on ties) equals labels[i]. */
int class_accuracy(const float *probs, int n, int k, const int64_t *labels, double *accuracy);

/* Squared Euclidean distance from each point of feats (n, d) to its k-th nearest
 * neighbour among the others (the point itself excluded by index, duplicates counted):
 * radii (n). Needs 1 <= k < n. */
int knn_radii(const float *feats, int n, int d, int k, double *radii);

typedef struct {
    double precision; /* fraction of fake points inside some real k-NN ball */
    double recall;    /* fraction of real points inside some fake k-NN ball */
    double density;   /* sum over fakes of the number of real balls holding it, / (k M) */
    double coverage;  /* fraction of real balls holding at least one fake point */
} PrdcMetrics;

/* Precision, recall, density and coverage with k-NN balls of squared Euclidean radius
 * (closed balls: a point at exactly the radius is inside). real (n_real, d), fake
 * (n_fake, d); needs 1 <= k < n_real and k < n_fake. */
int prdc_compute(const float *real, int n_real, const float *fake, int n_fake, int d, int k,
                 PrdcMetrics *out);
/* The same with the real set's radii given (knn_radii of real with this k; NULL: computed),
 * so a reference measured against many sample sets pays for its radii once. */
int prdc_compute_with_radii(const float *real, int n_real, const double *real_radii, const float *fake, int n_fake,
                            int d, int k, PrdcMetrics *out);

/* ---- KID (kid.c): the unbiased estimate of MMD^2 with the cubic polynomial kernel
 * k(x, y) = (x.y / D + 1)^3 on subsets of m points of each set,
 *   MMD^2 = sum_{i != j} [k(x_i, x_j) + k(y_i, y_j)] / (m (m - 1)) - 2 sum_{i, j} k(x_i, y_j) / m^2,
 * averaged over n_subsets subsets drawn without replacement (torch-fidelity's
 * kid_subsets / kid_subset_size; clean-fid's kernel distance); kid_std is the population
 * standard deviation (ddof 0, numpy's default, as torch-fidelity) of the subset values.
 * Subset s of the real set is kid_subset_indices(seed, s, 0, ...), of the fake set
 * (seed, s, 1, ...): Philox streams (seed, RNG_EVAL, KID_STREAM + 2 s + which). */
enum { KID_SUBSETS = 100, KID_SUBSET_SIZE = 1000, KID_STREAM = 1 << 20 };

typedef struct {
    int n_subsets;   /* default KID_SUBSETS */
    int subset_size; /* 0: min(KID_SUBSET_SIZE, N, M) */
    uint64_t seed;   /* default 0 */
} KidOptions;

KidOptions kid_default_options(void);
/* idx (m): a uniform m-subset of 0..n-1 (partial Fisher-Yates over 0..n-1 in scratch (n)). */
void kid_subset_indices(uint64_t seed, int subset, int which, int n, int m, int *idx, int *scratch);
/* *mean, *std over the subsets; mmds (n_subsets) receives every subset's value when not
 * NULL. Needs m >= 2. */
int kid_compute(const float *real, int n_real, const float *fake, int n_fake, int d, const KidOptions *o,
                double *mean, double *std, double *mmds);

/* The metrics INTERFACE.md's METRICS file reports. */
typedef struct {
    double fid, kid, kid_std, is_mean, is_std, precision, recall, density, coverage, class_accuracy;
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
    const KidOptions *kid;          /* NULL: kid_default_options() */
    const double *real_radii;       /* optional (N) knn_radii of real_feats, k = METRICS_PRDC_K */
} QualityInputs;

/* FID, KID, IS (METRICS_IS_SPLITS splits), precision/recall/density/coverage
 * (k = METRICS_PRDC_K) and class accuracy (NaN when fake_labels is NULL). */
int quality_metrics_compute(const QualityInputs *in, QualityMetrics *q);

#endif

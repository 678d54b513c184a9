/* Distribution-matching selection: ipc real images per class whose distribution matches the
 * class's in the PCA feature space of features.h (fit on all images being condensed).
 *
 *   kherding (kherding.c)  kernel herding: greedy minimisation of the squared MMD between
 *                          the selection and the class under an RBF kernel whose bandwidth
 *                          is `bandwidth` times the class's median pairwise distance;
 *   gadc (gadc.c)          moment matching after GADC: greedy, then swap refinement of
 *                          ||mu_S - mu||^2 + lambda ||Sigma_S - Sigma||_F^2 with
 *                          lambda = `lambda` / tr(Sigma);
 *   facility (facility.c)  facility location, the submodular coverage objective: greedy
 *                          maximisation of sum_i max_{s in S} k(x_i, s) over the class
 *                          under kherding's kernel and bandwidth; with `mmd_weight` W > 0
 *                          greedy minimisation of (1 - F(S) / n) + W MMD^2(S) instead.
 *
 * Both are deterministic for a given thread count (the seed only picks the random subset
 * that the report compares with) and write idx (K * ipc, class-major) like the baselines of baselines.h.
 * Shapes: n images of one class, d features, m = ipc picks. */
#ifndef D2C_CONDENSE_DISTMATCH_H
#define D2C_CONDENSE_DISTMATCH_H

#include <stdint.h>

#include "io/dataset.h"

typedef struct {
    int pca_dim;      /* PCA components of the feature space (default 50) */
    double bandwidth; /* kherding, facility: RBF bandwidth / the class's median pairwise distance (default 1) */
    double lambda;    /* gadc: covariance weight in units of 1 / tr(Sigma) of the class (default 1) */
    int passes;       /* gadc: most swap passes per class (default 5; 0 = the greedy start) */
    uint64_t seed;    /* the random subset the report's objective_random is measured on */
    double mmd_weight; /* facility: weight W of kherding's squared MMD beside the coverage term (default 0) */
} DistMatchOptions;

typedef struct {
    double objective;        /* mean over classes of the method's objective on its selection */
    double objective_random; /* the same on the random subset of the seed (select_random's) */
    double explained;        /* fraction of the pixel variance the PCA components hold */
    double bandwidth;        /* kherding, facility: mean over classes of the kernel bandwidth */
    double mmd2;             /* facility: mean over classes of the picks' squared MMD (kherding's objective) */
    double mmd2_random;      /* facility: the same for the random subset */
    long evaluations;        /* facility: marginal gains computed by the greedy, all classes */
    double coverage;         /* facility: mean over classes of 1 - F(S) / n of the picks */
    double coverage_random;  /* facility: the same for the random subset */
    long swaps;              /* gadc: swaps accepted, all classes */
    int passes;              /* gadc: the most passes a class ran */
} DistMatchReport;

/* Subsample of the median bandwidth: at most this many class members, evenly spaced. */
enum { KHERDING_MEDIAN_SAMPLE = 1000 };

/* ---------------------------------------------------------------- one class, kherding */
/* The median squared pairwise distance among the rows floor(i n / s), i < s =
 * min(n, KHERDING_MEDIAN_SAMPLE), of f (n, d) (the lower median of the s (s-1) / 2 pairs). */
double kherding_median_sq_distance(const float *f, int n, int d);
/* mk[i] = (1/n) sum_j exp(-gamma |f_i - f_j|^2): the kernel mean embedding of the class at
 * each member, by blocks of rows (sgemm for the inner products; no n x n matrix). */
void kherding_mean_kernel(const float *f, int n, int d, double gamma, double *mk);
/* gamma = 1 / (2 sigma^2) of the class f (n, d), sigma = bandwidth x the square root of
 * kherding_median_sq_distance (1 when that is 0); *sigma (may be NULL) receives sigma. */
double kherding_gamma(const float *f, int n, int d, double bandwidth, double *sigma);
/* sq[i] = |f_i|^2 (float, in order). */
void rbf_sq_norms(const float *f, int n, int d, float *sq);
/* out (nb, n) = rows i0 .. i0+nb-1 of the kernel exp(-gamma |f_i - f_j|^2), from one sgemm
 * of inner products and sq (rbf_sq_norms); squared distances below 0 are clamped to 0. */
void rbf_kernel_rows(const float *f, int n, int d, const float *sq, double gamma, int i0, int nb, float *out);
/* Kernel herding: m distinct positions into pick, greedily; step t adds the i maximising
 * mk[i] - (1/(t+1)) sum_{s<t} k(f_i, f_pick[s]), i.e. minimising the squared MMD of the
 * t+1 picks to the class (lowest index on ties). Requires 1 <= m <= n. */
void kherding_select(const float *f, int n, int d, double gamma, const double *mk, int m, int *pick);
/* The squared MMD (V-statistic) between the picks and the whole class. */
double kherding_mmd2(const float *f, int n, int d, double gamma, const double *mk, const int *pick, int m);

/* ---------------------------------------------------------------- one class, gadc */
/* Greedy start (each step adds the image that minimises the objective of the grown set),
 * then at most `passes` swap passes: for every selected image in turn, the unselected
 * image whose swap lowers the objective most replaces it when that is a decrease; a pass
 * without a swap ends the refinement. Swaps and passes run are added to *swaps / *passes
 * (may be NULL). Requires 1 <= m <= n, lambda >= 0. */
void gadc_select(const float *f, int n, int d, int m, double lambda, int passes, int *pick, long *swaps, int *passes_run);
/* ||mu_S - mu||^2 + (lambda / tr Sigma) ||Sigma_S - Sigma||_F^2 computed directly (1/n
 * covariances, double). */
double gadc_objective(const float *f, int n, int d, const int *pick, int m, double lambda);

/* ---------------------------------------------------------------- one class, facility */
/* Fills K (n, n) with the whole kernel of the class (rbf_kernel_rows). */
void facility_kernel(const float *f, int n, int d, double gamma, float *K);
/* Facility location by lazy greedy: m distinct positions into pick, step t adding the i
 * that maximises F(S + {i}) with F(S) = sum_j max_{s in S} K[s n + j] (F(empty) = 0);
 * exactly the plain greedy with ties to the lowest index. value[t] (may be NULL) receives
 * F of the first t+1 picks. Returns the number of gain evaluations. Requires 1 <= m <= n. */
long facility_select(const float *K, int n, int m, int *pick, double *value);
/* The blend: plain greedy minimisation of (1 - F(S) / n) + w MMD^2(S) (w > 0), MMD^2 as
 * kherding_mmd2 with the kernel mean embedding mk (n) and K's entries; step t adds the i
 * maximising gain(i) / n + w (2 / (t+1)) (mk[i] - (1 / (t+1)) sum_{s in S} K[s n + i]),
 * lowest index on ties; O(n^2) a step. value as facility_select. Returns n m. */
long facility_mmd_select(const float *K, int n, int m, const double *mk, double w, int *pick, double *value);
/* F(S) / n for the m positions pick: the mean over the class of the kernel to its nearest pick. */
double facility_value(const float *K, int n, const int *pick, int m);

/* ---------------------------------------------------------------- whole data sets */
/* D2C_ERR_INPUT naming the class when one holds fewer than ipc images, or for a bad
 * --pca-dim; D2C_ERR_FAIL when the features cannot be allocated. rep may be NULL. */
int select_kherding(const Dataset *data, const ClassIndex *ci, int ipc, const DistMatchOptions *o, int *idx,
                    DistMatchReport *rep);
int select_gadc(const Dataset *data, const ClassIndex *ci, int ipc, const DistMatchOptions *o, int *idx,
                DistMatchReport *rep);
/* objective = mean over classes of 1 - facility_value + mmd_weight x the squared MMD (lower
 * is better, as for the others); D2C_ERR_INPUT for a bandwidth or mmd_weight out of range. */
int select_facility(const Dataset *data, const ClassIndex *ci, int ipc, const DistMatchOptions *o, int *idx,
                    DistMatchReport *rep);

#endif

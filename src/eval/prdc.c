/* Precision / recall (Kynkaanniemi et al. 2019) and density / coverage (Naeem et al.
 * 2020) from k-nearest-neighbour balls, in squared Euclidean distance.
 *
 * Distances come from dgemm as |a|^2 + |b|^2 - 2 a.b on double copies of the features,
 * centred on a common origin (cancellation shrinks with the norms), block by block: a
 * (ROWS, N) strip of distances is the largest thing held, so 10k x 10k needs tens of
 * MiB, not the full matrix. A gemm distance is trusted only when it is farther from the
 * value it is compared with than its worst-case round-off; the rare borderline pair is
 * recomputed directly as sum (a_i - b_i)^2 from the float features, which is exact
 * for duplicates (0) and for small integer data, so ties are decided on true values:
 *   - radius_i = k-th smallest distance from i to the other points of its set (i itself
 *     excluded by index, equal distances counted with multiplicity);
 *   - "inside" means distance <= radius (closed balls, as Kynkaanniemi et al.'s code).
 *
 * Shapes: N real points, M fake points, D features; k the neighbourhood size. */
#include "eval/metrics.h"

#include <cblas.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"

enum {
    STRIP_DOUBLES = 1 << 22, /* distance strip budget: 4 Mi doubles = 32 MiB */
    COLUMN_BLOCK = 1024,     /* points converted to double at a time on the column side */
};

/* A point set ready for distance computations. */
typedef struct {
    const float *feats;    /* (n, D) the caller's features */
    int n, d;
    const double *origin;  /* (D) common centre subtracted before gemm */
    double *sqnorm;        /* (n) |x - origin|^2 */
    double max_sqnorm;
} PointSet;

static PointSet point_set(const float *feats, int n, int d, const double *origin) {
    PointSet s = {.feats = feats, .n = n, .d = d, .origin = origin};
    s.sqnorm = xmalloc((size_t)n * sizeof(double));
#pragma omp parallel for schedule(static)
    for (int i = 0; i < n; i++) {
        const float *row = feats + (size_t)i * d;
        double acc = 0;
        for (int j = 0; j < d; j++) {
            double c = (double)row[j] - origin[j];
            acc += c * c;
        }
        s.sqnorm[i] = acc;
    }
    for (int i = 0; i < n; i++) s.max_sqnorm = fmax(s.max_sqnorm, s.sqnorm[i]);
    return s;
}

static void centred_rows(const PointSet *s, int r0, int rows, double *out /* (rows, D) */) {
    int d = s->d;
#pragma omp parallel for schedule(static)
    for (int i = 0; i < rows; i++) {
        const float *row = s->feats + (size_t)(r0 + i) * d;
        for (int j = 0; j < d; j++) out[(size_t)i * d + j] = (double)row[j] - s->origin[j];
    }
}

/* dist (rows, b->n) = squared distances from a's points r0 .. r0+rows-1 to all of b's.
 * a_buf (rows, D) and b_buf (COLUMN_BLOCK, D) are scratch. */
static void distance_strip(const PointSet *a, int r0, int rows, const PointSet *b, double *dist,
                           double *a_buf, double *b_buf) {
    int d = a->d, n = b->n;
    centred_rows(a, r0, rows, a_buf);
    for (int c0 = 0; c0 < n; c0 += COLUMN_BLOCK) {
        int cols = D2C_MIN(COLUMN_BLOCK, n - c0);
        centred_rows(b, c0, cols, b_buf);
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, cols, d, -2.0, a_buf, d, b_buf,
                    d, 0.0, dist + c0, n);
    }
#pragma omp parallel for schedule(static)
    for (int i = 0; i < rows; i++)
        for (int j = 0; j < n; j++) {
            double *v = dist + (size_t)i * n + j;
            *v = fmax(*v + a->sqnorm[r0 + i] + b->sqnorm[j], 0.0);
        }
}

/* Worst-case |gemm distance - true distance| for points of squared norms na, nb: the
 * dot product's gamma_D bound, the norms' and the centring round-off, with slack. */
static double gemm_error_bound(int d, double na, double nb) {
    return 2.0 * (d + 8) * DBL_EPSILON * (na + nb);
}

static double direct_sq_distance(const float *a, const float *b, int d) {
    double acc = 0;
    for (int j = 0; j < d; j++) {
        double diff = (double)a[j] - (double)b[j];
        acc += diff * diff;
    }
    return acc;
}

/* Is point a (of set sa) within squared radius of point b (of set sb), given their gemm
 * distance? Decided on the direct distance when the gemm one is too close to call. */
static int within(double gemm_dist, double radius, const PointSet *sa, int a, const PointSet *sb,
                  int b) {
    double tol = gemm_error_bound(sa->d, sa->sqnorm[a], sb->sqnorm[b]);
    if (gemm_dist > radius + tol) return 0;
    if (gemm_dist < radius - tol) return 1;
    return direct_sq_distance(sa->feats + (size_t)a * sa->d, sb->feats + (size_t)b * sb->d,
                              sa->d) <= radius;
}

/* The value of rank `rank` (0-based) in v[0..n), reordering v: quickselect with a
 * three-way partition, so runs of equal values cost no more than distinct ones. */
static double select_rank(double *v, int n, int rank) {
    int lo = 0, hi = n - 1;
    while (lo < hi) {
        double a = v[lo], b = v[lo + (hi - lo) / 2], c = v[hi];
        double pivot = a < b ? (b < c ? b : (a < c ? c : a)) : (a < c ? a : (b < c ? c : b));
        int lt = lo, i = lo, gt = hi; /* [lo,lt) < pivot, [lt,i) == pivot, (gt,hi] > pivot */
        while (i <= gt) {
            double x = v[i];
            if (x < pivot) {
                v[i++] = v[lt];
                v[lt++] = x;
            } else if (x > pivot) {
                v[i] = v[gt];
                v[gt--] = x;
            } else {
                i++;
            }
        }
        if (rank < lt) hi = lt - 1;
        else if (rank > gt) lo = gt + 1;
        else return pivot;
    }
    return v[rank];
}

static int strip_rows(int rows_total, int cols) {
    int rows = STRIP_DOUBLES / D2C_MAX(cols, 1);
    return D2C_MAX(1, D2C_MIN(rows, rows_total));
}

/* radii (n): squared distance from each point of s to its k-th nearest other point. */
static void knn_radii_of_set(const PointSet *s, int k, double *radii) {
    int n = s->n, d = s->d;
    int rows_max = strip_rows(n, n);
    double *dist = xmalloc((size_t)rows_max * n * sizeof(double)); /* (rows, N) */
    double *a_buf = xmalloc((size_t)rows_max * d * sizeof(double));
    double *b_buf = xmalloc((size_t)D2C_MIN(COLUMN_BLOCK, n) * d * sizeof(double));
    for (int r0 = 0; r0 < n; r0 += rows_max) {
        int rows = D2C_MIN(rows_max, n - r0);
        distance_strip(s, r0, rows, s, dist, a_buf, b_buf);
#pragma omp parallel
        {
            double *others = xmalloc((size_t)n * sizeof(double));
            double *candidates = xmalloc((size_t)n * sizeof(double));
#pragma omp for schedule(dynamic, 16)
            for (int r = 0; r < rows; r++) {
                int i = r0 + r;
                const double *row = dist + (size_t)r * n;
                int m = 0;
                for (int j = 0; j < n; j++)
                    if (j != i) others[m++] = row[j];
                double gemm_kth = select_rank(others, m, k - 1);
                /* Every point truly among the k nearest has a gemm distance within two
                 * error bounds of gemm_kth; re-rank those on direct distances. */
                double cutoff = gemm_kth + 2.0 * gemm_error_bound(d, s->sqnorm[i], s->max_sqnorm);
                int nc = 0;
                for (int j = 0; j < n; j++)
                    if (j != i && row[j] <= cutoff)
                        candidates[nc++] = direct_sq_distance(s->feats + (size_t)i * d,
                                                              s->feats + (size_t)j * d, d);
                D2C_CHECK(nc >= k);
                radii[i] = select_rank(candidates, nc, k - 1);
            }
            free(others);
            free(candidates);
        }
    }
    free(dist);
    free(a_buf);
    free(b_buf);
}

static int check_point_array(const float *x, int n, int d, const char *what) {
    if (!x || n <= 0 || d <= 0) return d2c_error(D2C_ERR_INPUT, "%s: empty feature array (%d x %d)", what, n, d);
    for (size_t i = 0; i < (size_t)n * d; i++)
        if (!isfinite(x[i]))
            return d2c_error(D2C_ERR_INPUT, "%s: feature array holds a non-finite value in row %zu", what, i / (size_t)d);
    return D2C_OK;
}

static void mean_of(const float *x, int n, int d, double *mean /* (D) */) {
    for (int j = 0; j < d; j++) mean[j] = 0;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < d; j++) mean[j] += x[(size_t)i * d + j];
    for (int j = 0; j < d; j++) mean[j] /= n;
}

int knn_radii(const float *feats, int n, int d, int k, double *radii) {
    D2C_TRY(check_point_array(feats, n, d, "k-NN radii"));
    if (k < 1 || k >= n)
        return d2c_error(D2C_ERR_INPUT, "k-NN radii: k = %d needs 1 <= k < number of points (%d)", k, n);
    double *origin = xmalloc((size_t)d * sizeof(double));
    mean_of(feats, n, d, origin);
    PointSet s = point_set(feats, n, d, origin);
    knn_radii_of_set(&s, k, radii);
    free(s.sqnorm);
    free(origin);
    return D2C_OK;
}

int prdc_compute(const float *real, int n_real, const float *fake, int n_fake, int d, int k,
                 PrdcMetrics *out) {
    return prdc_compute_with_radii(real, n_real, NULL, fake, n_fake, d, k, out);
}

int prdc_compute_with_radii(const float *real, int n_real, const double *given_radii, const float *fake, int n_fake,
                            int d, int k, PrdcMetrics *out) {
    D2C_TRY(check_point_array(real, n_real, d, "precision/recall: real"));
    D2C_TRY(check_point_array(fake, n_fake, d, "precision/recall: fake"));
    if (k < 1 || k >= n_real || k >= n_fake)
        return d2c_error(D2C_ERR_INPUT, "precision/recall: k = %d needs 1 <= k < number of points (real %d, fake %d)",
                         k, n_real, n_fake);

    double *origin = xmalloc((size_t)d * sizeof(double)); /* (D) real mean */
    mean_of(real, n_real, d, origin);
    PointSet rs = point_set(real, n_real, d, origin), fs = point_set(fake, n_fake, d, origin);
    double *real_radii = xmalloc((size_t)n_real * sizeof(double)); /* (N) */
    double *fake_radii = xmalloc((size_t)n_fake * sizeof(double)); /* (M) */
    if (given_radii) memcpy(real_radii, given_radii, (size_t)n_real * sizeof(double));
    else knn_radii_of_set(&rs, k, real_radii);
    knn_radii_of_set(&fs, k, fake_radii);

    /* One pass over fake-by-real strips. Per fake row: how many real balls hold it
     * (precision, density). Per real column: does its ball hold a fake (coverage), does
     * a fake ball hold it (recall); flags persist across strips. */
    unsigned char *covered = xcalloc((size_t)n_real, 1);  /* (N) */
    unsigned char *recalled = xcalloc((size_t)n_real, 1); /* (N) */
    int64_t fakes_inside = 0, ball_hits = 0;
    int rows_max = strip_rows(n_fake, n_real);
    double *dist = xmalloc((size_t)rows_max * n_real * sizeof(double)); /* (rows, N) */
    double *a_buf = xmalloc((size_t)rows_max * d * sizeof(double));
    double *b_buf = xmalloc((size_t)D2C_MIN(COLUMN_BLOCK, n_real) * d * sizeof(double));
    for (int f0 = 0; f0 < n_fake; f0 += rows_max) {
        int rows = D2C_MIN(rows_max, n_fake - f0);
        distance_strip(&fs, f0, rows, &rs, dist, a_buf, b_buf);
#pragma omp parallel for schedule(static) reduction(+ : fakes_inside, ball_hits)
        for (int r = 0; r < rows; r++) {
            const double *row = dist + (size_t)r * n_real;
            int64_t hits = 0;
            for (int i = 0; i < n_real; i++)
                hits += within(row[i], real_radii[i], &fs, f0 + r, &rs, i);
            fakes_inside += hits > 0;
            ball_hits += hits;
        }
#pragma omp parallel for schedule(static)
        for (int i = 0; i < n_real; i++) {
            for (int r = 0; r < rows && !covered[i]; r++)
                covered[i] = (unsigned char)within(dist[(size_t)r * n_real + i], real_radii[i], &fs,
                                                   f0 + r, &rs, i);
            for (int r = 0; r < rows && !recalled[i]; r++)
                recalled[i] = (unsigned char)within(dist[(size_t)r * n_real + i],
                                                    fake_radii[f0 + r], &fs, f0 + r, &rs, i);
        }
    }
    int64_t n_covered = 0, n_recalled = 0;
    for (int i = 0; i < n_real; i++) {
        n_covered += covered[i];
        n_recalled += recalled[i];
    }
    PrdcMetrics m = {
        .precision = (double)fakes_inside / n_fake,
        .recall = (double)n_recalled / n_real,
        .density = (double)ball_hits / ((double)k * n_fake),
        .coverage = (double)n_covered / n_real,
    };
    free(dist);
    free(a_buf);
    free(b_buf);
    free(covered);
    free(recalled);
    free(real_radii);
    free(fake_radii);
    free(rs.sqnorm);
    free(fs.sqnorm);
    free(origin);
    *out = m;
    return D2C_OK;
}

/* Kernel herding (`--method kherding`, distmatch.h): per class, greedy minimisation of the
 * squared MMD between the selected images and the class in the PCA feature space.
 *
 * Kernel: k(x, y) = exp(-gamma |x - y|^2), gamma = 1 / (2 sigma^2), sigma = `bandwidth`
 * times the median pairwise distance of the class (the median heuristic, measured on at
 * most KHERDING_MEDIAN_SAMPLE evenly spaced members so its cost does not grow with n^2).
 * With the picks S (|S| = t) and the class P (n images), the squared MMD of S + {x} is
 *   const - (2 / (t+1)) [sum_S mk + mk(x)] + (1 / (t+1)^2) [sum_{S,S} k + 2 sum_S k(x, s) + 1]
 * where mk(x) = (1/n) sum_P k(x, p) (k(x, x) = 1), so the greedy step maximises
 *   mk(x) - (1 / (t+1)) sum_S k(x, s)
 * which is exactly the best next image for the MMD. mk costs O(n^2 d) once, by blocks of
 * KH_BLOCK rows (one sgemm each for the inner products, then the exponentials in
 * parallel), and never holds the n x n kernel (144 MB for a 6000-image class); each greedy
 * step then costs O(n d) for the new pick's kernel column. Sums are in double, in a fixed
 * order per row, and ties go to the lowest index, so the loops here do not depend on the
 * thread count (OpenBLAS's sgemm, here and in the PCA, may round differently with another
 * thread count: on Fashion-MNIST the picks were the same with 1 and 2 threads, the reported
 * MMD differed in its 6th digit). */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "condense/distmatch.h"
#include "condense/features.h"
#include "core/status.h"
#include "core/util.h"

enum { KH_BLOCK = 256 }; /* rows of the kernel computed per sgemm (kherding_mean_kernel) */

static float sq_dist_f(const float *a, const float *b, int d) {
    float s = 0;
    for (int j = 0; j < d; j++) {
        const float t = a[j] - b[j];
        s += t * t;
    }
    return s;
}

/* k-th smallest of v[0..n) (v is reordered): Wirth's selection, pivot v[k]. */
static double select_kth(double *v, long n, long k) {
    long lo = 0, hi = n - 1;
    while (lo < hi) {
        const double x = v[k];
        long i = lo, j = hi;
        do {
            while (v[i] < x) i++;
            while (x < v[j]) j--;
            if (i <= j) {
                const double t = v[i];
                v[i] = v[j], v[j] = t;
                i++, j--;
            }
        } while (i <= j);
        if (j < k) lo = i;
        if (k < i) hi = j;
    }
    return v[k];
}

double kherding_median_sq_distance(const float *f, int n, int d) {
    const int s = D2C_MIN(n, (int)KHERDING_MEDIAN_SAMPLE);
    if (s < 2) return 0;
    const size_t pairs = (size_t)s * (s - 1) / 2;
    double *v = xcalloc(pairs, sizeof(double));
#pragma omp parallel for schedule(dynamic, 16)
    for (int a = 1; a < s; a++) {
        const float *fa = f + (size_t)((long)a * n / s) * d;
        double *row = v + (size_t)a * (a - 1) / 2; /* pairs (a, 0..a-1) */
        for (int b = 0; b < a; b++) row[b] = sq_dist_f(fa, f + (size_t)((long)b * n / s) * d, d);
    }
    const double med = select_kth(v, (long)pairs, (long)(pairs - 1) / 2);
    free(v);
    return med;
}

double kherding_gamma(const float *f, int n, int d, double bandwidth, double *sigma) {
    const double med2 = kherding_median_sq_distance(f, n, d);
    const double sigma2 = bandwidth * bandwidth * (med2 > 0 ? med2 : 1);
    if (sigma) *sigma = sqrt(sigma2);
    return 1.0 / (2.0 * sigma2);
}

void rbf_sq_norms(const float *f, int n, int d, float *sq) {
    for (int i = 0; i < n; i++) {
        float s = 0;
        for (int j = 0; j < d; j++) s += f[(size_t)i * d + j] * f[(size_t)i * d + j];
        sq[i] = s;
    }
}

void rbf_kernel_rows(const float *f, int n, int d, const float *sq, double gamma, int i0, int nb, float *out) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nb, n, d, 1.0f, f + (size_t)i0 * d, d, f, d, 0.0f, out, n);
    const float gm = (float)gamma;
#pragma omp parallel for schedule(static)
    for (int i = 0; i < nb; i++) {
        float *gi = out + (size_t)i * n;
        const float si = sq[i0 + i];
        for (int j = 0; j < n; j++) {
            const float d2 = si + sq[j] - 2.0f * gi[j];
            gi[j] = expf(-gm * (d2 > 0 ? d2 : 0));
        }
    }
}

void kherding_mean_kernel(const float *f, int n, int d, double gamma, double *mk) {
    float *sq = xmalloc_floats((size_t)n);
    rbf_sq_norms(f, n, d, sq);
    float *g = xmalloc_floats((size_t)KH_BLOCK * n);
    for (int i0 = 0; i0 < n; i0 += KH_BLOCK) {
        const int nb = D2C_MIN((int)KH_BLOCK, n - i0);
        rbf_kernel_rows(f, n, d, sq, gamma, i0, nb, g);
#pragma omp parallel for schedule(static)
        for (int i = 0; i < nb; i++) {
            const float *gi = g + (size_t)i * n;
            double s = 0;
            for (int j = 0; j < n; j++) s += gi[j];
            mk[i0 + i] = s / n;
        }
    }
    free(g);
    free(sq);
}

void kherding_select(const float *f, int n, int d, double gamma, const double *mk, int m, int *pick) {
    D2C_CHECK(m >= 1 && m <= n);
    double *ks = xcalloc((size_t)n, sizeof(double)); /* sum over the picks of k(f_i, pick) */
    char *used = xcalloc((size_t)n, 1);
    const float gm = (float)gamma;
    for (int t = 0; t < m; t++) {
        const double inv = 1.0 / (t + 1);
        int best = -1;
        double best_score = -INFINITY;
        for (int i = 0; i < n; i++) {
            if (used[i]) continue;
            const double score = mk[i] - inv * ks[i];
            if (score > best_score) best_score = score, best = i;
        }
        D2C_CHECK(best >= 0);
        pick[t] = best;
        used[best] = 1;
        if (t + 1 == m) break;
        const float *fb = f + (size_t)best * d;
#pragma omp parallel for schedule(static)
        for (int i = 0; i < n; i++) ks[i] += expf(-gm * sq_dist_f(f + (size_t)i * d, fb, d));
    }
    free(ks);
    free(used);
}

double kherding_mmd2(const float *f, int n, int d, double gamma, const double *mk, const int *pick, int m) {
    const float gm = (float)gamma;
    double *row = xcalloc((size_t)m, sizeof(double)), ss = 0, sp = 0, pp = 0;
#pragma omp parallel for schedule(static)
    for (int a = 0; a < m; a++)
        for (int b = 0; b < m; b++) row[a] += expf(-gm * sq_dist_f(f + (size_t)pick[a] * d, f + (size_t)pick[b] * d, d));
    for (int a = 0; a < m; a++) ss += row[a]; /* in order: the same sum for any thread count */
    free(row);
    for (int a = 0; a < m; a++) sp += mk[pick[a]];
    for (int i = 0; i < n; i++) pp += mk[i];
    return ss / ((double)m * m) - 2.0 * sp / m + pp / n;
}

int select_kherding(const Dataset *data, const ClassIndex *ci, int ipc, const DistMatchOptions *o, int *idx,
                    DistMatchReport *rep) {
    if (!(o->bandwidth > 0) || !isfinite(o->bandwidth))
        return d2c_error(D2C_ERR_INPUT, "--bandwidth must be positive, got %g", o->bandwidth);
    SelectionSpace s;
    D2C_TRY(selection_space_open(&s, data, ci, ipc, o->pca_dim, o->seed));
    const int d = s.d, K = ci->num_classes;
    double *mk = xcalloc((size_t)s.nmax, sizeof(double));
    DistMatchReport r = {.explained = s.explained};
    for (int k = 0; k < K; k++) {
        const int n = selection_space_class(&s, k);
        double sigma;
        const double gamma = kherding_gamma(s.fc, n, d, o->bandwidth, &sigma);
        kherding_mean_kernel(s.fc, n, d, gamma, mk);
        kherding_select(s.fc, n, d, gamma, mk, ipc, s.pick);
        selection_space_keep(&s, k, idx);
        r.objective += kherding_mmd2(s.fc, n, d, gamma, mk, s.pick, ipc) / K;
        r.objective_random += kherding_mmd2(s.fc, n, d, gamma, mk, s.rnd, ipc) / K;
        r.bandwidth += sigma / K;
    }
    free(mk);
    selection_space_close(&s);
    if (rep) *rep = r;
    return D2C_OK;
}

/* Facility location (`--method facility`, distmatch.h): per class, the m images that
 * maximise the submodular coverage objective
 *
 *   F(S) = sum_{i in class} max_{s in S} k(x_i, s),   F(empty) = 0,
 *
 * with kherding's RBF kernel k(x, y) = exp(-gamma |x - y|^2) and bandwidth (kherding_gamma:
 * `bandwidth` x the class's median pairwise distance) in the same PCA feature space. Where
 * kernel herding matches the class's kernel mean (and so favours its bulk), F rewards every
 * member for having a pick near it, so sparse regions of the class count too; a smaller
 * bandwidth makes "near" stricter and spreads the picks further.
 *
 * The class's whole kernel K (n x n floats: 144 MB for a 6000-image class) is computed once
 * (one sgemm of inner products, then the exponentials in parallel) and held. Greedy is lazy
 * (Minoux): every candidate keeps an upper bound of its marginal gain
 *   gain(j | S) = sum_i max(0, K[j][i] - cur[i]),  cur[i] = max_{s in S} K[s][i],
 * in a max-heap ordered by (bound, then the lower index); the top is recomputed until it is
 * fresh (computed for the current S), and a fresh top is the exact greedy choice: the gains
 * only fall as S grows (each term max(0, K - cur) is non-increasing in cur, also in float,
 * and the double sum of non-increasing terms in a fixed order is non-increasing), so every
 * other candidate's true gain is at most its bound, and on equal bounds the lower index is
 * recomputed first. So the picks are those of the plain greedy with ties to the lowest
 * index, and none of the loops depend on the thread count (OpenBLAS's sgemm may round
 * differently with another one, as in kherding). The greedy gets F within (1 - 1/e) of the
 * best m-subset (Nemhauser, Wolsey and Fisher).
 *
 * The blend (`--mmd-weight W` > 0): facility location alone spreads the picks over the
 * class's sparse regions and loses the density (its own-pool FID is worse than a random
 * subset's, docs/CONDENSATION.md), so the greedy can minimise (1 - F(S) / n) + W MMD^2(S)
 * instead, kherding's objective added with weight W. That sum is not submodular (the MMD
 * term is not monotone), so it runs as a plain greedy: every step scores every candidate,
 *   gain(j | S) / n + W (2 / (t+1)) (mk(j) - (1 / (t+1)) sum_S k(j, s)),
 * the decrease of the objective up to terms that do not depend on j, in O(n^2) (in
 * parallel over candidates, each score summed in order). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "condense/distmatch.h"
#include "condense/features.h"
#include "core/status.h"
#include "core/util.h"

void facility_kernel(const float *f, int n, int d, double gamma, float *K) {
    float *sq = xmalloc_floats((size_t)n);
    rbf_sq_norms(f, n, d, sq);
    rbf_kernel_rows(f, n, d, sq, gamma, 0, n, K);
    free(sq);
}

/* sum_i max(0, row[i] - cur[i]) in order, in double. */
static double gain(const float *row, const float *cur, int n) {
    double g = 0;
    for (int i = 0; i < n; i++) {
        const float t = row[i] - cur[i];
        if (t > 0) g += t;
    }
    return g;
}

typedef struct {
    double bound; /* the marginal gain when last computed: an upper bound of the current one */
    int idx, step; /* the candidate; the greedy step its bound was computed at */
} Cand;

static int ahead(const Cand *a, const Cand *b) { return a->bound > b->bound || (a->bound == b->bound && a->idx < b->idx); }

static void sift_down(Cand *h, int len, int p) {
    for (;;) {
        int c = 2 * p + 1;
        if (c >= len) return;
        if (c + 1 < len && ahead(&h[c + 1], &h[c])) c++;
        if (!ahead(&h[c], &h[p])) return;
        const Cand t = h[c];
        h[c] = h[p], h[p] = t;
        p = c;
    }
}

long facility_select(const float *K, int n, int m, int *pick, double *value) {
    D2C_CHECK(m >= 1 && m <= n);
    float *cur = xmalloc_floats((size_t)n);
    memset(cur, 0, (size_t)n * sizeof(float));
    Cand *h = xcalloc((size_t)n, sizeof(Cand));
#pragma omp parallel for schedule(static)
    for (int j = 0; j < n; j++) h[j] = (Cand){gain(K + (size_t)j * n, cur, n), j, 0};
    for (int p = n / 2 - 1; p >= 0; p--) sift_down(h, n, p);
    long evals = n;
    int len = n;
    for (int t = 0; t < m; t++) {
        while (h[0].step != t) { /* stale: recompute and let it sink */
            h[0].bound = gain(K + (size_t)h[0].idx * n, cur, n);
            h[0].step = t;
            evals++;
            sift_down(h, len, 0);
        }
        const int best = h[0].idx;
        pick[t] = best;
        h[0] = h[--len];
        sift_down(h, len, 0);
        const float *row = K + (size_t)best * n;
#pragma omp parallel for schedule(static)
        for (int i = 0; i < n; i++) cur[i] = row[i] > cur[i] ? row[i] : cur[i];
        if (value) {
            double v = 0;
            for (int i = 0; i < n; i++) v += cur[i];
            value[t] = v;
        }
    }
    free(h);
    free(cur);
    return evals;
}

long facility_mmd_select(const float *K, int n, int m, const double *mk, double w, int *pick, double *value) {
    D2C_CHECK(m >= 1 && m <= n);
    float *cur = xmalloc_floats((size_t)n);
    memset(cur, 0, (size_t)n * sizeof(float));
    double *ks = xcalloc((size_t)n, sizeof(double)), *score = xcalloc((size_t)n, sizeof(double));
    char *used = xcalloc((size_t)n, 1);
    for (int t = 0; t < m; t++) {
        const double a = w * 2.0 / (t + 1), inv = 1.0 / (t + 1);
#pragma omp parallel for schedule(static)
        for (int j = 0; j < n; j++)
            score[j] = used[j] ? -INFINITY : gain(K + (size_t)j * n, cur, n) / n + a * (mk[j] - inv * ks[j]);
        int best = -1;
        for (int j = 0; j < n; j++)
            if (!used[j] && (best < 0 || score[j] > score[best])) best = j;
        pick[t] = best;
        used[best] = 1;
        const float *row = K + (size_t)best * n;
#pragma omp parallel for schedule(static)
        for (int i = 0; i < n; i++) {
            cur[i] = row[i] > cur[i] ? row[i] : cur[i];
            ks[i] += row[i];
        }
        if (value) {
            double v = 0;
            for (int i = 0; i < n; i++) v += cur[i];
            value[t] = v;
        }
    }
    free(used), free(score), free(ks), free(cur);
    return (long)n * m;
}

double facility_value(const float *K, int n, const int *pick, int m) {
    double v = 0;
    for (int i = 0; i < n; i++) {
        float c = 0;
        for (int s = 0; s < m; s++) c = D2C_MAX(c, K[(size_t)pick[s] * n + i]);
        v += c;
    }
    return v / n;
}

int select_facility(const Dataset *data, const ClassIndex *ci, int ipc, const DistMatchOptions *o, int *idx,
                    DistMatchReport *rep) {
    if (!(o->bandwidth > 0) || !isfinite(o->bandwidth))
        return d2c_error(D2C_ERR_INPUT, "--bandwidth must be positive, got %g", o->bandwidth);
    if (!(o->mmd_weight >= 0) || !isfinite(o->mmd_weight))
        return d2c_error(D2C_ERR_INPUT, "--mmd-weight must be >= 0, got %g", o->mmd_weight);
    SelectionSpace s;
    D2C_TRY(selection_space_open(&s, data, ci, ipc, o->pca_dim, o->seed));
    const int d = s.d, nc = ci->num_classes;
    const size_t kbytes = (size_t)s.nmax * s.nmax * sizeof(float);
    float *K = d2c_try_malloc(kbytes);
    if (!K) {
        selection_space_close(&s);
        return d2c_error(D2C_ERR_FAIL, "facility: cannot allocate the %d x %d kernel of a class (%.0f MB)", s.nmax,
                         s.nmax, kbytes / 1e6);
    }
    double *mk = xcalloc((size_t)s.nmax, sizeof(double));
    DistMatchReport r = {.explained = s.explained};
    for (int k = 0; k < nc; k++) {
        const int n = selection_space_class(&s, k);
        double sigma;
        const double gamma = kherding_gamma(s.fc, n, d, o->bandwidth, &sigma);
        facility_kernel(s.fc, n, d, gamma, K);
#pragma omp parallel for schedule(static)
        for (int i = 0; i < n; i++) { /* the kernel mean embedding, for the MMD */
            double m = 0;
            for (int j = 0; j < n; j++) m += K[(size_t)i * n + j];
            mk[i] = m / n;
        }
        r.evaluations += o->mmd_weight > 0 ? facility_mmd_select(K, n, ipc, mk, o->mmd_weight, s.pick, NULL)
                                           : facility_select(K, n, ipc, s.pick, NULL);
        selection_space_keep(&s, k, idx);
        const double cov = 1 - facility_value(K, n, s.pick, ipc), cov_rnd = 1 - facility_value(K, n, s.rnd, ipc);
        const double mmd = kherding_mmd2(s.fc, n, d, gamma, mk, s.pick, ipc);
        const double mmd_rnd = kherding_mmd2(s.fc, n, d, gamma, mk, s.rnd, ipc);
        r.coverage += cov / nc, r.coverage_random += cov_rnd / nc;
        r.mmd2 += mmd / nc, r.mmd2_random += mmd_rnd / nc;
        r.objective += (cov + o->mmd_weight * mmd) / nc;
        r.objective_random += (cov_rnd + o->mmd_weight * mmd_rnd) / nc;
        r.bandwidth += sigma / nc;
    }
    free(mk);
    free(K);
    selection_space_close(&s);
    if (rep) *rep = r;
    return D2C_OK;
}

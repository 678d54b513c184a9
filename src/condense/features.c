/* The PCA feature space of kherding and gadc (features.h).
 *
 * Fit: the pixel mean in double; the covariance C = (1/N) sum (x - mean)(x - mean)^T
 * accumulated in float by cblas_ssyrk over blocks of PCA_BLOCK centred rows (no centred
 * copy of the whole data set); its d largest eigenpairs by LAPACKE_ssyevr (range 'I',
 * the multiple relatively robust representations driver: only the wanted eigenvectors
 * are computed). Components are stored by decreasing eigenvalue with a fixed sign (the
 * largest-magnitude entry positive, the first such on ties) so that a fit is reproducible
 * across LAPACK builds up to rounding. Projection: one sgemm and the projected mean. */
#include "condense/features.h"

#include <lapacke.h>
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "core/status.h"
#include "core/util.h"

enum { PCA_BLOCK = 2048 }; /* rows centred and accumulated per ssyrk call */

void pca_free(Pca *p) {
    free(p->mean);
    free(p->basis);
    free(p->eigenvalues);
    memset(p, 0, sizeof *p);
}

int pca_fit(Pca *p, const float *x, int N, int D, int d) {
    memset(p, 0, sizeof *p);
    if (D < 1) return d2c_error(D2C_ERR_INPUT, "PCA: images have no pixels");
    if (d < 1 || d > D)
        return d2c_error(D2C_ERR_INPUT, "--pca-dim must be 1..%d (the pixels per image), got %d", D, d);
    if (N < 2) return d2c_error(D2C_ERR_INPUT, "PCA: needs at least 2 images, got %d", N);
    const size_t DD = (size_t)D * D;
    float *cov = d2c_try_malloc(DD * sizeof(float));
    float *z = d2c_try_malloc((size_t)D * d * sizeof(float));
    float *w = d2c_try_malloc((size_t)D * sizeof(float));
    lapack_int *support = d2c_try_malloc((size_t)2 * D * sizeof(lapack_int));
    if (!cov || !z || !w || !support) {
        free(cov), free(z), free(w), free(support);
        return d2c_error(D2C_ERR_FAIL, "PCA: cannot allocate the %d x %d covariance (%.1f MiB)", D, D,
                         DD * 4.0 / (1 << 20));
    }
    double *mean = xcalloc((size_t)D, sizeof(double));
    for (int i = 0; i < N; i++) {
        const float *xi = x + (size_t)i * D;
        for (int j = 0; j < D; j++) mean[j] += xi[j];
    }
    p->D = D, p->d = d;
    p->mean = xmalloc_floats((size_t)D);
    for (int j = 0; j < D; j++) p->mean[j] = (float)(mean[j] / N);
    free(mean);
    float *block = xmalloc_floats((size_t)PCA_BLOCK * D);
    for (int i0 = 0; i0 < N; i0 += PCA_BLOCK) {
        const int nb = D2C_MIN(PCA_BLOCK, N - i0);
#pragma omp parallel for schedule(static)
        for (int i = 0; i < nb; i++)
            for (int j = 0; j < D; j++) block[(size_t)i * D + j] = x[(size_t)(i0 + i) * D + j] - p->mean[j];
        cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, D, nb, 1.0f / N, block, D, i0 ? 1.0f : 0.0f, cov, D);
    }
    free(block);
    p->total_variance = 0;
    for (int j = 0; j < D; j++) p->total_variance += cov[(size_t)j * D + j];
    lapack_int found = 0;
    lapack_int info = LAPACKE_ssyevr(LAPACK_ROW_MAJOR, 'V', 'I', 'U', D, cov, D, 0.0f, 0.0f, D - d + 1, D, 0.0f, &found, w,
                                     z, d, support);
    free(cov);
    free(support);
    if (info != 0 || found != d) {
        free(z), free(w);
        pca_free(p);
        return d2c_error(D2C_ERR_FAIL, "PCA: LAPACKE_ssyevr failed (info %d, %d of %d eigenvalues)", (int)info, (int)found,
                         d);
    }
    /* z (D, d) holds the eigenvectors as columns, eigenvalues ascending: store them as
     * rows, largest first */
    p->basis = xmalloc_floats((size_t)d * D);
    p->eigenvalues = xcalloc((size_t)d, sizeof(double));
    for (int j = 0; j < d; j++) {
        const int col = d - 1 - j;
        float *row = p->basis + (size_t)j * D;
        int arg = 0;
        for (int i = 0; i < D; i++) {
            row[i] = z[(size_t)i * d + col];
            if (fabsf(row[i]) > fabsf(row[arg])) arg = i;
        }
        if (row[arg] < 0)
            for (int i = 0; i < D; i++) row[i] = -row[i];
        p->eigenvalues[j] = w[col] > 0 ? w[col] : 0;
    }
    free(z);
    free(w);
    return D2C_OK;
}

void pca_project(const Pca *p, const float *x, int N, float *f) {
    const int D = p->D, d = p->d;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, d, D, 1.0f, x, D, p->basis, D, 0.0f, f, d);
    float *shift = xmalloc_floats((size_t)d);
    for (int j = 0; j < d; j++) {
        double s = 0;
        for (int i = 0; i < D; i++) s += (double)p->mean[i] * p->basis[(size_t)j * D + i];
        shift[j] = (float)s;
    }
#pragma omp parallel for schedule(static)
    for (int i = 0; i < N; i++)
        for (int j = 0; j < d; j++) f[(size_t)i * d + j] -= shift[j];
    free(shift);
}

int features_pca(const Dataset *data, int d, Pca *pca, float **feat) {
    *feat = NULL;
    const int D = data->c * data->h * data->w;
    D2C_TRY(pca_fit(pca, data->images, data->n, D, d));
    float *f = d2c_try_malloc((size_t)data->n * d * sizeof(float));
    if (!f) {
        pca_free(pca);
        return d2c_error(D2C_ERR_FAIL, "PCA: cannot allocate the features of %d images", data->n);
    }
    pca_project(pca, data->images, data->n, f);
    *feat = f;
    return D2C_OK;
}

int features_check_counts(const Dataset *data, const ClassIndex *ci, int ipc) {
    for (int k = 0; k < ci->num_classes; k++) {
        const int n = class_index_count(ci, k);
        if (n < ipc)
            return d2c_error(D2C_ERR_INPUT, "class %d of %s has %d images, fewer than the %d per class asked for", k,
                             data->source, n, ipc);
    }
    return D2C_OK;
}

void features_gather_class(const float *feat, int d, const ClassIndex *ci, int k, float *out) {
    const int n = class_index_count(ci, k);
    const int *mem = ci->index + ci->start[k];
    for (int i = 0; i < n; i++) memcpy(out + (size_t)i * d, feat + (size_t)mem[i] * d, (size_t)d * sizeof(float));
}

void features_random_positions(const ClassIndex *ci, int k, int m, uint64_t seed, int *pos) {
    const int n = class_index_count(ci, k);
    int *perm = xcalloc((size_t)n, sizeof(int));
    for (int i = 0; i < n; i++) perm[i] = i;
    Rng r = rng_stream(seed, RNG_POOL, (uint64_t)k); /* select_random's stream and shuffle */
    rng_shuffle(&r, perm, n);
    memcpy(pos, perm, (size_t)m * sizeof(int));
    free(perm);
}

int selection_space_open(SelectionSpace *s, const Dataset *data, const ClassIndex *ci, int ipc, int pca_dim,
                         uint64_t seed) {
    memset(s, 0, sizeof *s);
    D2C_TRY(features_check_counts(data, ci, ipc));
    D2C_TRY(features_pca(data, pca_dim, &s->pca, &s->feat));
    s->ci = ci, s->ipc = ipc, s->seed = seed, s->d = s->pca.d;
    s->nmax = 1;
    for (int k = 0; k < ci->num_classes; k++) s->nmax = D2C_MAX(s->nmax, class_index_count(ci, k));
    s->fc = xmalloc_floats((size_t)s->nmax * s->d);
    s->pick = xcalloc((size_t)ipc, sizeof(int));
    s->rnd = xcalloc((size_t)ipc, sizeof(int));
    for (int j = 0; j < s->d; j++) s->explained += s->pca.eigenvalues[j];
    s->explained = s->pca.total_variance > 0 ? s->explained / s->pca.total_variance : 1;
    return D2C_OK;
}

int selection_space_class(SelectionSpace *s, int k) {
    features_gather_class(s->feat, s->d, s->ci, k, s->fc);
    return class_index_count(s->ci, k);
}

void selection_space_keep(SelectionSpace *s, int k, int *idx) {
    const ClassIndex *ci = s->ci;
    for (int p = 0; p < s->ipc; p++) idx[(size_t)k * s->ipc + p] = ci->index[ci->start[k] + s->pick[p]];
    features_random_positions(ci, k, s->ipc, s->seed, s->rnd);
}

void selection_space_close(SelectionSpace *s) {
    free(s->fc), free(s->pick), free(s->rnd), free(s->feat);
    pca_free(&s->pca);
    memset(s, 0, sizeof *s);
}

/* The feature space of the distribution-matching selections (kherding.c, gadc.c): a PCA of
 * the pixels, fit on the images being condensed, and the per-class helpers both methods
 * share (gathering a class's feature rows, the random subset that their objectives are
 * compared with).
 * Shapes: N images, D = C*H*W pixels per image, d PCA components, n images of one class. */
#ifndef D2C_CONDENSE_FEATURES_H
#define D2C_CONDENSE_FEATURES_H

#include <stdint.h>

#include "io/dataset.h"

typedef struct {
    int D, d;
    float *mean;          /* (D) the pixel mean */
    float *basis;         /* (d, D) row j = component j: orthonormal, by decreasing variance,
                             sign fixed so that its largest-magnitude entry is positive */
    double *eigenvalues;  /* (d) the variance along each component (covariance with 1/N) */
    double total_variance; /* trace of the covariance: sum of all D eigenvalues */
} Pca;

/* Fits the d leading principal components of x (N, D): the covariance (1/N) is accumulated
 * with ssyrk over centred blocks of rows and its top d eigenpairs come from LAPACKE_ssyevr.
 * D2C_ERR_INPUT when d is outside 1..D or N < 2 (naming --pca-dim / the image count),
 * D2C_ERR_FAIL when the D x D covariance cannot be allocated or the eigensolver fails. */
int pca_fit(Pca *p, const float *x, int N, int D, int d);
/* f (N, d) = (x - mean) basis^T, one sgemm. */
void pca_project(const Pca *p, const float *x, int N, float *f);
void pca_free(Pca *p);

/* The PCA of all of data's images (d components) and every image's features: *feat is
 * (data->n, d), free()d by the caller. Errors as pca_fit. */
int features_pca(const Dataset *data, int d, Pca *pca, float **feat);

/* D2C_ERR_INPUT naming the class when one holds fewer than ipc images. */
int features_check_counts(const Dataset *data, const ClassIndex *ci, int ipc);

/* Copies the feature rows of class k's images (ci order) into out (n_k, d). */
void features_gather_class(const float *feat, int d, const ClassIndex *ci, int k, float *out);

/* The m positions in 0..n-1 that select_random (baselines.c) keeps for class k at this
 * seed, in its order: the random subset the selections report their objective against. */
void features_random_positions(const ClassIndex *ci, int k, int m, uint64_t seed, int *pos);

/* What a class-by-class selection of ipc images per class works in: the PCA features of
 * every image, one class's rows at a time, and the positions picked in it beside the random
 * subset's. Both kherding and gadc run
 *   selection_space_open; for each class k: n = selection_space_class(k), fill pick,
 *   selection_space_keep(k, idx); selection_space_close. */
typedef struct {
    const ClassIndex *ci;
    int ipc;
    uint64_t seed;
    Pca pca;
    float *feat;      /* (N, d) every image's features */
    int d;            /* PCA components */
    int nmax;         /* the largest class's image count */
    float *fc;        /* (n_max, d) the current class's rows, filled by selection_space_class */
    int *pick;        /* (ipc) positions in the class picked by the method */
    int *rnd;         /* (ipc) the random subset's positions, set by selection_space_keep */
    double explained; /* fraction of the pixel variance the components hold */
} SelectionSpace;

/* Checks the class counts, fits the PCA (pca_dim components) and allocates the buffers.
 * Errors as features_check_counts and features_pca; nothing to close on error. */
int selection_space_open(SelectionSpace *s, const Dataset *data, const ClassIndex *ci, int ipc, int pca_dim,
                         uint64_t seed);
/* Gathers class k's feature rows into s->fc; returns its image count. */
int selection_space_class(SelectionSpace *s, int k);
/* Writes class k's picks into idx (class-major, data-set indices) and draws the random
 * subset's positions into s->rnd for the report. */
void selection_space_keep(SelectionSpace *s, int k, int *idx);
void selection_space_close(SelectionSpace *s);

#endif

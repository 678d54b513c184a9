/* The sanity ladder: image sets whose order of quality is known, which every evaluator
 * must rank correctly, and the rank agreement between evaluators over them and over
 * model samples (`d2c evaluator ladder`, tests/test_evaluator_ladder.c).
 *
 * From a data source with train and test splits, for a set size n:
 *   real             n test images (a fixed shuffle of the test split)
 *   noise-0.05/0.1/0.2   the same + N(0, sigma^2) per pixel, clipped to [-1, 1]
 *   blur             the same blurred by a Gaussian of sigma 1 pixel (5 taps, edges repeated)
 *   memorised-M      the first M of the real set repeated to n, M = 6000, 600, 60 at
 *                    n = 10000 (M = 0.6 n, 0.06 n, 0.006 n in general, at least 2)
 *   collapsed        n training images (not in the reference) of the first half of the
 *                    classes only
 * against the reference: n_ref training images, the fixed subset eval_limit_dataset
 * picks (the one `d2c eval --ref SRC:train` uses), disjoint from every set.
 * The orderings (lower FID / KID first): real < noise-0.05 < noise-0.1 < noise-0.2,
 * real < blur, memorised 0.6 n < 0.06 n < 0.006 n, real < collapsed.
 *
 * Shape letters: N images, C H W image. */
#ifndef D2C_EVAL_LADDER_H
#define D2C_EVAL_LADDER_H

#include <stdint.h>

#include "io/dataset.h"

enum {
    LADDER_REAL, LADDER_NOISE_05, LADDER_NOISE_10, LADDER_NOISE_20, LADDER_BLUR,
    LADDER_MEM_LARGE, LADDER_MEM_MID, LADDER_MEM_SMALL, LADDER_COLLAPSED, LADDER_SETS
};

typedef struct {
    char name[256];
    int n;
    float *images;   /* (n, C, H, W) */
    int64_t *labels; /* (n) or NULL */
    int is_samples;  /* an extra samples file, not a ladder rung */
} LadderSet;

typedef struct {
    Dataset train, test; /* the data source's splits */
    Dataset ref_store;   /* the reference when it is a subset of train */
    Dataset *ref;
    int n;               /* images per ladder set */
    LadderSet *sets;     /* (n_sets): the LADDER_SETS rungs, then samples files */
    int n_sets;
} Ladder;

/* Loads data's splits and builds the rungs for sets of n images against n_ref reference
 * images. Status (D2C_ERR_INPUT when n exceeds the test split or the train split cannot
 * give n_ref + a collapsed set). */
int ladder_build(Ladder *l, const char *data, int n, int n_ref);
/* Adds a samples file (images F32 (N, C, H, W), labels optional): its first n images.
 * Status. */
int ladder_add_samples(Ladder *l, const char *path);
void ladder_free(Ladder *l);

/* The required orderings: set `lower` must score below set `higher`. */
typedef struct { int lower, higher; } LadderOrder;
enum { LADDER_ORDERS = 7 };
extern const LadderOrder LADDER_ORDER[LADDER_ORDERS];

/* Spearman's rank correlation of x and y (n), ties ranked by their mean rank; NaN when
 * n < 3 or either is constant. */
double spearman(const double *x, const double *y, int n);

#endif

/* Measuring images with several evaluators at once: a suite holds the loaded evaluators
 * of a set (evaluator.h's EvaluatorSet) with their reference features, and measures any
 * number of sample sets against that reference: per evaluator FID, KID, IS, precision,
 * recall, density, coverage, class accuracy, and the ratio of FID to the evaluator's
 * calibration anchor; across evaluators the consensus.
 *
 * The consensus is the geometric mean over the evaluators that carry an anchor of
 * FID_e(samples) / FID_e(anchor_e), the anchor being the FID that evaluator gives 10,000
 * real training images plus N(0, 0.1^2) pixel noise against the test split (measured by
 * `d2c evaluator calibrate`, stored in the file). Each evaluator counts equally whatever
 * its FID scale, and 1.0 reads "as far from the data as sigma = 0.1 noise"; lower is
 * better.
 *
 * Shape letters: N images, C H W image, K classes, D features. */
#ifndef D2C_EVAL_SUITE_H
#define D2C_EVAL_SUITE_H

#include <stdint.h>

#include "eval/evaluator.h"
#include "eval/metrics.h"
#include "eval/refstats.h"
#include "io/dataset.h"

typedef struct {
    const char *cache_dir; /* reference-feature cache; NULL: none */
    int batch;             /* images per evaluator call */
    int quiet;             /* no progress lines */
    KidOptions kid;
    Engine *engine;        /* the evaluators' backend; NULL = engine_cpu_default() */
} SuiteOptions;

SuiteOptions suite_default_options(void);

typedef struct {
    char name[64];        /* the set's name */
    int n;                /* evaluators */
    int default_index;
    Evaluator *nets;      /* (n) */
    EvaluatorInfo *infos; /* (n) */
    RefFeatures *refs;    /* (n) the reference's features under each */
    int n_ref;
    char ref_source[512];
} EvaluatorSuite;

/* Loads every evaluator of set, checks that each takes ref's image shape, and computes
 * (or reads from the cache) the reference features. Status; nothing to free on failure. */
int suite_open(EvaluatorSuite *s, const EvaluatorSet *set, const Dataset *ref, const SuiteOptions *o);
void suite_close(EvaluatorSuite *s);

typedef struct {
    QualityMetrics q;
    double fid_ratio; /* fid / the evaluator's anchor_fid; NaN without an anchor */
} EvaluatorResult;

/* Measures images (n, C, H, W) (labels (n) or NULL) with every evaluator: out (s->n).
 * label names the progress lines (NULL: silent). Status. */
int suite_measure(EvaluatorSuite *s, const float *images, const int64_t *labels, int n, const SuiteOptions *o,
                  const char *label, EvaluatorResult *out);

/* The geometric mean of the defined fid_ratio values of r (n); *n_used of them. NaN when
 * none is defined. */
double suite_consensus(const EvaluatorResult *r, int n, int *n_used);

/* The fixed subset eval and the ladder use for a large reference: at most max_n images of
 * d (max_n <= 0: all), chosen by a shuffle keyed by (0, RNG_EVAL, 0) and kept in data-set
 * order; returns d itself when it is small enough, else store (filled; free it). */
Dataset *eval_limit_dataset(Dataset *d, int max_n, Dataset *store);

/* Adds N(0, sigma^2) to every pixel of images (n * per) from stream (seed, RNG_EVAL,
 * stream), clipped to [-1, 1]. */
void eval_add_noise(float *images, size_t count, float sigma, uint64_t seed, uint64_t stream);

/* `d2c evaluator calibrate`: the anchor of the evaluator file at path, measured on data
 * (a SRC with a test split): FID and KID of 10,000 training images (eval_limit_dataset)
 * plus N(0, 0.1^2) noise against the whole test split; written into the file's metadata
 * (anchor_fid, anchor_kid, anchor). *fid, *kid receive the values. */
int evaluator_calibrate(const char *path, const char *data, const SuiteOptions *o, double *fid, double *kid);

#endif

/* Training the evaluator networks: one optimisation loop (evaluator_fit) on images in
 * memory, used by `d2c evaluator train` (evaluator_train: data set, validation split,
 * test split once at the end, file) and by the classification accuracy score (cas_score:
 * a small classifier trained on generated samples alone, tested on real images).
 *
 * The loop: Adam, linear warm-up then cosine decay to 0, random shifts (black fill) and
 * horizontal flips. Classifier kinds minimise softmax cross-entropy; the ae minimises the
 * pixel MSE of its reconstruction, with its linear probe trained beside it on detached
 * features. Epoch e's order is a permutation keyed by (seed, RNG_BATCH, e); step s's
 * augmentation comes from (seed, RNG_AUGMENT, s); initial weights from (seed, RNG_INIT,
 * tensor). The kernels give the same bits for any thread count, so a run is
 * reproducible to the bit.
 *
 * Shape letters: N images, C H W image, K classes. */
#ifndef D2C_EVAL_TRAIN_H
#define D2C_EVAL_TRAIN_H

#include <stdint.h>

#include "eval/evaluator.h"

typedef struct {
    int epochs;          /* passes over the images (used when steps == 0) */
    long steps;          /* > 0: exactly this many steps, epochs repeating as needed */
    int batch, seed;
    double lr;           /* Adam peak learning rate */
    int warmup;          /* linear warm-up steps */
    int crop_pad;        /* random shifts of up to this many pixels */
    int flip;            /* random horizontal flips */
    const char *label;   /* progress-line name; NULL: silent */
    /* optional validation images, measured after every epoch */
    const float *val_images;
    const int64_t *val_labels;
    int n_val;
} EvalFitOptions;

typedef struct {
    double val_accuracy; /* after the last epoch (ae: the probe's); NaN without validation */
    double val_mse;      /* ae: reconstruction MSE on the validation images; NaN otherwise */
    double train_loss;   /* mean loss of the last epoch */
    long steps;
    double seconds;
} EvalFitReport;

/* Trains net (already initialised) on images idx[0..n) of images (., C, H, W) with
 * labels; idx NULL means 0..n-1. D2C_ERR_INPUT if n < batch; D2C_ERR_FAIL if the loss
 * becomes non-finite. */
int evaluator_fit(Evaluator *net, const float *images, const int64_t *labels, const int *idx, int n,
                  const EvalFitOptions *o, EvalFitReport *rep);

/* ---- `d2c evaluator train` */
typedef struct {
    const char *data;        /* training SRC; its train split minus the validation images */
    const char *out;         /* evaluator file to write */
    const char *tag;         /* id prefix ("fmnist"); NULL: derived from data */
    const char *command;     /* recorded in the metadata */
    EvalKind kind;
    int num_stages;          /* 0: the kind's default stages */
    int channels[EVAL_MAX_STAGES], strides[EVAL_MAX_STAGES];
    int hidden;              /* 0: the kind's default */
    int num_dec;             /* 0: the default decoder channels */
    int dec_channels[EVAL_MAX_STAGES + 1];
    int epochs, batch, seed;
    int val;                 /* held-out validation images: the last of every class, in proportion */
    int limit;               /* > 0: use only about `limit` images (the first of every class) */
    int crop_pad, flip;
    int test;                /* measure the :test split at the end when the source has one */
    double lr;
    int quiet;
    Engine *engine;          /* the backend; NULL = engine_cpu_default() */
} EvalTrainOptions;

EvalTrainOptions eval_train_default_options(void);
/* The SRC of the test split of a data source (fashion-mnist -> fashion-mnist:test,
 * folder:DIR[:train|:test] -> folder:DIR:test when DIR/test exists), or NULL when it has
 * none. Caller frees. */
char *eval_test_source(const char *src);
/* Trains, reports validation accuracy (ae: MSE) per epoch and the test split once at the
 * end (stderr), writes o->out; fills info. Status. */
int evaluator_train(const EvalTrainOptions *o, EvaluatorInfo *info);

/* ---- the classification accuracy score (cas.c) */
typedef struct {
    long steps;   /* optimisation steps, the same whatever the number of samples */
    int batch, seed;
    double lr;
    int warmup;
    int quiet;
    Engine *engine;          /* the backend; NULL = engine_cpu_default() */
} CasOptions;

/* 600 steps of 64, lr 2e-3, 60 warm-up steps, seed 0 (see docs/EVALUATION.md). */
CasOptions cas_default_options(void);
/* The architecture CAS trains: a narrow pool ConvNet (16, 32, 32, 48, 64 channels). */
EvalArch cas_arch(int C, int H, int W, int K);
/* Trains cas_arch on images (n, C, H, W) with labels in [0, K) alone, then *cas = its
 * accuracy on test images (n_test) with their labels. Deterministic for o->seed. */
int cas_score(const float *images, const int64_t *labels, int n, int C, int H, int W, int K,
              const float *test_images, const int64_t *test_labels, int n_test, const CasOptions *o,
              double *cas);

#endif

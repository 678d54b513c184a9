/* The evaluator network: a small ConvNet classifier whose penultimate features and
 * softmax probabilities `d2c eval` measures images with (FID on its features, Inception
 * Score on its probabilities, precision/recall/density/coverage, class accuracy).
 *
 * Architecture "convnet-v1": L stages, each conv3x3 (stride 1 or 2, with bias) followed
 * by GroupNorm + SiLU; a global average pool gives the features (B, D = C_{L-1}); a
 * linear layer gives the logits (B, K); softmax gives the probabilities. Default stages
 * (32, s1) (64, s2) (64, s1) (96, s2) (128, s2), 8 groups: 28x28 -> 4x4x128 -> D = 128
 * (a receptive field of 29 pixels, so the pooled features see whole garments).
 *
 * Parameters live in one flat float buffer; EvalLayout holds every tensor's OFFSET, so
 * weights, gradients and Adam moments share it. The safetensors file names the tensors
 * conv{l}.weight/bias, norm{l}.weight/bias, fc.weight/bias, and its metadata holds the
 * architecture JSON, the data set, accuracies, the training command and a content hash
 * (FNV-1a 64 of the float32 weights in tensor order) that names the evaluator:
 * "<tag>-convnet-v1:<16 hex digits>".
 *
 * Shape letters: B batch, Cin image channels, H W image size, L stages, Cl stage l's
 * channels, Nl its output positions, G GroupNorm groups, D feature width, K classes. */
#ifndef D2C_EVAL_EVALUATOR_H
#define D2C_EVAL_EVALUATOR_H

#include <stddef.h>
#include <stdint.h>

#include "engine/kernels.h"
#include "eval/legacy_exit.h" /* TEMPORARY, issue 9 */

#define EVAL_ARCH_NAME "convnet-v1"
#define EVAL_MAX_STAGES 8
#define EVAL_MAX_TENSORS (4 * EVAL_MAX_STAGES + 2)

typedef struct {
    int in_channels;                  /* Cin */
    int height, width;                /* H, W */
    int num_stages;                   /* L */
    int channels[EVAL_MAX_STAGES];    /* Cl */
    int strides[EVAL_MAX_STAGES];     /* 1 or 2 */
    int groups;                       /* G, divides every Cl */
    int num_classes;                  /* K */
} EvalArch;

/* The default stages above for images of this shape. */
EvalArch eval_arch_default(int in_channels, int height, int width, int num_classes);
/* 0 if buildable, else -1 with a reason in why. */
int eval_arch_validate(const EvalArch *a, char *why, size_t why_len);
/* JSON object stored as metadata "arch" (caller frees), and back (-1 with a reason). */
char *eval_arch_to_json(const EvalArch *a);
int eval_arch_from_json(const char *json, EvalArch *a, char *why, size_t why_len);

typedef struct { size_t w, b; } EvalAffine; /* offsets of a weight and its bias */

typedef struct {
    char name[32];
    int ndim;
    int64_t shape[4];
    size_t offset, count; /* floats */
} EvalTensor;

typedef struct {
    EvalArch arch;
    EvalAffine conv[EVAL_MAX_STAGES]; /* w (Cl, C_{l-1}, 3, 3), b (Cl) */
    EvalAffine norm[EVAL_MAX_STAGES]; /* gamma (Cl), beta (Cl) */
    EvalAffine fc;                    /* w (K, D), b (K) */
    int h[EVAL_MAX_STAGES], w[EVAL_MAX_STAGES]; /* stage l's output size */
    int feature_dim;                  /* D */
    EvalTensor tensors[EVAL_MAX_TENSORS];
    int n_tensors;
    size_t n_params;
} EvalLayout;

void eval_layout_build(EvalLayout *lay, const EvalArch *a);
/* PyTorch's default Conv2d/Linear initialisation (uniform +-1/sqrt(fan_in) for weights
 * and biases), GroupNorm 1/0, from the counter-based RNG keyed by seed. */
void eval_init_params(const EvalLayout *lay, float *params, uint64_t seed);

/* A network instance sized for batches of up to max_batch images. */
typedef struct {
    EvalLayout lay;
    int max_batch;
    float *params;                  /* (n_params) */
    float *grads;                   /* (n_params), backward accumulates */
    float *z[EVAL_MAX_STAGES];      /* (B, Cl, Nl) conv outputs */
    float *a[EVAL_MAX_STAGES];      /* (B, Cl, Nl) silu(groupnorm(z)) */
    float *mean[EVAL_MAX_STAGES];   /* (B, G) */
    float *rstd[EVAL_MAX_STAGES];   /* (B, G) */
    float *feats;                   /* (B, D) pooled features */
    float *logits;                  /* (B, K) */
    float *probs;                   /* (B, K) softmax */
    float *dbuf[2];                 /* backward scratch, each max over l of B*Cl*Nl */
    float *dfeats;                  /* (B, D) */
    const float *input;             /* the last forward's x (B, Cin, H, W) */
    int last_batch;                 /* the last forward's B */
    Workspace ws;
} Evaluator;

void evaluator_create(Evaluator *net, const EvalArch *a, int max_batch);
void evaluator_destroy(Evaluator *net);

/* feats, logits and probs of x (B, Cin, H, W), 1 <= B <= max_batch; x must stay valid
 * until evaluator_backward. */
void evaluator_forward(Evaluator *net, const float *x, int B);
/* Backward of the last forward given dlogits (B, K): accumulates parameter gradients into
 * net->grads and, when dx is not NULL, dx (B, Cin, H, W) += d loss / d x. */
void evaluator_backward(Evaluator *net, const float *dlogits, float *dx);

/* Softmax cross-entropy averaged over the batch: logits (B, K), labels (B) in [0, K).
 * Forward writes probs (B, K) and returns mean_b -log p[b, label_b];
 * backward: dlogits += scale * (probs - onehot(labels)) / B. */
float softmax_xent_forward(float *probs, const float *logits, const int64_t *labels, int B, int K);
void softmax_xent_backward(float *dlogits, const float *probs, const int64_t *labels, int B, int K,
                           float scale);
/* probs (B, K) = softmax(logits) row by row (max-subtracted). */
void softmax_rows(float *probs, const float *logits, int B, int K);

/* Runs images (n, Cin, H, W) through the network in batches of max_batch; writes feats
 * (n, D) and/or probs (n, K) (either may be NULL). label names a progress line on stderr
 * (NULL: silent). */
void evaluator_apply(Evaluator *net, const float *images, int n, float *feats, float *probs,
                     const char *label);
/* Fraction of images whose argmax class equals labels. */
double evaluator_accuracy(Evaluator *net, const float *images, const int64_t *labels, int n);

/* FNV-1a 64 over bytes, continuing from h (start with FNV64_INIT). */
#define FNV64_INIT 0xcbf29ce484222325ULL
uint64_t fnv1a64(uint64_t h, const void *data, size_t len);
/* The content hash of a parameter buffer: FNV-1a 64 of its float32 bytes. */
uint64_t evaluator_hash(const EvalLayout *lay, const float *params);

/* What a saved evaluator says about itself. */
typedef struct {
    char path[1024];     /* the file it was loaded from */
    char id[96];         /* "<tag>-convnet-v1:<hash16>" */
    char hash[17];       /* 16 lower-case hex digits */
    char dataset[512];   /* the SRC it was trained on */
    double test_accuracy; /* NaN when not recorded */
} EvaluatorInfo;

/* Metadata the trainer records beside the weights (strings may be NULL to omit). */
typedef struct {
    const char *tag;            /* id prefix, e.g. "fmnist" */
    const char *dataset;        /* training SRC */
    const char *command;        /* the command line that made it */
    const char *class_names;    /* JSON list */
    int seed, epochs, train_images;
    double val_accuracy, test_accuracy; /* NaN when not measured */
    double train_seconds;
} EvaluatorMeta;

/* Writes net's weights with metadata atomically; fills info (may be NULL). */
void evaluator_save(const Evaluator *net, const char *path, const EvaluatorMeta *meta,
                    EvaluatorInfo *info);
/* Loads a file written by evaluator_save into a new instance for batches of max_batch;
 * dies with status 2 naming the file if it is not an evaluator or its weights do not
 * match the recorded hash. */
void evaluator_load(Evaluator *net, EvaluatorInfo *info, const char *path, int max_batch);

/* The folder holding the committed evaluators: $D2C_MODELS_DIR, else models/ beside or
 * above the running executable, else the source tree's models/ (D2C_SOURCE_DIR). NULL
 * when none exists. Caller frees. */
char *evaluator_models_dir(void);
/* The committed evaluator for a reference SRC whose images are (C, H, W): by the data
 * set's name (fashion-mnist -> evaluator-fashion-mnist.safetensors), else the one
 * evaluator-*.safetensors in the models folder for images of that shape. Dies with status
 * 2 (suggesting --evaluator) when there is none. Caller frees. */
char *evaluator_default_path(const char *ref_src, int C, int H, int W);

/* ---- training (evaluator_train.c) */
typedef struct {
    const char *data;        /* training SRC; its train split minus the validation images */
    const char *out;         /* evaluator file to write */
    const char *tag;         /* id prefix ("fmnist"); NULL: derived from data */
    const char *command;     /* recorded in the metadata */
    int num_stages;          /* 0: the default stages */
    int channels[EVAL_MAX_STAGES], strides[EVAL_MAX_STAGES];
    int epochs, batch, seed;
    int val;                 /* held-out validation images: the last of every class, in proportion */
    int limit;               /* > 0: use only about `limit` images (the first of every class) */
    int crop_pad;            /* random-crop augmentation: shift up to this many pixels */
    int flip;                /* random horizontal flips */
    int test;                /* measure the :test split at the end when the source has one */
    double lr;               /* Adam peak learning rate (warm-up, then cosine to 0) */
    int quiet;
} EvalTrainOptions;

EvalTrainOptions eval_train_default_options(void);
/* Trains, reports validation accuracy per epoch and test accuracy at the end (stderr),
 * writes o->out; fills info. Deterministic given the options (any thread count). */
void evaluator_train(const EvalTrainOptions *o, EvaluatorInfo *info);

#endif

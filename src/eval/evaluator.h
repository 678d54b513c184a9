/* The evaluator networks: small ConvNets whose features (and class probabilities) `d2c
 * eval` measures images with (FID, KID, precision/recall/density/coverage on the
 * features; Inception Score and class accuracy on the probabilities).
 *
 * Every kind starts with the same encoder: L stages, each conv3x3 (stride 1 or 2, with
 * bias) followed by GroupNorm + SiLU. The kinds differ in what becomes the features:
 *   pool     ("convnet-v1")  global average pool of the last stage (D = C_{L-1}); a
 *                            linear layer gives the logits. Trained as a classifier.
 *   spatial  ("spatial-v1")  the last stage's map flattened (C_{L-1} * N_{L-1}, the
 *                            spatial layout kept), a linear layer of F units and SiLU
 *                            (D = F); a linear layer gives the logits. A classifier.
 *   ae       ("ae-v1")       an autoencoder: the flattened map -> linear bottleneck of F
 *                            units (D = F, no activation) -> decoder: linear to a
 *                            (dec_channels[0], H / 2^U, W / 2^U) map, GroupNorm + SiLU,
 *                            then U times [nearest upsample x2 -> conv3x3 -> GroupNorm +
 *                            SiLU], a last conv3x3 to the image channels. Trained on the
 *                            pixel MSE alone; a linear probe (the logits) is trained on
 *                            the detached features beside it, so IS and class accuracy
 *                            exist but never shape the feature space.
 *
 * Parameters live in one flat float buffer; EvalLayout holds every tensor's OFFSET, so
 * weights, gradients and Adam moments share it. The content hash (FNV-1a 64 of the
 * float32 weights in tensor order) names an evaluator: "<tag>-<arch name>:<16 hex>".
 *
 * Errors follow core/status.h: functions that can fail on their input return a status
 * and record the message; out-of-memory and broken invariants are fatal.
 *
 * Shape letters: B batch, Cin image channels, H W image size, L stages, Cl stage l's
 * channels, Nl its output positions, G GroupNorm groups, F hidden width, D feature
 * width, K classes, U decoder upsamplings. */
#ifndef D2C_EVAL_EVALUATOR_H
#define D2C_EVAL_EVALUATOR_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"
#include "engine/backend.h"

#define EVAL_MAX_STAGES 8
#define EVAL_MAX_TENSORS 96

typedef enum { EVAL_KIND_POOL = 0, EVAL_KIND_SPATIAL = 1, EVAL_KIND_AE = 2 } EvalKind;

/* "convnet-v1", "spatial-v1", "ae-v1": the architecture name in ids and files. */
const char *eval_kind_arch_name(EvalKind kind);
/* "pool", "spatial", "ae": the arch JSON's "kind" and the --kind option. */
const char *eval_kind_name(EvalKind kind);
/* Parses a kind name ("pool", "spatial", "ae"/"autoencoder"); status. */
int eval_kind_parse(const char *name, EvalKind *kind);

typedef struct {
    EvalKind kind;
    int in_channels;                  /* Cin */
    int height, width;                /* H, W */
    int num_stages;                   /* L */
    int channels[EVAL_MAX_STAGES];    /* Cl */
    int strides[EVAL_MAX_STAGES];     /* 1 or 2 */
    int groups;                       /* G, divides every Cl and decoder channel count */
    int num_classes;                  /* K */
    int hidden;                       /* F: spatial fc width / ae bottleneck; 0 for pool */
    int num_up;                       /* U: ae decoder upsamplings (= stride-2 stages) */
    int dec_channels[EVAL_MAX_STAGES + 1]; /* ae: decoder map channels, smallest map first */
} EvalArch;

/* The committed kinds' default architecture for images of this shape:
 * encoder (32, s1) (64, s2) (64, s1) (96, s2) (128, s2) for pool; (32, s1) (64, s2)
 * (64, s1) (96, s2) (32, s2), F = 256 for spatial; (32, s1) (64, s2) (64, s1) (16, s2),
 * F = 128, decoder channels 16, 32, 16 for ae; 8 groups. */
EvalArch eval_arch_default(EvalKind kind, int in_channels, int height, int width, int num_classes);
/* D2C_OK if buildable, else D2C_ERR_INPUT naming the problem. */
int eval_arch_validate(const EvalArch *a);
/* JSON object stored as metadata "arch" (caller frees), and back (status). A JSON
 * without "kind" is a pool network (files written before kinds existed). */
char *eval_arch_to_json(const EvalArch *a);
int eval_arch_from_json(const char *json, EvalArch *a);

typedef struct { size_t w, b; } EvalAffine; /* offsets of a weight and its bias */

typedef struct {
    char name[32];
    int ndim;
    int64_t shape[4];
    size_t offset, count; /* floats */
    int fan_in;           /* for the default initialisation; 0 for norms */
} EvalTensor;

typedef struct {
    EvalArch arch;
    EvalAffine conv[EVAL_MAX_STAGES]; /* w (Cl, C_{l-1}, 3, 3), b (Cl) */
    EvalAffine norm[EVAL_MAX_STAGES]; /* gamma (Cl), beta (Cl) */
    EvalAffine hidden;                /* spatial / ae: w (F, flat), b (F) */
    EvalAffine fc;                    /* w (K, D), b (K): classifier head or ae probe */
    EvalAffine dec_fc;                /* ae: w (Cd0 * n0, F), b */
    EvalAffine dec_conv[EVAL_MAX_STAGES + 1]; /* ae: [u] for u = 1..U; [0] unused */
    EvalAffine dec_norm[EVAL_MAX_STAGES + 1]; /* ae: [u] for u = 0..U */
    EvalAffine out_conv;              /* ae: w (Cin, Cd_U, 3, 3), b (Cin) */
    int h[EVAL_MAX_STAGES], w[EVAL_MAX_STAGES]; /* encoder stage l's output size */
    int dec_h[EVAL_MAX_STAGES + 1], dec_w[EVAL_MAX_STAGES + 1]; /* decoder map u's size */
    int flat_dim;                     /* C_{L-1} * N_{L-1} */
    int feature_dim;                  /* D */
    EvalTensor tensors[EVAL_MAX_TENSORS];
    int n_tensors;
    size_t n_params;
} EvalLayout;

/* The arch must be valid (eval_arch_validate). */
void eval_layout_build(EvalLayout *lay, const EvalArch *a);
/* PyTorch's default Conv2d/Linear initialisation (uniform +-1/sqrt(fan_in) for weights
 * and biases), GroupNorm 1/0, from the counter-based RNG keyed by (seed, tensor). */
void eval_init_params(const EvalLayout *lay, float *params, uint64_t seed);

/* A network instance sized for batches of up to max_batch images. */
typedef struct {
    EvalLayout lay;
    Engine *eng;                    /* every buffer below is device memory of eng */
    int max_batch;
    float *xin;                     /* (B, Cin, H, W) uploaded batch; NULL on host memory */
    float *params;                  /* (n_params) */
    float *grads;                   /* (n_params), backward accumulates */
    float *z[EVAL_MAX_STAGES];      /* (B, Cl, Nl) conv outputs */
    float *a[EVAL_MAX_STAGES];      /* (B, Cl, Nl) silu(groupnorm(z)) */
    float *mean[EVAL_MAX_STAGES];   /* (B, G) */
    float *rstd[EVAL_MAX_STAGES];   /* (B, G) */
    float *hpre;                    /* spatial: (B, F) before SiLU */
    float *feats;                   /* (B, D) */
    float *logits;                  /* (B, K) */
    float *probs;                   /* (B, K) softmax */
    /* ae decoder (NULL for the classifier kinds) */
    float *dz[EVAL_MAX_STAGES + 1]; /* (B, Cd_u, n_u) pre-norm maps */
    float *da[EVAL_MAX_STAGES + 1]; /* (B, Cd_u, n_u) silu(groupnorm) */
    float *up[EVAL_MAX_STAGES + 1]; /* (B, Cd_{u-1}, n_u) upsampled inputs, u >= 1 */
    float *dmean[EVAL_MAX_STAGES + 1], *drstd[EVAL_MAX_STAGES + 1]; /* (B, G) */
    float *recon;                   /* (B, Cin, H, W) */
    float *dbuf[3];                 /* backward scratch, each the largest map */
    float *dfeats;                  /* (B, D) */
    float *dhid;                    /* (B, F) */
    const float *input;             /* the last forward's x (B, Cin, H, W) */
    int last_batch;                 /* the last forward's B */
} Evaluator;

/* On eng (NULL: engine_cpu_default()), weights zero. Status: D2C_ERR_INPUT for an
 * invalid arch (nothing allocated then). */
int evaluator_create(Evaluator *net, Engine *eng, const EvalArch *a, int max_batch);
void evaluator_destroy(Evaluator *net);
/* A batch of B host images made visible to the engine: uploaded into net->xin, or the
 * host pointer itself on an engine of host memory. Valid until the next stage call. */
const float *evaluator_stage(Evaluator *net, const float *images, int B);
/* The weights between host and engine; init = eval_init_params on the host + upload. */
void evaluator_upload_params(Evaluator *net, const float *host);
void evaluator_download_params(const Evaluator *net, float *host);
void evaluator_init_weights(Evaluator *net, uint64_t seed);

/* feats, logits and probs of x (B, Cin, H, W, device memory: evaluator_stage), 1 <= B <=
 * max_batch; x must stay valid until evaluator_backward. */
void evaluator_forward(Evaluator *net, const float *x, int B);
/* ae only: recon (B, Cin, H, W) from the last forward's features. */
void evaluator_reconstruct(Evaluator *net);
/* Backward of the last forward. dlogits (B, K) or NULL; drecon (B, Cin, H, W) or NULL
 * (ae only, after evaluator_reconstruct). Accumulates parameter gradients into
 * net->grads and, when dx is not NULL, dx (B, Cin, H, W) += d loss / d x. In the ae the
 * logits' gradient reaches only the probe (fc.*): the features are detached for it. */
void evaluator_backward(Evaluator *net, const float *dlogits, const float *drecon, float *dx);

/* Softmax cross-entropy averaged over the batch, on host arrays: logits (B, K), labels
 * (B) in [0, K).
 * Forward writes probs (B, K) and returns mean_b -log p[b, label_b];
 * backward: dlogits += scale * (probs - onehot(labels)) / B. */
float softmax_xent_forward(float *probs, const float *logits, const int64_t *labels, int B, int K);
void softmax_xent_backward(float *dlogits, const float *probs, const int64_t *labels, int B, int K,
                           float scale);
/* Runs host images (n, Cin, H, W) through the network in batches of max_batch; writes
 * host feats (n, D) and/or probs (n, K) (either may be NULL). label names a progress line on stderr
 * (NULL: silent). */
void evaluator_apply(Evaluator *net, const float *images, int n, float *feats, float *probs,
                     const char *label);
/* Fraction of images whose argmax class equals labels. */
double evaluator_accuracy(Evaluator *net, const float *images, const int64_t *labels, int n);
/* ae: mean squared reconstruction error per pixel over the images (NaN for other kinds). */
double evaluator_recon_mse(Evaluator *net, const float *images, int n);

/* FNV-1a 64 over bytes, continuing from h (start with FNV64_INIT). */
#define FNV64_INIT 0xcbf29ce484222325ULL
uint64_t fnv1a64(uint64_t h, const void *data, size_t len);
/* The content hash of a parameter buffer: FNV-1a 64 of its float32 bytes. */
uint64_t evaluator_hash(const EvalLayout *lay, const float *params);

/* ---- files (evaluator_io.c) */

/* What a saved evaluator says about itself. */
typedef struct {
    char path[1024];      /* the file it was loaded from */
    char id[96];          /* "<tag>-<arch name>:<hash16>" */
    char hash[17];        /* 16 lower-case hex digits */
    char dataset[512];    /* the SRC it was trained on */
    EvalKind kind;
    double test_accuracy; /* NaN when not recorded (ae: the linear probe's) */
    double test_mse;      /* ae: reconstruction MSE on the test split; NaN otherwise */
    double anchor_fid;    /* FID of the calibration anchor (evaluator calibrate); NaN if none */
    double anchor_kid;    /* KID of the same; NaN if none */
} EvaluatorInfo;

/* Metadata the trainer records beside the weights (strings may be NULL to omit). */
typedef struct {
    const char *tag;            /* id prefix, e.g. "fmnist" */
    const char *dataset;        /* training SRC */
    const char *command;        /* the command line that made it */
    const char *class_names;    /* JSON list */
    int seed, epochs, train_images;
    double val_accuracy, test_accuracy; /* NaN when not measured */
    double val_mse, test_mse;           /* ae reconstruction error; NaN otherwise */
    double train_seconds;
} EvaluatorMeta;

/* Writes net's weights with metadata atomically; fills info (may be NULL). Status. */
int evaluator_save(const Evaluator *net, const char *path, const EvaluatorMeta *meta,
                   EvaluatorInfo *info);
/* Loads a file written by evaluator_save into a new instance for batches of max_batch.
 * D2C_ERR_INPUT naming the file if it is not an evaluator or its weights do not match
 * the recorded hash. */
int evaluator_load(Evaluator *net, Engine *eng, EvaluatorInfo *info, const char *path, int max_batch);
/* Rewrites the file's metadata with extra key/value pairs (replacing keys of the same
 * name), weights untouched and verified against their hash first. Status. */
int evaluator_set_metadata(const char *path, int n, const char *const *keys, const char *const *values);

/* The folder holding the committed evaluators: $D2C_MODELS_DIR, else models/ beside or
 * above the running executable, else the source tree's models/ (D2C_SOURCE_DIR).
 * *dir is NULL when none exists (status D2C_OK); D2C_ERR_INPUT if $D2C_MODELS_DIR names
 * no folder. Caller frees. */
int evaluator_models_dir(char **dir);

/* The committed evaluators for a reference SRC whose images are (C, H, W), from the
 * models folder's registry evaluators.json (see evaluator_registry.c): the set named like
 * the data source (fashion-mnist; folder:DIR by DIR's last component), else the set
 * whose evaluators were trained on it, else (with a warning) the first set whose
 * evaluators take images of that shape. paths (n) are absolute; *default_index is the
 * set's default evaluator. D2C_ERR_INPUT (suggesting --evaluator) when there is none. */
typedef struct {
    char name[64];   /* the set's name, e.g. "fashion-mnist" */
    char **paths;    /* (n) */
    int n;
    int default_index;
} EvaluatorSet;
int evaluator_set_for_ref(EvaluatorSet *set, const char *ref_src, int C, int H, int W);
/* A set from a comma-separated list of files; the first is the default. */
int evaluator_set_from_list(EvaluatorSet *set, const char *list);
void evaluator_set_free(EvaluatorSet *set);

#endif

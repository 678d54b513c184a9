/* d2c's public API: diffusion dataset condensation as a C library (libd2c.so / libd2c.a).
 * Self-contained (standard headers only), usable from C, C++ and Python's ctypes/cffi.
 * docs/API.md explains the model; in short:
 *
 * Errors. Every function that can fail returns an int status: D2C_OK (0), D2C_ERR_FAIL
 * (1: an I/O error, a resource failure, a non-finite loss) or D2C_ERR_INPUT (2: a file,
 * option or value the caller gave is wrong, a NULL handle or a bad shape included). The
 * failing call records one message for the calling thread, naming what is wrong;
 * d2c_last_error() reads it. The library never exits on an error, with two documented
 * exceptions: running out of memory in a small allocation and a broken internal invariant
 * go to the fatal handler (d2c_set_fatal_handler), and, until the evaluation rework
 * lands, d2c_evaluator_load and d2c_fid end the process with status 2 on some bad input
 * (said at each).
 *
 * Ownership. A handle made by d2c_X_load / d2c_X_create is freed by d2c_X_free (NULL is
 * allowed). On failure *out is set to NULL and nothing is left allocated. Pointers an
 * accessor returns are borrowed from the handle: valid until it is freed, never freed by
 * the caller. Strings and arrays the caller passes are only read during the call; output
 * buffers are the caller's, of the size stated.
 *
 * Threads. The message of d2c_last_error is per thread. A handle is used by one thread at
 * a time (functions taking a const handle only read it and may run concurrently); the
 * thread count and the handlers are process-wide: set them before starting work. Inside
 * each call the work runs on d2c_set_threads() OpenMP/OpenBLAS threads.
 *
 * Shapes: N images, C channels, H rows, W columns (images are float32 (N, C, H, W),
 * row-major, pixels in [-1, 1]), K classes, D feature dimensions. Labels are int64.
 *
 * ABI. Options are structs whose first member, struct_size, is set by their _init
 * function (with every default); new fields are only ever appended, and the library reads
 * the fields a caller's struct_size covers, so a program built against an older d2c.h
 * keeps working. Enumerated options are strings ("ddim", "cosine", "d2c"), spelled as the
 * d2c command line spells them; NULL picks the default. */
#ifndef D2C_H
#define D2C_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define D2C_VERSION_MAJOR 0
#define D2C_VERSION_MINOR 1
#define D2C_VERSION_PATCH 0
#define D2C_STRINGIFY_(x) #x
#define D2C_STRINGIFY(x) D2C_STRINGIFY_(x)
#define D2C_VERSION \
    D2C_STRINGIFY(D2C_VERSION_MAJOR) "." D2C_STRINGIFY(D2C_VERSION_MINOR) "." D2C_STRINGIFY(D2C_VERSION_PATCH)

/* What the shared library exports: the functions below and nothing else. */
#if defined(__GNUC__)
#define D2C_API __attribute__((visibility("default")))
#else
#define D2C_API
#endif

/* ---- version, errors, threads, handlers */

/* The statuses (equal to the d2c command's exit codes). */
enum { D2C_OK = 0, D2C_ERR_FAIL = 1, D2C_ERR_INPUT = 2 };

/* The library's version, "MAJOR.MINOR.PATCH" (compare with D2C_VERSION to check that the
 * header and the library agree); a static string. */
D2C_API const char *d2c_version(void);
/* The same as MAJOR * 10000 + MINOR * 100 + PATCH. */
D2C_API int d2c_version_number(void);

/* The calling thread's last error message ("" when none); valid until the thread's next
 * failing call. d2c_clear_error empties it. */
D2C_API const char *d2c_last_error(void);
D2C_API void d2c_clear_error(void);

/* Worker threads of every later call (OpenMP and OpenBLAS), 1..4096, else D2C_ERR_INPUT.
 * Until it is called, OpenMP's default ($OMP_NUM_THREADS or all cores) applies. The d2c
 * command uses 2. Process-wide. d2c_get_threads: the count the next call uses. */
D2C_API int d2c_set_threads(int n);
D2C_API int d2c_get_threads(void);

/* Unrecoverable failures (out of memory in a small allocation, a broken invariant) call
 * the fatal handler with a message; it must not return (a program under MPI calls
 * MPI_Abort). NULL restores the default: "d2c: error: <message>" on stderr, exit 1. */
typedef void (*d2c_fatal_handler)(const char *message);
D2C_API void d2c_set_fatal_handler(d2c_fatal_handler handler);
/* Warnings (e.g. files an image folder skips): by default one line "d2c: warning:
 * <message>" on stderr; a handler receives the message instead. NULL restores it. */
typedef void (*d2c_warning_handler)(const char *message);
D2C_API void d2c_set_warning_handler(d2c_warning_handler handler);

/* ---- d2c_data: a labelled image set in memory */

typedef struct d2c_data d2c_data;

/* Loads a data source: "fashion-mnist", "mnist:DIR", "idx:PREFIX", "folder:DIR", or a
 * pool or samples file "FILE.safetensors", each with an optional ":train", ":test",
 * ":fit" or ":val" split (docs/API.md). D2C_ERR_INPUT naming the file at fault. */
D2C_API int d2c_data_load(d2c_data **out, const char *src);
D2C_API void d2c_data_free(d2c_data *d);
/* The image shape (N, C, H, W) and class count K; any out pointer may be NULL. */
D2C_API int d2c_data_shape(const d2c_data *d, int *n, int *c, int *h, int *w);
D2C_API int d2c_data_num_classes(const d2c_data *d, int *k);
/* Borrowed arrays: images (N, C, H, W) in [-1, 1], labels (N) in [0, K). */
D2C_API int d2c_data_images(const d2c_data *d, const float **images);
D2C_API int d2c_data_labels(const d2c_data *d, const int64_t **labels);
/* Class k's name (0 <= k < K, else D2C_ERR_INPUT); borrowed. */
D2C_API int d2c_data_class_name(const d2c_data *d, int k, const char **name);
/* The source string it was loaded from, split included ("fashion-mnist:train"); borrowed. */
D2C_API int d2c_data_source(const d2c_data *d, const char **src);

/* ---- d2c_model: a trained diffusion model (the EMA weights of a model file) */

typedef struct d2c_model d2c_model;

#define D2C_MAX_LEVELS 6 /* UNet levels (channel_mult entries) */

/* Training options (`d2c train`): defaults from d2c_train_options_init, which equal the
 * command's. in_channels and the class count come from the data. */
typedef struct d2c_train_options {
    size_t struct_size;               /* sizeof(d2c_train_options), set by _init */
    const char *data;                 /* data source (d2c_data_load's src), "fashion-mnist" */
    const char *out;                  /* model file to write; also the checkpoint. Required */
    const char *log_path;             /* JSON-lines log; NULL: OUT.log.jsonl */
    int64_t steps;                    /* 2000 */
    int batch;                        /* images per step, 1..4096; 64 */
    double lr;                        /* peak learning rate; 1e-3 */
    int64_t warmup;                   /* linear warm-up steps; 100 */
    double grad_clip;                 /* max gradient norm, 0 = off; 1 */
    double cond_drop;                 /* null-label probability (guidance), 0..1; 0.1 */
    double ema_decay;                 /* EMA of the weights sampling uses, 0..1; 0.999 */
    int64_t ckpt_every;               /* steps between checkpoints; 500 */
    int base_channels;                /* UNet C; 32 */
    int num_levels;                   /* levels L (entries of channel_mult); 3 */
    int channel_mult[D2C_MAX_LEVELS]; /* 1, 2, 2 */
    int attn[D2C_MAX_LEVELS];         /* 1 where a level has self-attention; level 2 */
    int groups;                       /* GroupNorm groups; 8 */
    const char *schedule;             /* "linear" (default) or "cosine" */
    uint64_t seed;                    /* 0 */
    int resume;                       /* continue from the checkpoint at out; 0 */
    int quiet;                        /* no progress on stderr; 0 */
    /* appended in 0.1 after the first version (struct_size tells them apart) */
    const char *device;               /* engine: "cpu" (default, also NULL) or "cuda" */
} d2c_train_options;

D2C_API void d2c_train_options_init(d2c_train_options *opt);
/* Trains a model and writes opt->out atomically (with its log); *final_loss (may be NULL)
 * gets the mean loss of the last 50 steps. D2C_ERR_INPUT for bad options or data,
 * D2C_ERR_FAIL for a non-finite loss (opt->out keeps the last good checkpoint) or an I/O
 * error. Bit-identical to `d2c train` with the same options and thread count. */
D2C_API int d2c_train(const d2c_train_options *opt, double *final_loss);

/* Loads a model file (its config and EMA weights). D2C_ERR_INPUT naming the file. */
D2C_API int d2c_model_load(d2c_model **out, const char *path);
D2C_API void d2c_model_free(d2c_model *m);
/* The image shape (C, H, W) it was trained on and its class count K (labels 0..K-1; K is
 * the null label of unconditional sampling). Out pointers may be NULL. */
D2C_API int d2c_model_shape(const d2c_model *m, int *c, int *h, int *w);
D2C_API int d2c_model_num_classes(const d2c_model *m, int *k);
/* Training steps taken, and the number of float parameters. */
D2C_API int d2c_model_train_steps(const d2c_model *m, int64_t *steps);
D2C_API int d2c_model_num_params(const d2c_model *m, int64_t *n);
/* The network config as a JSON object (in_channels, base_channels, channel_mult,
 * attn_levels, num_classes, groups) and the noise schedule's name; borrowed. */
D2C_API int d2c_model_config_json(const d2c_model *m, const char **json);
D2C_API int d2c_model_schedule(const d2c_model *m, const char **name);

/* ---- d2c_sampler: images from a model */

typedef struct d2c_sampler d2c_sampler;

typedef struct d2c_sampler_options {
    size_t struct_size; /* sizeof(d2c_sampler_options), set by _init */
    const char *sampler; /* "ddim" (deterministic, the spec's; default) or "ddpm" (ancestral) */
    int steps;           /* sampling steps, 1..1000; 50 */
    double guidance;     /* classifier-free guidance w (1 = none), -100..100; 1 */
    int batch;           /* images per network call, 1..4096; 128 */
    /* appended in 0.1 after the first version (struct_size tells them apart) */
    const char *device;  /* engine: "cpu" (default, also NULL) or "cuda"; held by the sampler */
} d2c_sampler_options;

D2C_API void d2c_sampler_options_init(d2c_sampler_options *opt);
/* A sampler of the model's images (C, H, W); opt NULL means the defaults. It copies what
 * it needs: the model may be freed afterwards. */
D2C_API int d2c_sampler_create(d2c_sampler **out, const d2c_model *model, const d2c_sampler_options *opt);
D2C_API void d2c_sampler_free(d2c_sampler *s);
/* The image shape (C, H, W) it produces and the model's class count K. */
D2C_API int d2c_sampler_shape(const d2c_sampler *s, int *c, int *h, int *w);
D2C_API int d2c_sampler_num_classes(const d2c_sampler *s, int *k);
/* Samples n images from the given x_T: noise and out (n, c, h, w), where (c, h, w) must
 * be the sampler's shape (else D2C_ERR_INPUT); labels (n) in 0..K, K = unconditional.
 * noise may equal out (in place). DDPM draws its per-step noise from seed's streams (one
 * per image, as `d2c sample --noise FILE --seed S`); DDIM ignores seed. Results do not
 * depend on batch. */
D2C_API int d2c_sampler_run(d2c_sampler *s, const float *noise, const int64_t *labels, int n, int c, int h, int w,
                            uint64_t seed, float *out);
/* The same with x_T drawn from seed exactly as `d2c sample --n N --seed S` draws it, so
 * the images equal that command's (same options, labels, thread count). */
D2C_API int d2c_sampler_run_seeded(d2c_sampler *s, const int64_t *labels, int n, int c, int h, int w, uint64_t seed,
                                   float *out);

/* ---- d2c_pool: a condensed pool */

typedef struct d2c_pool d2c_pool;

/* Condensation options (`d2c condense`): defaults from d2c_condense_options_init, which
 * equal the command's. Set exactly one of ratio and ipc. */
typedef struct d2c_condense_options {
    size_t struct_size;      /* sizeof(d2c_condense_options), set by _init */
    const char *data;        /* data source, "fashion-mnist" */
    const char *out;         /* pool file to write (also OUT.png, OUT.log.jsonl, OUT.state.safetensors). Required */
    const char *method;      /* kherding|gadc|facility|d2c|random|kcenter|herding|dsa|dm|select|jitter; NULL:
                              * the default for the budget (kherding below 3% of the data, gadc from 3%) */
    double ratio;            /* pool size as a fraction of the training set, (0, 1]; or 0 */
    int ipc;                 /* images per class; or 0 */
    int iters;               /* outer iterations; 100 */
    int topk;                /* timesteps matched per iteration, <= t_candidates; 2 */
    int t_candidates;        /* candidate timesteps scored; 50 */
    const char *score;       /* grad-norm|gap|loss|excess; "excess" */
    int rescore;             /* iterations between scorings; 20 */
    int inner_steps;         /* unrolled SGD steps per iteration; 5 */
    int outer_loop;          /* iterations between network re-initialisations; 10 */
    int real_batch;          /* real images per class per step; 64 */
    int syn_batch;           /* synthetic images per class per step; 16 */
    int noise_draws;         /* noise draws per image; 2 */
    int pool_res;            /* 0: learn pixels; R: an R x R residual; 0 */
    int implicit;            /* Neumann terms of implicit differentiation, 0 = off; 0 */
    double lr_img, lr_net;   /* pool and inner learning rates; 0.01, 0.01 */
    double dm_weight;        /* distribution-matching weight; < 0: the method's (1 for dm, else 0); -1 */
    const char *opt_img;     /* pool optimiser adam|sgd; "adam" */
    const char *init;        /* real|noise|kcenter|kherding|gadc|facility; "real" */
    int learn_cond;          /* learn a conditioning vector per image; 0 */
    int dsa;                 /* differentiable Siamese augmentation (method dsa: always); 0 */
    int base_channels;       /* the matching UNet's C; 16 */
    uint64_t seed;           /* 0 */
    double time_budget;      /* seconds, 0 = none; 0 */
    double jitter;           /* jitter's pixel-noise SD; 0.075 */
    int eval_nets;           /* networks of the held-out matching loss, 0 = off; 1 */
    int eval_every;          /* iterations between its measurements, 0 = start and end; 0 */
    int resume;              /* continue from OUT.state.safetensors; 0 */
    int ckpt_every;          /* iterations between checkpoints; 10 */
    int quiet;               /* no progress on stderr; 0 */
    const char *log_path;    /* NULL: OUT.log.jsonl */
    const char *grid_path;   /* NULL: OUT.png */
    const char *select_keep; /* select: easy|hard; "easy" */
    /* appended in 0.1 after the first version (struct_size tells them apart) */
    const char *device;      /* the matching network's engine: "cpu" (default, also NULL) or "cuda" */
    /* appended in 0.1 with the kherding and gadc methods */
    int pca_dim;             /* kherding, gadc, facility: PCA components of the pixel feature space; 50 */
    double bandwidth;        /* kherding, facility: RBF bandwidth / the class's median pairwise distance; 1 */
    double gadc_lambda;      /* gadc: covariance weight in units of 1 / tr(Sigma); 1 */
    int gadc_passes;         /* gadc: most swap-refinement passes; 5 */
    /* appended with the facility method */
    double mmd_weight;       /* facility: weight of kherding's squared MMD beside the coverage objective; 0 */
} d2c_condense_options;

D2C_API void d2c_condense_options_init(d2c_condense_options *opt);
/* Condenses opt->data into a pool file at opt->out (with its figure and log); *seconds
 * (may be NULL) gets the time taken. D2C_ERR_INPUT for bad options or data (a class with
 * fewer than ipc images included), D2C_ERR_FAIL when a file cannot be written. */
D2C_API int d2c_condense(const d2c_condense_options *opt, double *seconds);

/* Loads a pool file (class-major: class k's images are k * ipc .. (k + 1) * ipc - 1). */
D2C_API int d2c_pool_load(d2c_pool **out, const char *path);
D2C_API void d2c_pool_free(d2c_pool *p);
/* N = K * ipc images of (C, H, W); K classes of ipc images. Out pointers may be NULL. */
D2C_API int d2c_pool_shape(const d2c_pool *p, int *n, int *c, int *h, int *w);
D2C_API int d2c_pool_classes(const d2c_pool *p, int *k, int *ipc);
/* Borrowed arrays: images (N, C, H, W), labels (N). */
D2C_API int d2c_pool_images(const d2c_pool *p, const float **images);
D2C_API int d2c_pool_labels(const d2c_pool *p, const int64_t **labels);
/* The learned conditioning vectors (N, E) and E; NULL and 0 when the pool has none. */
D2C_API int d2c_pool_cond(const d2c_pool *p, const float **cond, int *cond_dim);

/* ---- d2c_evaluator: the feature network `d2c eval` measures images with */

typedef struct d2c_evaluator d2c_evaluator;

/* Loads an evaluator file (e.g. models/evaluator-fashion-mnist.safetensors) for batches
 * of up to batch images (1..4096, 0: 256). A missing, unreadable or malformed file is
 * D2C_ERR_INPUT, as is a safetensors file that is not an evaluator or whose weights fail
 * their recorded hash. */
D2C_API int d2c_evaluator_load(d2c_evaluator **out, const char *path, int batch);
D2C_API void d2c_evaluator_free(d2c_evaluator *e);
/* The image shape (C, H, W) it takes, its feature dimension D and class count K. */
D2C_API int d2c_evaluator_shape(const d2c_evaluator *e, int *c, int *h, int *w);
D2C_API int d2c_evaluator_feature_dim(const d2c_evaluator *e, int *d);
D2C_API int d2c_evaluator_num_classes(const d2c_evaluator *e, int *k);
/* Its id "<tag>-<arch>:<hash>" (the weights' content hash); borrowed. */
D2C_API int d2c_evaluator_id(const d2c_evaluator *e, const char **id);
/* Features (n, D) and/or class probabilities (n, K) of images (n, c, h, w), (c, h, w) the
 * evaluator's shape (else D2C_ERR_INPUT); either output may be NULL, not both. */
D2C_API int d2c_evaluator_apply(d2c_evaluator *e, const float *images, int n, int c, int h, int w, float *features,
                                float *probs);

/* The Frechet distance between the Gaussians fitted to two feature sets a (na, d) and
 * b (nb, d), na, nb >= 2: FID when the features are an evaluator's. D2C_ERR_INPUT for
 * NULL arrays, bad sizes or non-finite features. */
D2C_API int d2c_fid(const float *a, int na, const float *b, int nb, int d, double *fid);

#ifdef __cplusplus
}
#endif

#endif

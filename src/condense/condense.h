/* `d2c condense`: learns or selects a pool of ipc images per class.
 *
 * Methods:
 *   d2c      bilevel timestep-aware gradient matching (+ optional distribution matching,
 *            DSA, learnable conditioning, implicit differentiation), see condense.c;
 *   dsa      gradient matching at uniformly random timesteps with DSA (no timestep
 *            scoring, no distribution term): the classic DC/DSA recipe on the DDPM loss;
 *   dm       distribution matching alone on freshly initialised networks every iteration;
 *   random, kcenter, herding, select: subsets of the real data (baselines.c);
 *   kherding, gadc: distribution-matching subsets in a PCA feature space (distmatch.h):
 *            kernel herding (greedy MMD) and GADC-style mean + covariance matching;
 *   facility facility location, a coverage-oriented subset in the same space (distmatch.h);
 *   jitter   the random subset plus Gaussian pixel noise of SD `jitter`, clamped: the
 *            control that tells a learned pool's gain from that of merely moved pixels. */
#ifndef D2C_CONDENSE_CONDENSE_H
#define D2C_CONDENSE_CONDENSE_H

#include <stdint.h>

#include "model/unet.h"

/* The enumerated options, each with its name table (the spelling of the option value and
 * of the pool's metadata) and a parse function that records D2C_ERR_INPUT listing the
 * valid names for anything else. */
typedef enum {
    CONDENSE_D2C, CONDENSE_RANDOM, CONDENSE_KCENTER, CONDENSE_HERDING, CONDENSE_DSA, CONDENSE_DM, CONDENSE_SELECT,
    CONDENSE_JITTER, CONDENSE_KHERDING, CONDENSE_GADC, CONDENSE_FACILITY, CONDENSE_METHOD_COUNT
} CondenseMethod;
extern const char *const CONDENSE_METHOD_NAMES[CONDENSE_METHOD_COUNT];
int condense_method_parse(const char *name, CondenseMethod *out);
/* d2c, dsa and dm learn pixels; the others pick (and jitter perturbs) real images. */
int condense_method_learns(CondenseMethod m);
/* The default method for a pool of this fraction of its source: kherding below
 * CONDENSE_GADC_FROM, gadc from there on (the model-level comparisons on :val and the test
 * split at 0.3%, 1% and 10%, docs/CONDENSATION.md; nothing between 1% and 10% measured). */
#define CONDENSE_GADC_FROM 0.03
CondenseMethod condense_method_for_budget(double fraction);

/* How d2c scores the candidate timesteps (scoring.c): the norm of the real gradient,
 * the real-vs-pool gradient distance, the DDPM loss, or that distance above the
 * real-vs-real floor. */
typedef enum { SCORE_GRAD_NORM, SCORE_GAP, SCORE_LOSS, SCORE_EXCESS, SCORE_COUNT } TimestepScore;
extern const char *const TIMESTEP_SCORE_NAMES[SCORE_COUNT];
int timestep_score_parse(const char *name, TimestepScore *out);

/* The optimiser of the learned pixels: Adam, or SGD with momentum 0.5. */
typedef enum { PIXEL_OPT_ADAM, PIXEL_OPT_SGD, PIXEL_OPT_COUNT } PixelOptimiser;
extern const char *const PIXEL_OPTIMISER_NAMES[PIXEL_OPT_COUNT];
int pixel_optimiser_parse(const char *name, PixelOptimiser *out);

/* The initial pool of the learned methods: real images (a random subset), noise, or the
 * k-center, kernel-herding, gadc or facility subset (with the options' feature parameters). */
typedef enum {
    POOL_INIT_REAL, POOL_INIT_NOISE, POOL_INIT_KCENTER, POOL_INIT_KHERDING, POOL_INIT_GADC, POOL_INIT_FACILITY,
    POOL_INIT_COUNT
} PoolInit;
extern const char *const POOL_INIT_NAMES[POOL_INIT_COUNT];
int pool_init_parse(const char *name, PoolInit *out);

/* Which end of the difficulty ranking `select` keeps. */
typedef enum { SELECT_KEEP_EASY, SELECT_KEEP_HARD, SELECT_KEEP_COUNT } SelectKeep;
extern const char *const SELECT_KEEP_NAMES[SELECT_KEEP_COUNT];
int select_keep_parse(const char *name, SelectKeep *out);

typedef struct {
    const char *data, *out;
    CondenseMethod method;
    int method_by_budget;  /* 1 (the default, no method named): method is chosen by the pool's
                            * fraction of the source, condense_method_for_budget */
    double ratio;          /* fraction of the training set, or 0 when ipc is given */
    int ipc;
    int iters;             /* outer iterations */
    int topk;              /* K timesteps matched per iteration */
    int t_candidates;      /* grid of candidate timesteps scored */
    TimestepScore score;
    int rescore;           /* iterations between scorings */
    int inner_steps;       /* unrolled SGD steps on the pool per iteration */
    int outer_loop;        /* iterations between network re-initialisations */
    int real_batch;        /* real images per class per matching step */
    int syn_batch;         /* synthetic images per class per matching step (<= ipc) */
    int noise_draws;       /* noise draws per image (variance reduction) */
    int pool_res;          /* 0: learn pixels; R: learn an R x R residual, upsampled */
    int implicit;          /* Neumann terms of the implicit-differentiation path, 0 = off */
    double lr_img, lr_net, dm_weight;
    PixelOptimiser opt_img;
    PoolInit init;
    int learn_cond, dsa;
    UNetConfig cfg;        /* the matching network (in_channels/num_classes from data) */
    uint64_t seed;
    double time_budget;    /* seconds; stop after the iteration that reaches it (0 = none) */
    double jitter;         /* jitter: SD of the pixel noise added to the random subset */
    int eval_nets;         /* networks of the held-out matching loss, 0 = off */
    int eval_every;        /* iterations between held-out evaluations (0 = start and end) */
    int resume, ckpt_every, quiet;
    Engine *engine;          /* the matching network's backend; NULL = engine_cpu_default() */
    const char *log_path;  /* JSON lines; NULL = OUT.log.jsonl */
    const char *grid_path; /* PNG; NULL = OUT.png */
    SelectKeep select_keep;
    /* kherding, gadc and facility (and --init kherding|gadc|facility), distmatch.h */
    int pca_dim;           /* PCA components of the feature space (default 50) */
    double bandwidth;      /* kherding, facility: RBF bandwidth / median pairwise distance (default 1) */
    double gadc_lambda;    /* gadc: covariance weight in units of 1 / tr(Sigma) (default 1) */
    int gadc_passes;       /* gadc: most swap passes (default 5) */
    double mmd_weight;     /* facility: weight of kherding's squared MMD beside coverage (default 0) */
} CondenseOptions;

CondenseOptions condense_default_options(void);
/* What a method implies: dsa always augments (dsa = 1); dm's distribution-matching term
 * weighs 1 unless the caller gave dm_weight. Call after setting method, dsa, dm_weight. */
void condense_options_apply_method(CondenseOptions *o, int dm_weight_given);
/* The options' ranges (those of `d2c condense`'s flags) and their consistency (exactly
 * one of ratio and ipc, topk <= t_candidates): D2C_ERR_INPUT naming the option.
 * condense_run calls it first. */
int condense_options_check(const CondenseOptions *o);
/* Runs the method and writes the pool (and its figure and log); *seconds gets the time
 * taken. D2C_ERR_INPUT for bad data or options (naming them: a class without images, or
 * with fewer than ipc, included), D2C_ERR_FAIL when a file cannot be written. */
int condense_run(const CondenseOptions *opt, double *seconds);

#endif

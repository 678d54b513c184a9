/* `d2c condense`: learns or selects a pool of ipc images per class.
 *
 * Methods:
 *   d2c      bilevel timestep-aware gradient matching (+ optional distribution matching,
 *            DSA, learnable conditioning, implicit differentiation), see condense.c;
 *   dsa      gradient matching at uniformly random timesteps with DSA (no timestep
 *            scoring, no distribution term): the classic DC/DSA recipe on the DDPM loss;
 *   dm       distribution matching alone on freshly initialised networks every iteration;
 *   random, kcenter, herding, select: subsets of the real data (baselines.c);
 *   jitter   the random subset plus Gaussian pixel noise of SD `jitter`, clamped: the
 *            control that tells a learned pool's gain from that of merely moved pixels. */
#ifndef D2C_CONDENSE_CONDENSE_H
#define D2C_CONDENSE_CONDENSE_H

#include <stdint.h>

#include "model/unet.h"

typedef struct {
    const char *data, *out, *method;
    double ratio;          /* fraction of the training set, or 0 when ipc is given */
    int ipc;
    int iters;             /* outer iterations */
    int topk;              /* K timesteps matched per iteration */
    int t_candidates;      /* grid of candidate timesteps scored */
    const char *score;     /* grad-norm | gap | loss | excess */
    int rescore;           /* iterations between scorings */
    int inner_steps;       /* unrolled SGD steps on the pool per iteration */
    int outer_loop;        /* iterations between network re-initialisations */
    int real_batch;        /* real images per class per matching step */
    int syn_batch;         /* synthetic images per class per matching step (<= ipc) */
    int noise_draws;       /* noise draws per image (variance reduction) */
    int pool_res;          /* 0: learn pixels; R: learn an R x R residual, upsampled */
    int implicit;          /* Neumann terms of the implicit-differentiation path, 0 = off */
    double lr_img, lr_net, dm_weight;
    const char *opt_img;   /* adam | sgd (momentum 0.5) */
    const char *init;      /* real | noise | kcenter */
    int learn_cond, dsa;
    UNetConfig cfg;        /* the matching network (in_channels/num_classes from data) */
    uint64_t seed;
    double time_budget;    /* seconds; stop after the iteration that reaches it (0 = none) */
    double jitter;         /* jitter: SD of the pixel noise added to the random subset */
    int eval_nets;         /* networks of the held-out matching loss, 0 = off */
    int eval_every;        /* iterations between held-out evaluations (0 = start and end) */
    int resume, ckpt_every, quiet;
    const char *log_path;  /* JSON lines; NULL = OUT.log.jsonl */
    const char *grid_path; /* PNG; NULL = OUT.png */
    const char *select_keep; /* select: easy | hard */
} CondenseOptions;

CondenseOptions condense_default_options(void);
/* Runs the method and writes the pool (and its figure and log). Returns seconds taken. */
double condense_run(const CondenseOptions *opt);

#endif

/* The options of `d2c condense`: their defaults and the name tables and parse functions
 * of the enumerated ones (condense.h). */
#include <stddef.h>

#include "condense/condense.h"
#include "core/util.h"

CondenseOptions condense_default_options(void) {
    CondenseOptions o = {0};
    o.data = "fashion-mnist";
    o.method = CONDENSE_KHERDING; /* below 3%: the best own-pool KID and consensus on :val (docs/CONDENSATION.md) */
    o.method_by_budget = 1;
    o.iters = 100;
    o.topk = 2;
    o.t_candidates = 50;
    o.score = SCORE_EXCESS;
    o.rescore = 20;
    o.inner_steps = 5;
    o.outer_loop = 10;
    o.real_batch = 64;
    o.syn_batch = 16;
    o.noise_draws = 2;
    o.lr_img = 0.01;
    o.lr_net = 0.01;
    o.opt_img = PIXEL_OPT_ADAM;
    o.init = POOL_INIT_REAL;
    o.cfg = unet_default_config();
    o.cfg.base_channels = 16;
    o.cfg.groups = 8;
    o.ckpt_every = 10;
    o.select_keep = SELECT_KEEP_EASY;
    o.eval_nets = 1;
    o.pca_dim = 50;
    o.bandwidth = 1.0;
    o.gadc_lambda = 1.0;
    o.gadc_passes = 5;
    o.jitter = 0.075; /* RMS move 0.064 on a 1% Fashion-MNIST pool, as a 50-iteration d2c run (0.065) */
    return o;
}

const char *const CONDENSE_METHOD_NAMES[CONDENSE_METHOD_COUNT] = {
    [CONDENSE_D2C] = "d2c",         [CONDENSE_RANDOM] = "random", [CONDENSE_KCENTER] = "kcenter",
    [CONDENSE_HERDING] = "herding", [CONDENSE_DSA] = "dsa",       [CONDENSE_DM] = "dm",
    [CONDENSE_SELECT] = "select",   [CONDENSE_JITTER] = "jitter", [CONDENSE_KHERDING] = "kherding",
    [CONDENSE_GADC] = "gadc",       [CONDENSE_FACILITY] = "facility",
};
const char *const TIMESTEP_SCORE_NAMES[SCORE_COUNT] = {
    [SCORE_GRAD_NORM] = "grad-norm", [SCORE_GAP] = "gap", [SCORE_LOSS] = "loss", [SCORE_EXCESS] = "excess"};
const char *const PIXEL_OPTIMISER_NAMES[PIXEL_OPT_COUNT] = {[PIXEL_OPT_ADAM] = "adam", [PIXEL_OPT_SGD] = "sgd"};
const char *const POOL_INIT_NAMES[POOL_INIT_COUNT] = {
    [POOL_INIT_REAL] = "real", [POOL_INIT_NOISE] = "noise", [POOL_INIT_KCENTER] = "kcenter",
    [POOL_INIT_KHERDING] = "kherding", [POOL_INIT_GADC] = "gadc", [POOL_INIT_FACILITY] = "facility"};
const char *const SELECT_KEEP_NAMES[SELECT_KEEP_COUNT] = {[SELECT_KEEP_EASY] = "easy", [SELECT_KEEP_HARD] = "hard"};

#define DEFINE_PARSE(fn, Type, what, names, count)                  \
    int fn(const char *name, Type *out) {                           \
        int k;                                                      \
        D2C_TRY(name_parse(what, names, count, name, &k));          \
        *out = (Type)k;                                             \
        return D2C_OK;                                              \
    }
DEFINE_PARSE(condense_method_parse, CondenseMethod, "condensation method", CONDENSE_METHOD_NAMES, CONDENSE_METHOD_COUNT)
DEFINE_PARSE(timestep_score_parse, TimestepScore, "timestep score", TIMESTEP_SCORE_NAMES, SCORE_COUNT)
DEFINE_PARSE(pixel_optimiser_parse, PixelOptimiser, "pixel optimiser", PIXEL_OPTIMISER_NAMES, PIXEL_OPT_COUNT)
DEFINE_PARSE(pool_init_parse, PoolInit, "pool initialisation", POOL_INIT_NAMES, POOL_INIT_COUNT)
DEFINE_PARSE(select_keep_parse, SelectKeep, "select-keep choice", SELECT_KEEP_NAMES, SELECT_KEEP_COUNT)

int condense_method_learns(CondenseMethod m) {
    switch (m) {
    case CONDENSE_D2C:
    case CONDENSE_DSA:
    case CONDENSE_DM: return 1;
    case CONDENSE_RANDOM:
    case CONDENSE_KCENTER:
    case CONDENSE_HERDING:
    case CONDENSE_SELECT:
    case CONDENSE_JITTER:
    case CONDENSE_KHERDING:
    case CONDENSE_GADC:
    case CONDENSE_FACILITY: return 0;
    case CONDENSE_METHOD_COUNT: break;
    }
    D2C_CHECK(!"a condensation method");
    return 0;
}


void condense_options_apply_method(CondenseOptions *o, int dm_weight_given) {
    if (o->method == CONDENSE_DSA) o->dsa = 1;
    if (o->method == CONDENSE_DM && !dm_weight_given) o->dm_weight = 1.0;
}

/* A double option in [lo, hi] (NaN fails). */
static int in_range(double v, double lo, double hi) { return v >= lo && v <= hi; }

int condense_options_check(const CondenseOptions *o) {
    const int E = D2C_ERR_INPUT;
    if (!o->data || !*o->data) return d2c_error(E, "--data: no data source given");
    if (!o->out || !*o->out) return d2c_error(E, "--out: no pool file given");
    if ((int)o->method < 0 || o->method >= CONDENSE_METHOD_COUNT || (int)o->score < 0 || o->score >= SCORE_COUNT ||
        (int)o->opt_img < 0 || o->opt_img >= PIXEL_OPT_COUNT || (int)o->init < 0 || o->init >= POOL_INIT_COUNT ||
        (int)o->select_keep < 0 || o->select_keep >= SELECT_KEEP_COUNT)
        return d2c_error(E, "condense options: an enumerated option holds no valid value");
    if ((o->ratio != 0) == (o->ipc != 0)) return d2c_error(E, "give exactly one of --ratio R (0 < R <= 1) or --ipc N");
    if (o->ratio != 0 && !in_range(o->ratio, 1e-9, 1)) return d2c_error(E, "--ratio must be in (0, 1], got %g", o->ratio);
    if (o->ipc < 0 || o->ipc > 1000000) return d2c_error(E, "--ipc must be 1..1000000, got %d", o->ipc);
#define INT_OPT(field, name, lo, hi) \
    if (o->field < (lo) || o->field > (hi)) return d2c_error(E, "--" name " must be %d..%d, got %d", (int)(lo), (int)(hi), o->field)
    INT_OPT(iters, "iters", 0, 100000000);
    INT_OPT(topk, "topk", 1, 64);
    INT_OPT(t_candidates, "t-candidates", 1, 1000);
    INT_OPT(rescore, "rescore", 1, 100000000);
    INT_OPT(inner_steps, "inner", 0, 1000);
    INT_OPT(outer_loop, "outer-loop", 1, 100000000);
    INT_OPT(real_batch, "real-batch", 1, 4096);
    INT_OPT(syn_batch, "syn-batch", 1, 4096);
    INT_OPT(noise_draws, "noise-draws", 1, 64);
    INT_OPT(pool_res, "pool-res", 0, 1024);
    INT_OPT(implicit, "implicit", 0, 100);
    INT_OPT(cfg.base_channels, "channels", 2, 512);
    INT_OPT(eval_nets, "eval-nets", 0, 64);
    INT_OPT(eval_every, "eval-every", 0, 100000000);
    INT_OPT(ckpt_every, "ckpt-every", 1, 100000000);
    INT_OPT(pca_dim, "pca-dim", 1, 100000);
    INT_OPT(gadc_passes, "gadc-passes", 0, 1000);
#undef INT_OPT
    if (o->topk > o->t_candidates) return d2c_error(E, "--topk %d exceeds --t-candidates %d", o->topk, o->t_candidates);
    if (!in_range(o->lr_img, 0, 1e3)) return d2c_error(E, "--lr-img must be in [0, 1000], got %g", o->lr_img);
    if (!in_range(o->lr_net, 0, 1e3)) return d2c_error(E, "--lr-net must be in [0, 1000], got %g", o->lr_net);
    if (!in_range(o->dm_weight, 0, 1e6)) return d2c_error(E, "--dm-weight must be in [0, 1e6], got %g", o->dm_weight);
    if (!in_range(o->time_budget, 0, 1e9)) return d2c_error(E, "--time-budget must be in [0, 1e9], got %g", o->time_budget);
    if (!in_range(o->bandwidth, 1e-6, 1e6)) return d2c_error(E, "--bandwidth must be in [1e-6, 1e6], got %g", o->bandwidth);
    if (!in_range(o->mmd_weight, 0, 1e6)) return d2c_error(E, "--mmd-weight must be in [0, 1e6], got %g", o->mmd_weight);
    if (!in_range(o->gadc_lambda, 0, 1e6)) return d2c_error(E, "--gadc-lambda must be in [0, 1e6], got %g", o->gadc_lambda);
    if (!in_range(o->jitter, 0, 10)) return d2c_error(E, "--jitter must be in [0, 10], got %g", o->jitter);
    return D2C_OK;
}

CondenseMethod condense_method_for_budget(double fraction) {
    return fraction >= CONDENSE_GADC_FROM ? CONDENSE_GADC : CONDENSE_KHERDING;
}

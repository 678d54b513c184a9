/* d2c_pool and d2c_condense (d2c.h): condensation through condense/condense.h's
 * condense_run, and a pool file loaded through condense/pool.h's pool_load. */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "condense/condense.h"
#include "condense/pool.h"
#include "core/util.h"

/* The first version of the struct ends at its last field (d2c.h "ABI"): fields added
 * later are only appended, so older callers' struct_size stays at least this. */
#define D2C_CONDENSE_OPTIONS_V1_SIZE (offsetof(d2c_condense_options, select_keep) + sizeof(const char *))

struct d2c_pool {
    Pool p;
};

void d2c_condense_options_init(d2c_condense_options *opt) {
    if (!opt) return;
    const CondenseOptions c = condense_default_options();
    memset(opt, 0, sizeof *opt);
    opt->struct_size = sizeof *opt;
    opt->data = c.data;
    opt->method = NULL; /* the default for the budget (condense_method_for_budget) */
    opt->ratio = c.ratio;
    opt->ipc = c.ipc;
    opt->iters = c.iters;
    opt->topk = c.topk;
    opt->t_candidates = c.t_candidates;
    opt->score = TIMESTEP_SCORE_NAMES[c.score];
    opt->rescore = c.rescore;
    opt->inner_steps = c.inner_steps;
    opt->outer_loop = c.outer_loop;
    opt->real_batch = c.real_batch;
    opt->syn_batch = c.syn_batch;
    opt->noise_draws = c.noise_draws;
    opt->pool_res = c.pool_res;
    opt->implicit = c.implicit;
    opt->lr_img = c.lr_img;
    opt->lr_net = c.lr_net;
    opt->dm_weight = -1; /* the method's */
    opt->opt_img = PIXEL_OPTIMISER_NAMES[c.opt_img];
    opt->init = POOL_INIT_NAMES[c.init];
    opt->learn_cond = c.learn_cond;
    opt->dsa = c.dsa;
    opt->base_channels = c.cfg.base_channels;
    opt->seed = c.seed;
    opt->time_budget = c.time_budget;
    opt->jitter = c.jitter;
    opt->eval_nets = c.eval_nets;
    opt->eval_every = c.eval_every;
    opt->resume = c.resume;
    opt->ckpt_every = c.ckpt_every;
    opt->quiet = c.quiet;
    opt->select_keep = SELECT_KEEP_NAMES[c.select_keep];
    opt->pca_dim = c.pca_dim;
    opt->bandwidth = c.bandwidth;
    opt->gadc_lambda = c.gadc_lambda;
    opt->gadc_passes = c.gadc_passes;
    opt->mmd_weight = c.mmd_weight;
}

/* An enumerated option's name into its enum (NULL keeps the default). */
#define PARSE_NAME(name, parse, field, what)                                                          \
    do {                                                                                              \
        if (name) D2C_TRY(d2c_error_context(parse(name, &field), "d2c_condense: " what ": "));       \
    } while (0)

int d2c_condense(const d2c_condense_options *user, double *seconds) {
    if (seconds) *seconds = 0;
    d2c_condense_options o;
    d2c_condense_options_init(&o);
    D2C_TRY(api_read_options(&o, sizeof o, D2C_CONDENSE_OPTIONS_V1_SIZE, user, "d2c_condense_options"));
    CondenseOptions c = condense_default_options();
    PARSE_NAME(o.method, condense_method_parse, c.method, "method");
    c.method_by_budget = o.method == NULL;
    PARSE_NAME(o.score, timestep_score_parse, c.score, "score");
    PARSE_NAME(o.opt_img, pixel_optimiser_parse, c.opt_img, "opt_img");
    PARSE_NAME(o.init, pool_init_parse, c.init, "init");
    PARSE_NAME(o.select_keep, select_keep_parse, c.select_keep, "select_keep");
    c.data = o.data;
    c.out = o.out;
    c.ratio = o.ratio;
    c.ipc = o.ipc;
    c.iters = o.iters;
    c.topk = o.topk;
    c.t_candidates = o.t_candidates;
    c.rescore = o.rescore;
    c.inner_steps = o.inner_steps;
    c.outer_loop = o.outer_loop;
    c.real_batch = o.real_batch;
    c.syn_batch = o.syn_batch;
    c.noise_draws = o.noise_draws;
    c.pool_res = o.pool_res;
    c.implicit = o.implicit;
    c.lr_img = o.lr_img;
    c.lr_net = o.lr_net;
    c.dm_weight = o.dm_weight < 0 ? 0 : o.dm_weight; /* NaN stays NaN: refused by the check */
    c.learn_cond = o.learn_cond != 0;
    c.dsa = o.dsa != 0;
    condense_options_apply_method(&c, !(o.dm_weight < 0));
    c.cfg.base_channels = o.base_channels;
    c.seed = o.seed;
    c.time_budget = o.time_budget;
    c.jitter = o.jitter;
    c.eval_nets = o.eval_nets;
    c.eval_every = o.eval_every;
    c.resume = o.resume != 0;
    c.ckpt_every = o.ckpt_every;
    c.quiet = o.quiet != 0;
    c.log_path = o.log_path;
    c.grid_path = o.grid_path;
    c.pca_dim = o.pca_dim;
    c.bandwidth = o.bandwidth;
    c.gadc_lambda = o.gadc_lambda;
    c.gadc_passes = o.gadc_passes;
    c.mmd_weight = o.mmd_weight;
    D2C_TRY(api_open_engine("d2c_condense", o.device, &c.engine));
    double s = 0;
    int st = d2c_error_context(condense_run(&c, &s), "d2c_condense: ");
    api_close_engine(c.engine);
    D2C_TRY(st);
    if (seconds) *seconds = s;
    return D2C_OK;
}

int d2c_pool_load(d2c_pool **out, const char *path) {
    API_NOT_NULL("d2c_pool_load", out, "out");
    *out = NULL;
    API_NOT_NULL("d2c_pool_load", path, "path");
    d2c_pool *h = xcalloc(1, sizeof *h);
    int st = pool_load(&h->p, path);
    if (st != D2C_OK) {
        free(h);
        return st;
    }
    *out = h;
    return D2C_OK;
}

void d2c_pool_free(d2c_pool *h) {
    if (!h) return;
    pool_free(&h->p);
    free(h);
}

int d2c_pool_shape(const d2c_pool *h, int *n, int *c, int *hh, int *w) {
    API_NOT_NULL("d2c_pool_shape", h, "the pool handle");
    if (n) *n = h->p.n;
    if (c) *c = h->p.c;
    if (hh) *hh = h->p.h;
    if (w) *w = h->p.w;
    return D2C_OK;
}

int d2c_pool_classes(const d2c_pool *h, int *k, int *ipc) {
    API_NOT_NULL("d2c_pool_classes", h, "the pool handle");
    if (k) *k = h->p.num_classes;
    if (ipc) *ipc = h->p.ipc;
    return D2C_OK;
}

int d2c_pool_images(const d2c_pool *h, const float **images) {
    API_NOT_NULL("d2c_pool_images", h, "the pool handle");
    API_NOT_NULL("d2c_pool_images", images, "images");
    *images = h->p.images;
    return D2C_OK;
}

int d2c_pool_labels(const d2c_pool *h, const int64_t **labels) {
    API_NOT_NULL("d2c_pool_labels", h, "the pool handle");
    API_NOT_NULL("d2c_pool_labels", labels, "labels");
    *labels = h->p.labels;
    return D2C_OK;
}

int d2c_pool_cond(const d2c_pool *h, const float **cond, int *cond_dim) {
    API_NOT_NULL("d2c_pool_cond", h, "the pool handle");
    if (cond) *cond = h->p.cond;
    if (cond_dim) *cond_dim = h->p.cond ? h->p.cond_dim : 0;
    return D2C_OK;
}

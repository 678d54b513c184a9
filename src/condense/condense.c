/* The condensation driver: the d2c bilevel loop and the learned baselines (dsa, dm), the
 * pool initialisation, checkpoints and --resume and the JSON-lines log (the selection methods
 * and the pool's outputs are in condense_select.c).
 *
 * One outer iteration of d2c:
 *   1. every outer_loop iterations, re-initialise the matching network;
 *   2. every rescore iterations, score the candidate timesteps on real data and keep the
 *      top K (and log the noise floor: the distance between two disjoint real batches);
 *   3. for each class, match the gradients of the DDPM loss on a real batch and on the
 *      class's synthetic images at the K timesteps; accumulate the hypergradient
 *      (matching.c), optionally through DSA and into learnable conditioning vectors;
 *   4. (--implicit N) add the implicit-differentiation path through the inner steps;
 *   5. one optimiser step on the pool (pixels, or a low-resolution residual), clamp;
 *   6. inner loop: inner_steps SGD steps of the network on the pool.
 * Every draw of iteration i comes from streams keyed by (seed, purpose, i), and the state
 * (pool, its optimiser, network, timesteps) is checkpointed, so --resume is exact.
 * The pool, its optimiser and the batch assembly stay on the host; the network and the
 * matching buffers live on the options' engine, and each batch is uploaded (condense_stage). */
#include "condense/condense.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "condense/augment.h"
#include "condense/condense_state.h"
#include "condense/matching.h"
#include "condense/pool.h"
#include "core/progress.h"
#include "core/rng.h"
#include "core/util.h"
#include "diffusion/ddpm.h"
#include "io/dataset.h"
#include "model/adam.h"

/* The Condenser state is in condense_state.h. */

/* The network's weights: the initialisation of seed, drawn on the host and uploaded. */
static void init_net(Condenser *c, uint64_t seed) { unet_init_weights(&c->net, seed); }


static uint64_t net_seed(const CondenseOptions *o, int iter) {
    return o->seed * 1000003ull + (uint64_t)(iter / (o->outer_loop > 0 ? o->outer_loop : 1)) + 17;
}

void condense_materialise_pool(Condenser *c) {
    const int R = c->opt->pool_res;
    if (R <= 0) return;
    const Pool *p = &c->pool;
    const int f = p->h / R;
    for (int i = 0; i < p->n; i++)
        for (int ch = 0; ch < p->c; ch++)
            for (int y = 0; y < p->h; y++)
                for (int x = 0; x < p->w; x++) {
                    size_t o = (((size_t)i * p->c + ch) * p->h + y) * p->w + x;
                    float v = c->base[o] + c->residual[(((size_t)i * p->c + ch) * R + y / f) * R + x / f];
                    p->images[o] = v < -1 ? -1 : v > 1 ? 1 : v;
                }
}

/* ---------------------------------------------------------------- one outer iteration */

/* Adds per-image gradients g (B, D) and gcond (B, E) of pool images idx[0..B) into the
 * gradient of the learnable floats (pixels, or the low-resolution residual). */
static void scatter_pool_grad(Condenser *c, const int *idx, int B, const float *g, const float *gcond) {
    const Pool *p = &c->pool;
    const size_t D = c->D;
    const int R = c->opt->pool_res;
    for (int b = 0; b < B; b++) {
        const int i = idx[b];
        const float *gb = g + (size_t)b * D;
        if (R <= 0) {
            c->host->ops->add(c->host, c->pool_grad + (size_t)i * D, gb, D);
        } else {
            const int f = p->h / R;
            for (int ch = 0; ch < p->c; ch++)
                for (int y = 0; y < p->h; y++)
                    for (int x = 0; x < p->w; x++)
                        c->pool_grad[(((size_t)i * p->c + ch) * R + y / f) * R + x / f] += gb[((size_t)ch * p->h + y) * p->w + x];
        }
        if (gcond)
            c->host->ops->add(c->host, c->pool_grad + c->n_img_learn + (size_t)i * p->cond_dim, gcond + (size_t)b * p->cond_dim,
                              (size_t)p->cond_dim);
    }
}

/* Matching loss of class k with its hypergradient added into c->pool_grad. */
static double match_class(Condenser *c, int iter, int k) {
    const CondenseOptions *o = c->opt;
    const Pool *p = &c->pool;
    const int M = o->noise_draws, Br = o->real_batch, Bs = D2C_MIN(o->syn_batch, p->ipc);
    const size_t D = c->D;
    const uint64_t stream = (uint64_t)iter * p->num_classes + k;
    draw_real(c, k, Br, stream, c->xr, c->yr);
    /* synthetic subset */
    for (int i = 0; i < p->ipc; i++) c->sub[i] = k * p->ipc + i;
    Rng rs = rng_stream(o->seed, RNG_POOL, (5ull << 40) + stream);
    rng_shuffle(&rs, c->sub, p->ipc);
    for (int b = 0; b < Bs; b++) {
        memcpy(c->xs + (size_t)b * D, p->images + (size_t)c->sub[b] * D, D * sizeof(float));
        c->ys[b] = k;
        if (p->cond) memcpy(c->cond_batch + (size_t)b * p->cond_dim, p->cond + (size_t)c->sub[b] * p->cond_dim,
                            (size_t)p->cond_dim * sizeof(float));
    }
    /* noise draws: replicate the images M times; the batch-mean gradient is then the
     * average over draws */
    for (int m = 1; m < M; m++) {
        memcpy(c->xr + (size_t)m * Br * D, c->xr, (size_t)Br * D * sizeof(float));
        memcpy(c->xs + (size_t)m * Bs * D, c->xs, (size_t)Bs * D * sizeof(float));
        if (p->cond) memcpy(c->cond_batch + (size_t)m * Bs * p->cond_dim, c->cond_batch, (size_t)Bs * p->cond_dim * sizeof(float));
        for (int b = 0; b < Br; b++) c->yr[m * Br + b] = k;
        for (int b = 0; b < Bs; b++) c->ys[m * Bs + b] = k;
    }
    const int BR = M * Br, BS = M * Bs;
    Rng rn = rng_stream(o->seed, RNG_NOISE, stream);
    rng_fill_normal(&rn, c->noise_r, (size_t)c->K * BR * D);
    rng_fill_normal(&rn, c->noise_s, (size_t)c->K * BS * D);
    const float *xr = c->xr, *xs = c->xs;
    AugmentParams aug;
    if (o->dsa) {
        Rng ra = rng_stream(o->seed, RNG_AUGMENT, stream);
        aug = augment_draw(&ra, p->h, p->w);
        augment_forward(&aug, c->xr, c->xr_aug, BR, p->c, p->h, p->w);
        augment_forward(&aug, c->xs, c->xs_aug, BS, p->c, p->h, p->w);
        xr = c->xr_aug;
        xs = c->xs_aug;
    }
    int64_t ts[64];
    for (int i = 0; i < c->K; i++) ts[i] = c->timesteps[i];
    const EngineBatch eb = condense_stage(c, xr, BR, xs, BS, c->K, p->cond != NULL);
    float *gs = condense_engine_out(c, c->d_gs, c->gs, (size_t)BS * D);
    float *gcond = p->cond ? condense_engine_out(c, c->d_gcond, c->gcond, (size_t)BS * p->cond_dim) : NULL;
    double loss = matching_loss_grad(&c->net, &c->sched, &c->mw, eb.xr, c->yr, BR, eb.xs, c->ys, eb.cond, BS, ts, c->K,
                                     eb.noise_r, eb.noise_s, (float)o->dm_weight, gs, gcond);
    condense_from_engine(c, c->gs, gs, (size_t)BS * D);
    if (gcond) condense_from_engine(c, c->gcond, gcond, (size_t)BS * p->cond_dim);
    if (o->dsa) {
        memset(c->gs_aug, 0, (size_t)BS * D * sizeof(float));
        augment_backward(&aug, c->gs, c->gs_aug, BS, p->c, p->h, p->w);
        memcpy(c->gs, c->gs_aug, (size_t)BS * D * sizeof(float));
    }
    for (int m = 0; m < M; m++)
        scatter_pool_grad(c, c->sub, Bs, c->gs + (size_t)m * Bs * D, p->cond ? c->gcond + (size_t)m * Bs * p->cond_dim : NULL);
    return loss;
}

/* Fills the inner-loss batch of stream index `stream`: B pool images (indices in idx),
 * their labels and conditioning, timesteps in mw.t_syn and noise in noise_s. */
static int inner_batch(Condenser *c, uint64_t stream, int *idx) {
    const Pool *p = &c->pool;
    const int B = D2C_MIN(p->n, c->max_batch);
    Rng r = rng_stream(c->opt->seed, RNG_BATCH, stream);
    for (int b = 0; b < B; b++) {
        int i = (int)rng_below(&r, (uint32_t)p->n);
        idx[b] = i;
        memcpy(c->xs + (size_t)b * c->D, p->images + (size_t)i * c->D, c->D * sizeof(float));
        c->ys[b] = p->labels[i];
        c->mw.t_syn[b] = rng_below(&r, (uint32_t)c->sched.T);
        if (p->cond) memcpy(c->cond_batch + (size_t)b * p->cond_dim, p->cond + (size_t)i * p->cond_dim, (size_t)p->cond_dim * sizeof(float));
    }
    rng_fill_normal(&r, c->noise_s, (size_t)B * c->D);
    return B;
}

/* The implicit-differentiation path through the inner steps (implicit function theorem):
 * d theta / d x = -H^-1 d^2 L_in / d theta d x, so the pool gradient gains
 * -d/dx <grad_theta L_in(x, theta), H^-1 dM/dtheta>, with H^-1 u approximated by the
 * Neumann series alpha sum_{j<N} (I - alpha H)^j u, alpha = the inner learning rate. */
static void implicit_step(Condenser *c, int iter) {
    const CondenseOptions *o = c->opt;
    const Pool *p = &c->pool;
    const size_t P = c->net.lay.n_params;
    const float alpha = (float)o->lr_net > 0 ? (float)o->lr_net : 0.01f;
    Engine *e = c->eng, *h = c->host;
    const double direct = sqrt(h->ops->sum_sq(h, c->pool_grad, c->n_learn));
    const int B = inner_batch(c, (uint64_t)iter * 1024 + 1023, c->inner_idx);
    const EngineBatch eb = condense_stage(c, NULL, 0, c->xs, B, 1, p->cond != NULL);
    float *pv = c->neumann_p, *r = c->neumann_r;
    e->ops->copy(e, r, c->mw.dtheta, P * sizeof(float));
    engine_zero_floats(e, pv, P);
    e->ops->axpy(e, pv, alpha, r, P);
    for (int j = 1; j < o->implicit; j++) {
        /* r <- r - alpha H r */
        ddpm_hessian_vector(&c->net, &c->sched, &c->mw.syn, c->mw.theta, c->mw.fd, eb.xs, c->mw.t_syn, c->ys, eb.cond, eb.noise_s, B,
                            r, -alpha, r);
        e->ops->axpy(e, pv, alpha, r, P);
    }
    float *gs = condense_engine_out(c, c->d_gs, c->gs, (size_t)B * c->D);
    float *gcond = p->cond ? condense_engine_out(c, c->d_gcond, c->gcond, (size_t)B * p->cond_dim) : NULL;
    ddpm_mixed_vector(&c->net, &c->sched, &c->mw.syn, c->mw.theta, c->mw.fd, eb.xs, c->mw.t_syn, c->ys, eb.cond, eb.noise_s, B, pv,
                      -1.0f, gs, gcond);
    condense_from_engine(c, c->gs, gs, (size_t)B * c->D);
    if (gcond) condense_from_engine(c, c->gcond, gcond, (size_t)B * p->cond_dim);
    scatter_pool_grad(c, c->inner_idx, B, c->gs, p->cond ? c->gcond : NULL);
    const double total = sqrt(h->ops->sum_sq(h, c->pool_grad, c->n_learn));
    c->implicit_ratio = direct > 0 ? fabs(total - direct) / direct : 0;
}

/* The inner loop: inner_steps plain SGD steps of the network on the pool. */
static void inner_steps(Condenser *c, int iter) {
    const CondenseOptions *o = c->opt;
    const Pool *p = &c->pool;
    const int B = D2C_MIN(p->n, c->max_batch);
    const size_t P = c->net.lay.n_params;
    Engine *e = c->eng;
    for (int s = 0; s < o->inner_steps; s++) {
        inner_batch(c, (uint64_t)iter * 1024 + s, c->inner_idx);
        const EngineBatch eb = condense_stage(c, NULL, 0, c->xs, B, 1, p->cond != NULL);
        engine_zero_floats(e, c->net.grads, P);
        ddpm_pass(&c->net, &c->sched, &c->mw.syn, eb.xs, c->mw.t_syn, c->ys, eb.cond, eb.noise_s, B, 1, 1.0f, NULL, NULL);
        clip_grad_norm(e, c->net.grads, P, 1.0);
        e->ops->axpy(e, c->net.params, -(float)o->lr_net, c->net.grads, P);
    }
}

/* ---------------------------------------------------------------- driver */

static void condenser_alloc(Condenser *c) {
    const CondenseOptions *o = c->opt;
    const Pool *p = &c->pool;
    const int M = o->noise_draws;
    const int Bs = D2C_MIN(o->syn_batch, p->ipc);
    const int inner = D2C_MIN(p->n, 64);
    c->max_batch = D2C_MAX(D2C_MAX(M * o->real_batch, M * Bs), inner);
    const size_t D = c->D, mb = (size_t)c->max_batch;
    const int nrows = D2C_MAX(c->K, 1);
    c->xr = xmalloc_floats(mb * D);
    c->xs = xmalloc_floats(mb * D);
    c->xr_aug = xmalloc_floats(mb * D);
    c->xs_aug = xmalloc_floats(mb * D);
    c->noise_r = xmalloc_floats((size_t)nrows * mb * D);
    c->noise_s = xmalloc_floats((size_t)nrows * mb * D);
    c->gs = xmalloc_floats(mb * D);
    c->gs_aug = xmalloc_floats(mb * D);
    c->gcond = xmalloc_floats(mb * (size_t)D2C_MAX(p->cond_dim, 1));
    c->cond_batch = xmalloc_floats(mb * (size_t)D2C_MAX(p->cond_dim, 1));
    c->yr = xcalloc(mb, sizeof(int64_t));
    c->ys = xcalloc(mb, sizeof(int64_t));
    c->sub = xcalloc((size_t)p->ipc, sizeof(int));
    c->inner_idx = xcalloc(mb, sizeof(int));
    if (!c->eng->host_memory) {
        Engine *e = c->eng;
        const size_t cd = (size_t)D2C_MAX(p->cond_dim, 1);
        c->d_xr = engine_xalloc_floats(e, mb * D);
        c->d_xs = engine_xalloc_floats(e, mb * D);
        c->d_noise_r = engine_xalloc_floats(e, (size_t)nrows * mb * D);
        c->d_noise_s = engine_xalloc_floats(e, (size_t)nrows * mb * D);
        c->d_gs = engine_xalloc_floats(e, mb * D);
        c->d_gcond = engine_xalloc_floats(e, mb * cd);
        c->d_cond = engine_xalloc_floats(e, mb * cd);
    }
}

static void condenser_free(Condenser *c) {
    free(c->xr); free(c->xs); free(c->xr_aug); free(c->xs_aug); free(c->noise_r); free(c->noise_s);
    free(c->gs); free(c->gs_aug); free(c->gcond); free(c->cond_batch); free(c->yr); free(c->ys); free(c->sub);
    free(c->inner_idx);
    if (c->eng) {
        float *mirrors[] = {c->d_xr, c->d_xs, c->d_noise_r, c->d_noise_s, c->d_gs, c->d_gcond, c->d_cond,
                            c->neumann_p, c->neumann_r};
        for (size_t i = 0; i < sizeof mirrors / sizeof *mirrors; i++) engine_free(c->eng, mirrors[i]);
    }
    free(c->pool_grad); free(c->base); free(c->residual); free(c->timesteps);
    adam_destroy(&c->pool_opt);
    match_work_free(&c->mw);
    unet_destroy(&c->net);
    pool_free(&c->pool);
}

/* The initial pool of a learned method and the learnable floats around it. */
static int init_pool(Condenser *c, int ipc, int E, PoolMeta *meta) {
    const CondenseOptions *o = c->opt;
    int *idx = xcalloc((size_t)c->pool.n, sizeof(int));
    CondenseMethod pick = CONDENSE_RANDOM;
    switch (o->init) {
    case POOL_INIT_KCENTER: pick = CONDENSE_KCENTER; break;
    case POOL_INIT_KHERDING: pick = CONDENSE_KHERDING; break;
    case POOL_INIT_GADC: pick = CONDENSE_GADC; break;
    case POOL_INIT_FACILITY: pick = CONDENSE_FACILITY; break;
    case POOL_INIT_REAL:
    case POOL_INIT_NOISE: pick = CONDENSE_RANDOM; break;
    case POOL_INIT_COUNT: D2C_CHECK(!"a pool initialisation");
    }
    int st = condense_select(o, pick, &c->data, &c->ci, ipc, idx, meta);
    if (st == D2C_OK) pool_fill_from(&c->pool, &c->data, idx);
    free(idx);
    D2C_TRY(st);
    if (o->init == POOL_INIT_NOISE) {
        Rng r = rng_stream(o->seed, RNG_POOL, 1ull << 50);
        for (size_t i = 0; i < (size_t)c->pool.n * c->D; i++) {
            float v = 0.5f * rng_normal(&r);
            c->pool.images[i] = v < -1 ? -1 : v > 1 ? 1 : v;
        }
    }
    init_net(c, net_seed(o, 0));
    if (c->pool.cond) { /* the class embedding rows, read back from the engine */
        float *params = xmalloc_floats(c->net.lay.n_params);
        unet_download_params(&c->net, params);
        for (int i = 0; i < c->pool.n; i++)
            memcpy(c->pool.cond + (size_t)i * E, params + c->net.lay.class_embed + (size_t)c->pool.labels[i] * E,
                   (size_t)E * sizeof(float));
        free(params);
    }
    if (o->pool_res > 0) {
        c->base = xmalloc_floats((size_t)c->pool.n * c->D);
        memcpy(c->base, c->pool.images, (size_t)c->pool.n * c->D * sizeof(float));
        c->n_img_learn = (size_t)c->pool.n * c->pool.c * o->pool_res * o->pool_res;
        c->residual = xcalloc(c->n_img_learn, sizeof(float));
    } else {
        c->n_img_learn = (size_t)c->pool.n * c->D;
    }
    c->n_learn = c->n_img_learn + (size_t)c->pool.n * c->pool.cond_dim;
    c->pool_grad = xmalloc_floats(c->n_learn);
    adam_create(&c->pool_opt, c->host, c->n_learn, (float)o->lr_img); /* the pool is on the host */
    return D2C_OK;
}

/* The learned methods: d2c, dsa, dm. */
static int run_learned(Condenser *c, int ipc, double *seconds) {
    const CondenseOptions *o = c->opt;
    double t0 = now_seconds();
    UNetConfig cfg = o->cfg;
    cfg.in_channels = c->data.c;
    cfg.num_classes = c->data.num_classes;
    c->K = o->method == CONDENSE_DM ? 1 : o->topk;
    if (c->K < 1 || c->K > 64) return d2c_error(D2C_ERR_INPUT, "--topk must be 1..64, got %d", c->K);
    if (o->pool_res > 0 && (c->data.h % o->pool_res || c->data.w % o->pool_res))
        return d2c_error(D2C_ERR_INPUT, "--pool-res %d must divide the image size %dx%d", o->pool_res, c->data.h,
                         c->data.w);
    c->timesteps = xcalloc((size_t)c->K, sizeof(int));
    const int E = 4 * cfg.base_channels;
    pool_create(&c->pool, c->data.num_classes, ipc, c->data.c, c->data.h, c->data.w, o->learn_cond ? E : 0);
    condenser_alloc(c);
    D2C_TRY(d2c_error_context(unet_create(&c->net, c->eng, &cfg, c->data.h, c->data.w, c->max_batch),
                              "the matching network: "));
    match_work_create(&c->mw, &c->net, c->max_batch, c->max_batch);
    c->mw.no_gradient_matching = o->method == CONDENSE_DM;
    c->mw.want_dtheta = o->implicit > 0;
    if (o->implicit > 0) {
        c->neumann_p = engine_xalloc_floats(c->eng, c->net.lay.n_params);
        c->neumann_r = engine_xalloc_floats(c->eng, c->net.lay.n_params);
    }
    schedule_init(&c->sched, SCHEDULE_LINEAR);
    PoolMeta meta = {0};
    pool_meta_add(&meta, "init", "%s", POOL_INIT_NAMES[o->init]);
    D2C_TRY(init_pool(c, ipc, E, &meta));

    int start = 0;
    if (o->resume) D2C_TRY(condense_load_state(c, &start));
    char *log_path = NULL;
    if (o->log_path) log_path = xstrdup(o->log_path);
    else {
        log_path = xmalloc(strlen(o->out) + 16);
        sprintf(log_path, "%s.log.jsonl", o->out);
    }
    FILE *log = fopen(log_path, o->resume ? "a" : "w");
    if (!log) {
        int st = d2c_error(D2C_ERR_INPUT, "%s: cannot write the condensation log: %s", log_path, strerror(errno));
        free(log_path);
        return st;
    }
    float *learn = xmalloc_floats(c->n_learn), *mom = NULL;
    const int sgd = o->opt_img == PIXEL_OPT_SGD;
    if (sgd) mom = c->pool_opt.m; /* SGD momentum buffer */
    const int scored = o->method == CONDENSE_D2C;
    Progress prog;
    progress_begin(&prog, "condense", start, o->iters);
    double last_loss = 0, floor = -1, gap = -1;
    EvalSummary ev = {-1, -1, -1};
    int done = o->iters, st = D2C_OK, last_ckpt = o->resume ? start : -1;
    if (o->eval_nets > 0) {
        if (start == 0) {
            eval_matching(c, &c->eval_start, &ev.subset);
            fprintf(log, "{\"iter\": 0, \"eval_loss\": %.6f, \"eval_random_subset\": %.6f}\n", c->eval_start, ev.subset);
            fflush(log);
        }
        ev.start = c->eval_start;
    }
    for (int it = start; it < o->iters; it++) {
        double ti = now_seconds();
        if (o->outer_loop > 0 && it % o->outer_loop == 0 && it > 0) init_net(c, net_seed(o, it));
        if (o->method == CONDENSE_DM) {
            init_net(c, net_seed(o, it) + (1ull << 32));
            random_timesteps(c, it);
        } else if (!scored) {
            random_timesteps(c, it);
        } else if (it % o->rescore == 0 || (it == start && o->resume == 0)) {
            score_timesteps(c, it, &floor, &gap);
        }
        memset(c->pool_grad, 0, c->n_learn * sizeof(float));
        if (o->implicit > 0) engine_zero_floats(c->eng, c->mw.dtheta, c->net.lay.n_params);
        double loss = 0;
        for (int k = 0; k < c->data.num_classes; k++) loss += match_class(c, it, k);
        if (o->implicit > 0) implicit_step(c, it);
        last_loss = loss;
        if (!isfinite(loss)) {
            /* stop: the state file holds the last good iteration, untouched */
            if (!o->quiet) progress_end(&prog);
            char *sp = condense_state_path(o);
            if (last_ckpt >= 0)
                st = d2c_error(D2C_ERR_FAIL,
                               "the matching loss became %s at iteration %d; stopped, the last good state is '%s' "
                               "(iteration %d) and no pool was written",
                               isnan(loss) ? "NaN" : "infinite", it + 1, sp, last_ckpt);
            else
                st = d2c_error(D2C_ERR_FAIL,
                               "the matching loss became %s at iteration %d; stopped before the first checkpoint, "
                               "no pool was written",
                               isnan(loss) ? "NaN" : "infinite", it + 1);
            free(sp);
            break;
        }
        /* pool update */
        memcpy(learn, condense_learn_floats(c), c->n_img_learn * sizeof(float));
        if (c->pool.cond) memcpy(learn + c->n_img_learn, c->pool.cond, (size_t)c->pool.n * c->pool.cond_dim * sizeof(float));
        if (sgd) {
            c->pool_opt.step++;
            for (size_t i = 0; i < c->n_learn; i++) {
                mom[i] = 0.5f * mom[i] + c->pool_grad[i];
                learn[i] -= (float)o->lr_img * mom[i];
            }
        } else {
            adam_step(&c->pool_opt, learn, c->pool_grad);
        }
        memcpy(condense_learn_floats(c), learn, c->n_img_learn * sizeof(float));
        if (c->pool.cond) memcpy(c->pool.cond, learn + c->n_img_learn, (size_t)c->pool.n * c->pool.cond_dim * sizeof(float));
        if (o->pool_res > 0) condense_materialise_pool(c);
        else for (size_t i = 0; i < c->n_img_learn; i++) c->pool.images[i] = c->pool.images[i] < -1 ? -1 : c->pool.images[i] > 1 ? 1 : c->pool.images[i];
        inner_steps(c, it);

        double secs = now_seconds() - ti;
        fprintf(log, "{\"iter\": %d, \"loss\": %.6f, \"timesteps\": [", it + 1, loss);
        for (int i = 0; i < c->K; i++) fprintf(log, "%s%d", i ? ", " : "", c->timesteps[i]);
        fprintf(log, "], \"seconds\": %.3f, \"peak_mem_mib\": %.1f", secs, peak_rss_mib());
        if (floor >= 0) fprintf(log, ", \"floor\": %.4f, \"gap\": %.4f", floor, gap);
        if (o->implicit > 0) fprintf(log, ", \"implicit_ratio\": %.4g", c->implicit_ratio);
        /* one reading of the clock decides both the last evaluation and the stop */
        const int out_of_time = o->time_budget > 0 && now_seconds() - t0 >= o->time_budget && it + 1 < o->iters;
        const int last = it + 1 == o->iters || out_of_time;
        if (o->eval_nets > 0 && ((o->eval_every > 0 && (it + 1) % o->eval_every == 0) || last)) {
            eval_matching(c, &ev.end, ev.subset < 0 ? &ev.subset : NULL);
            fprintf(log, ", \"eval_loss\": %.6f, \"eval_random_subset\": %.6f", ev.end, ev.subset);
        }
        fprintf(log, "}\n");
        fflush(log);
        floor = gap = -1;
        char status[96];
        snprintf(status, sizeof status, "loss %.2f %.1f s/it", loss, secs);
        if (!o->quiet) progress_update(&prog, it + 1, status);
        if ((it + 1) % o->ckpt_every == 0 || it + 1 == o->iters || out_of_time) {
            if ((st = condense_save_state(c, it + 1)) != D2C_OK) {
                if (!o->quiet) progress_end(&prog);
                d2c_error_context(st, "the condensation state at iteration %d: ", it + 1);
                break;
            }
            last_ckpt = it + 1;
        }
        if (out_of_time) {
            done = it + 1;
            break;
        }
    }
    free(learn);
    if (fclose(log) != 0 && st == D2C_OK)
        st = d2c_error(D2C_ERR_FAIL, "%s: cannot write the condensation log: %s", log_path, strerror(errno));
    free(log_path);
    if (st) return st;
    if (!o->quiet) progress_end(&prog);
    /* resumed from the final checkpoint (a run stopped while writing its outputs): the loop
     * did not run, so measure the end values again; they depend on the pool alone */
    if (o->eval_nets > 0 && ev.end < 0) eval_matching(c, &ev.end, &ev.subset);
    *seconds = now_seconds() - t0;
    D2C_TRY(condense_write_outputs(o, &c->pool, &c->data, *seconds, done, c->timesteps, c->K, ev, &meta));
    if (!o->quiet) {
        fprintf(stderr, "condense: %d iterations in %.1f s%s, last loss %.3f -> %s\n", done - start, *seconds,
                done < o->iters ? " (time budget reached)" : "", last_loss, o->out);
        if (ev.end >= 0)
            fprintf(stderr, "condense: held-out matching loss %.2f -> %.2f (%+.2f%%); a random real subset: %.2f\n",
                    ev.start, ev.end, ev.start > 0 ? 100.0 * (ev.end - ev.start) / ev.start : 0.0, ev.subset);
    }
    return D2C_OK;
}

int condense_run(const CondenseOptions *o, double *seconds) {
    *seconds = 0;
    D2C_TRY(condense_options_check(o));
    D2C_TRY(check_writable(o->out));
    Condenser c = {0};
    c.opt = o;
    c.eng = o->engine ? o->engine : engine_cpu_default();
    c.host = engine_cpu_default();
    c.eval_start = -1;
    D2C_TRY(d2c_error_context(dataset_load(&c.data, o->data), "--data: "));
    int st;
    /* every class of the data set needs images (the label rule of io/dataset.h) */
    D2C_TRY_GOTO(st, d2c_error_context(dataset_require_all_classes(&c.data), "--data: "), done);
    c.ci = class_index_build(&c.data);
    const int ipc = o->ipc > 0 ? o->ipc : pool_ipc_for_ratio(&c.data, o->ratio);
    for (int k = 0; k < c.data.num_classes; k++)
        if (class_index_count(&c.ci, k) < ipc) {
            st = d2c_error(D2C_ERR_INPUT, "--data: class %d of %s has %d images, fewer than the %d per class asked for", k,
                           c.data.source, class_index_count(&c.ci, k), ipc);
            goto done;
        }
    c.D = (size_t)c.data.c * c.data.h * c.data.w;
    CondenseOptions chosen = *o; /* no method named: the one for this budget */
    if (o->method_by_budget) {
        chosen.method = condense_method_for_budget((double)ipc * c.data.num_classes / c.data.n);
        c.opt = o = &chosen;
    }
    if (!o->quiet)
        fprintf(stderr, "condense: %s, %s, %d images per class (%d of %d = %.3f%%)\n", CONDENSE_METHOD_NAMES[o->method],
                c.data.source, ipc, ipc * c.data.num_classes, c.data.n, 100.0 * ipc * c.data.num_classes / c.data.n);
    st = condense_method_learns(o->method) ? run_learned(&c, ipc, seconds)
                                         : condense_run_selection(o, &c.data, &c.ci, ipc, seconds);
done:
    condenser_free(&c);
    class_index_free(&c.ci);
    dataset_free(&c.data);
    return st;
}

/* Measurements of the matching objective during condensation: the timestep scores that
 * choose the K matched timesteps (with the real-vs-real noise floor), and the held-out
 * matching loss that says whether the pool has moved towards the real data. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "condense/condense_state.h"
#include "core/rng.h"
#include "core/util.h"
#include "diffusion/ddpm.h"

/* ---------------------------------------------------------------- timestep scoring */

/* matching_loss_grad without the hypergradient, on the host batch buffers (xr, xs, the
 * noises and, with cond, cond_batch) as the engine sees them. */
static double match_loss(Condenser *c, int Br, int Bs, int with_cond, const int64_t *ts, int K, float dm_weight) {
    const EngineBatch eb = condense_stage(c, c->xr, Br, c->xs, Bs, K, with_cond);
    return matching_loss_grad(&c->net, &c->sched, &c->mw, eb.xr, c->yr, Br, eb.xs, c->ys, eb.cond, Bs, ts, K, eb.noise_r,
                              eb.noise_s, dm_weight, NULL, NULL);
}

/* Draws the real batch of class k for stream index idx into xr (Br images). */
void draw_real(Condenser *c, int k, int Br, uint64_t stream, float *xr, int64_t *yr) {
    const int n = class_index_count(&c->ci, k);
    Rng r = rng_stream(c->opt->seed, RNG_POOL, stream);
    for (int b = 0; b < Br; b++) {
        int i = c->ci.index[c->ci.start[k] + (int)rng_below(&r, (uint32_t)n)];
        memcpy(xr + (size_t)b * c->D, c->data.images + (size_t)i * c->D, c->D * sizeof(float));
        yr[b] = k;
    }
}

typedef struct {
    double score;
    int t;
} TScore;

static int by_score_desc(const void *a, const void *b) {
    const TScore *x = a, *y = b;
    if (x->score != y->score) return x->score > y->score ? -1 : 1;
    return x->t - y->t;
}

/* Scores every candidate timestep and keeps the best K in c->timesteps; returns the mean
 * real-vs-real distance (noise floor) and real-vs-pool distance at the chosen ones. */
void score_timesteps(Condenser *c, int iter, double *floor_out, double *gap_out) {
    const CondenseOptions *o = c->opt;
    const int nc = o->t_candidates, Br = o->real_batch, T = c->sched.T;
    TScore *sc = xcalloc((size_t)nc, sizeof(TScore));
    const size_t P = c->net.lay.n_params;
    float *g = xmalloc_floats(P);
    for (int j = 0; j < nc; j++) {
        int t = (int)(((long)j * T + T / 2) / nc);
        sc[j].t = t;
        /* a real batch spanning the classes */
        const int k = j % c->data.num_classes;
        draw_real(c, k, Br, (1ull << 40) + (uint64_t)iter * nc + j, c->xr, c->yr);
        Rng rn = rng_stream(o->seed, RNG_NOISE, (1ull << 40) + (uint64_t)iter * nc + j);
        rng_fill_normal(&rn, c->noise_r, (size_t)Br * c->D);
        int64_t *tt = c->mw.t_real;
        for (int b = 0; b < Br; b++) tt[b] = t;
        switch (o->score) {
        case SCORE_GAP:
        case SCORE_EXCESS: {
            int Bs = D2C_MIN(o->syn_batch, c->pool.ipc);
            for (int b = 0; b < Bs; b++) {
                memcpy(c->xs + (size_t)b * c->D, c->pool.images + ((size_t)k * c->pool.ipc + b) * c->D, c->D * sizeof(float));
                c->ys[b] = k;
            }
            Rng rs = rng_stream(o->seed, RNG_NOISE, (2ull << 40) + (uint64_t)iter * nc + j);
            rng_fill_normal(&rs, c->noise_s, (size_t)Bs * c->D);
            int64_t tk = t;
            sc[j].score = match_loss(c, Br, Bs, 0, &tk, 1, 0.0f);
            if (o->score == SCORE_EXCESS) {
                /* minus the floor: the same distance to another real batch of the pool's size */
                draw_real(c, k, Bs, (6ull << 40) + (uint64_t)iter * nc + j, c->xs, c->ys);
                sc[j].score -= match_loss(c, Br, Bs, 0, &tk, 1, 0.0f);
            }
            break;
        }
        case SCORE_GRAD_NORM:
        case SCORE_LOSS: {
            const int grad = o->score == SCORE_GRAD_NORM;
            Engine *e = c->eng;
            const EngineBatch eb = condense_stage(c, c->xr, Br, NULL, 0, 1, 0);
            engine_zero_floats(e, c->net.grads, P);
            float loss = ddpm_loss(&c->net, &c->sched, &c->mw.real, eb.xr, tt, c->yr, NULL, eb.noise_r, Br, grad, 1.0f,
                                   NULL, NULL);
            sc[j].score = grad ? sqrt(e->ops->sum_sq(e, c->net.grads, P)) : loss;
            break;
        }
        case SCORE_COUNT: D2C_CHECK(!"a timestep score");
        }
    }
    qsort(sc, (size_t)nc, sizeof(TScore), by_score_desc);
    for (int i = 0; i < c->K; i++) c->timesteps[i] = sc[i].t;
    /* noise floor: two disjoint real batches of one class, and real against the pool */
    double floor = 0, gap = 0;
    const int k = iter % c->data.num_classes;
    const int Bs = D2C_MIN(o->syn_batch, c->pool.ipc);
    int64_t *ts = xcalloc((size_t)c->K, sizeof(int64_t));
    for (int i = 0; i < c->K; i++) ts[i] = c->timesteps[i];
    draw_real(c, k, Br, (3ull << 40) + (uint64_t)iter, c->xr, c->yr);
    draw_real(c, k, Bs, (4ull << 40) + (uint64_t)iter, c->xs, c->ys);
    Rng rn = rng_stream(o->seed, RNG_NOISE, (3ull << 40) + (uint64_t)iter);
    rng_fill_normal(&rn, c->noise_r, (size_t)c->K * Br * c->D);
    rng_fill_normal(&rn, c->noise_s, (size_t)c->K * Bs * c->D);
    floor = match_loss(c, Br, Bs, 0, ts, c->K, 0.0f);
    for (int b = 0; b < Bs; b++)
        memcpy(c->xs + (size_t)b * c->D, c->pool.images + ((size_t)k * c->pool.ipc + b) * c->D, c->D * sizeof(float));
    gap = match_loss(c, Br, Bs, 0, ts, c->K, 0.0f);
    *floor_out = floor / c->K;
    *gap_out = gap / c->K;
    free(ts);
    free(g);
    free(sc);
}

void random_timesteps(Condenser *c, int iter) {
    Rng r = rng_stream(c->opt->seed, RNG_TIMESTEP, (uint64_t)iter);
    for (int i = 0; i < c->K; i++) c->timesteps[i] = (int)rng_below(&r, (uint32_t)c->sched.T);
}

/* ---------------------------------------------------------------- held-out matching loss */

/* Timesteps of the held-out evaluation: fixed, in the range where the probe found the
 * objective able to tell images apart (t < 500). */
static const int64_t EVAL_TIMESTEPS[] = {50, 150, 300};
#define EVAL_NT ((int)(sizeof EVAL_TIMESTEPS / sizeof EVAL_TIMESTEPS[0]))

/* The matching loss on randomness training never sees: opt->eval_nets freshly initialised
 * networks (their own seeds), fixed real batches and fixed noise, every class's whole
 * pool (up to the batch size) at EVAL_TIMESTEPS. The same numbers at the start and end of
 * a run are therefore paired: a fall is the pool's doing, not the draws'. *subset_out
 * gets the same loss for a random real subset of the pool's size, the value a pool of
 * real images starts near (skipped when subset_out is NULL: it does not change during a
 * run). The training network is restored bit for bit. */
void eval_matching(Condenser *c, double *pool_out, double *subset_out) {
    const CondenseOptions *o = c->opt;
    const Pool *p = &c->pool;
    const size_t P = c->net.lay.n_params, D = c->D;
    const int Br = D2C_MIN(128, c->max_batch), Bs = D2C_MIN(p->ipc, c->max_batch);
    float *saved = engine_xalloc_floats(c->eng, P);
    c->eng->ops->copy(c->eng, saved, c->net.params, P * sizeof(float));
    double pool_loss = 0, subset_loss = 0;
    for (int e = 0; e < o->eval_nets; e++) {
        unet_init_weights(&c->net, o->seed * 1000003ull + (1ull << 48) + (uint64_t)e);
        for (int k = 0; k < p->num_classes; k++)
            for (int j = 0; j < EVAL_NT; j++) {
                const uint64_t stream = (7ull << 40) + ((uint64_t)e * p->num_classes + k) * EVAL_NT + j;
                draw_real(c, k, Br, stream, c->xr, c->yr);
                Rng rn = rng_stream(o->seed, RNG_NOISE, stream);
                rng_fill_normal(&rn, c->noise_r, (size_t)Br * D);
                rng_fill_normal(&rn, c->noise_s, (size_t)Bs * D);
                for (int b = 0; b < Bs; b++) {
                    memcpy(c->xs + (size_t)b * D, p->images + ((size_t)k * p->ipc + b) * D, D * sizeof(float));
                    c->ys[b] = k;
                    if (p->cond) memcpy(c->cond_batch + (size_t)b * p->cond_dim, p->cond + ((size_t)k * p->ipc + b) * p->cond_dim,
                                        (size_t)p->cond_dim * sizeof(float));
                }
                pool_loss += match_loss(c, Br, Bs, p->cond != NULL, &EVAL_TIMESTEPS[j], 1, (float)o->dm_weight);
                if (!subset_out) continue;
                draw_real(c, k, Bs, (8ull << 40) + stream, c->xs, c->ys);
                subset_loss += match_loss(c, Br, Bs, 0, &EVAL_TIMESTEPS[j], 1, (float)o->dm_weight);
            }
    }
    c->eng->ops->copy(c->eng, c->net.params, saved, P * sizeof(float));
    engine_free(c->eng, saved);
    const double norm = (double)o->eval_nets * EVAL_NT;
    *pool_out = pool_loss / norm;
    if (subset_out) *subset_out = subset_loss / norm;
}


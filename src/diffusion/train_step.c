/* One training step through the table's graph_run (see train_step.h). */
#include "diffusion/train_step.h"

#include <string.h>

#include "core/util.h"

void train_step_create(TrainStep *ts, UNet *net, Adam *adam, float *ema, const Schedule *s, DdpmScratch *w,
                       double grad_clip, int with_stats) {
    memset(ts, 0, sizeof *ts);
    D2C_CHECK(adam->eng == net->eng && w->eng == net->eng);
    ts->net = net;
    ts->adam = adam;
    ts->ema = ema;
    ts->sched = s;
    ts->scratch = w;
    ts->grad_clip = grad_clip;
    ts->with_stats = with_stats;
    ts->decay = engine_xalloc_floats(net->eng, 1);
    ts->out = (double *)(void *)engine_xalloc_floats(net->eng, 4); /* two doubles */
}

void train_step_destroy(TrainStep *ts) {
    if (!ts->net) return;
    Engine *e = ts->net->eng;
    e->ops->graph_reset(e); /* records that name these buffers */
    engine_free(e, ts->decay);
    engine_free(e, ts->out);
    memset(ts, 0, sizeof *ts);
}

typedef struct {
    TrainStep *ts;
    const float *x0, *noise;
    const int64_t *t, *y;
    int B;
} StepCall;

/* The step's ops; no host values are read back, so the whole of it can be recorded. */
static void step_ops(void *ctx) {
    const StepCall *c = ctx;
    TrainStep *ts = c->ts;
    UNet *net = ts->net;
    Engine *e = net->eng;
    const size_t P = net->lay.n_params;
    engine_zero_floats(e, net->grads, P);
    ddpm_pass(net, ts->sched, ts->scratch, c->x0, c->t, c->y, NULL, c->noise, c->B, 1, 1.0f, NULL, NULL);
    if (ts->with_stats)
        e->ops->mse_forward_to(e, ts->out, ts->scratch->eps, c->noise, (size_t)c->B * ts->scratch->D);
    if (ts->with_stats || ts->grad_clip > 0) e->ops->clip_grad_norm_to(e, net->grads, P, ts->grad_clip, ts->out + 1);
    adam_apply(ts->adam, net->params, net->grads);
    if (ts->ema) {
        engine_upload_floats(e, ts->decay, &ts->decay_host, 1);
        e->ops->ema_update(e, ts->ema, net->params, ts->decay, P);
    }
}

void train_step_run(TrainStep *ts, const float *x0, const float *noise, const int64_t *t, const int64_t *y, int B,
                    float lr, float ema_decay, double *stats) {
    Engine *e = ts->net->eng;
    D2C_CHECK(B >= 1 && B <= ts->scratch->cap);
    /* the host half of the step: what a replay's uploads read */
    ts->adam->lr = lr;
    adam_prepare(ts->adam);
    ts->decay_host = ema_decay;
    StepCall c = {ts, x0, noise, t, y, B};
    /* ts's own fields and the buffers of net, adam, ema and the scratch are fixed from
     * train_step_create to train_step_destroy (which forgets the records) */
    const uint64_t key[9] = {0x7472616e73746570u /* "transtep" */, (uint64_t)(uintptr_t)ts,
                             (uint64_t)(uintptr_t)ts->net->params, (uint64_t)(uintptr_t)ts->net->grads,
                             (uint64_t)(uintptr_t)x0, (uint64_t)(uintptr_t)noise, (uint64_t)(uintptr_t)t,
                             (uint64_t)(uintptr_t)y, (uint64_t)B};
    e->ops->graph_run(e, key, 9, step_ops, &c);
    if (ts->with_stats && stats && stats != ts->out) e->ops->copy(e, stats, ts->out, 2 * sizeof(double));
}

/* test_backend_ops' whole-model checks, on a tiny UNet (C 8, levels 1,2,2, attention at
 * level 2, 8x8 images): five train steps (DDPM loss forward and backward, clipping, Adam,
 * EMA; new inputs each step), a guided 4-step DDIM run and five calls of the matching loss with its
 * hypergradient (K = 2, with the distribution-matching term; new inputs each call).
 *   - CUDA (when present) against the CPU backend on the same inputs, with tolerances;
 *   - on the CPU alone: the run with 1 thread against the run with 2 threads, which must
 *     agree bit for bit (the CPU kernels' fixed reduction order). The CPU table against
 *     the PyTorch twin is what test_unet and test_hypergrad check: every network they run
 *     goes through the same table. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend_test.h"
#include "condense/matching.h"
#include "core/rng.h"
#include "core/util.h"
#include "diffusion/ddpm.h"
#include "diffusion/sample.h"
#include "diffusion/train_step.h"
#include "model/adam.h"
#include "model/unet.h"
#include "testing.h"

enum { HW = 8, D = HW * HW };

static UNetConfig tiny_config(void) {
    UNetConfig c = unet_default_config();
    c.base_channels = 8;
    c.groups = 4;
    return c;
}

static int g_one_clear = -1; /* >= 0: net->one_clear_backward forced to it */

static void new_net(UNet *net, Engine *e, int max_batch) {
    UNetConfig c = tiny_config();
    test_require_ok(unet_create(net, e, &c, HW, HW, max_batch));
    if (g_one_clear >= 0) net->one_clear_backward = g_one_clear;
    unet_init_weights(net, 3);
}

/* host inputs of n floats, fixed by tag */
static float *inputs(size_t n, uint64_t tag) {
    float *h = xmalloc_floats(n);
    Rng r = rng_stream(42, RNG_EVAL, tag);
    rng_fill_normal(&r, h, n);
    return h;
}

static void put_device(Engine *e, Vec *out, const float *d, size_t n) {
    float *h = xmalloc_floats(n);
    engine_download_floats(e, h, d, n);
    vec_put_f(out, h, n);
    free(h);
}

/* five training steps as d2c train runs them (train_step_run: DDPM loss forward and
 * backward, clipping, Adam, EMA), each with new images, noise, timesteps, labels, learning
 * rate and EMA decay in the same arrays: a backend that replays the step (CUDA graphs from
 * the third call) must follow every one of them. The losses, gradient norms, weights, EMA. */
static void run_train(Engine *e, Vec *out) {
    enum { B = 4, STEPS = 5 };
    UNet net;
    new_net(&net, e, B);
    const size_t P = net.lay.n_params;
    Adam adam;
    adam_create(&adam, e, P, 1e-3f);
    float *ema = engine_xalloc_floats(e, P);
    e->ops->copy(e, ema, net.params, P * sizeof(float));
    DdpmScratch w;
    ddpm_scratch_create(&w, e, B, D);
    Schedule s;
    schedule_init(&s, SCHEDULE_LINEAR);
    TrainStep ts;
    train_step_create(&ts, &net, &adam, ema, &s, &w, 1.0, 1);
    float *x = engine_xalloc_floats(e, (size_t)B * D), *noise = engine_xalloc_floats(e, (size_t)B * D);
    double *stats;
    test_require_ok(engine_alloc(e, (void **)&stats, sizeof(double) * 2 * STEPS));
    int64_t t[B], y[B];
    for (int step = 0; step < STEPS; step++) {
        float *hx = inputs((size_t)B * D, 10 + (uint64_t)step), *hn = inputs((size_t)B * D, 20 + (uint64_t)step);
        engine_upload_floats(e, x, hx, (size_t)B * D);
        engine_upload_floats(e, noise, hn, (size_t)B * D);
        free(hx), free(hn);
        for (int b = 0; b < B; b++) {
            t[b] = (step * 211 + b * 397 + 5) % 1000;
            y[b] = (step * 3 + b * 7) % 11; /* 10 is the null label */
        }
        const float lr = 1e-3f * (float)(step + 1) / STEPS, decay = (float)(1.0 + step) / (float)(10.0 + step);
        train_step_run(&ts, x, noise, t, y, B, lr, decay, stats + 2 * step);
    }
    double host[2 * STEPS];
    e->ops->download(e, host, stats, sizeof host);
    test_require_ok(e->ops->sync(e));
    for (int k = 0; k < 2 * STEPS; k++) vec_put(out, host[k]);
    put_device(e, out, net.params, P);
    put_device(e, out, ema, P);
    engine_free(e, x), engine_free(e, noise), engine_free(e, ema), engine_free(e, stats);
    train_step_destroy(&ts);
    ddpm_scratch_free(&w);
    adam_destroy(&adam);
    unet_destroy(&net);
}

/* the sampler's forward (the inference plan), as d2c sample runs it */
static void denoise(void *ctx, const float *x, const int64_t *t, const int64_t *y, int B, float *eps) {
    unet_forward_infer((UNet *)ctx, x, t, y, NULL, B, eps);
}

/* a 4-step DDIM run with guidance 2 (both passes in one batch) */
static void run_ddim(Engine *e, Vec *out) {
    const int B = 3;
    UNet net;
    new_net(&net, e, 2 * B);
    Schedule s;
    schedule_init(&s, SCHEDULE_LINEAR);
    float *hx = inputs((size_t)B * D, 3);
    float *x = to_dev(e, hx, (size_t)B * D);
    const int64_t y[3] = {0, 4, 9};
    DenoiserRef den = {denoise, &net, net.lay.cfg.num_classes, 2 * B, e};
    ddim_sample(&den, &s, x, y, B, D, 4, 2.0f);
    put_device(e, out, x, (size_t)B * D);
    engine_free(e, x);
    free(hx);
    unet_destroy(&net);
}

/* the matching loss at K = 2 timesteps with its hypergradient d loss / d x_syn (and the
 * DM term), five calls on the same buffers with new synthetic images, noise and timesteps
 * each call: on an engine with graphs, warm-up, recording, capture and two replays */
static void run_hypergrad(Engine *e, Vec *out) {
    const int Br = 6, Bs = 3, K = 2;
    UNet net;
    new_net(&net, e, Br);
    Schedule s;
    schedule_init(&s, SCHEDULE_LINEAR);
    MatchWork w;
    match_work_create(&w, &net, Br, Bs);
    float *hxr = inputs((size_t)Br * D, 4);
    float *xr = to_dev(e, hxr, (size_t)Br * D), *xs = engine_xalloc_floats(e, (size_t)Bs * D);
    float *nr = engine_xalloc_floats(e, (size_t)K * Br * D), *ns = engine_xalloc_floats(e, (size_t)K * Bs * D);
    float *g = engine_xalloc_floats(e, (size_t)Bs * D);
    const int64_t yr[6] = {2, 2, 2, 2, 2, 2}, ys[3] = {2, 2, 2};
    for (int call = 0; call < 5; call++) {
        float *hxs = inputs((size_t)Bs * D, 5 + 3 * call);
        float *hnr = inputs((size_t)K * Br * D, 6 + 3 * call), *hns = inputs((size_t)K * Bs * D, 7 + 3 * call);
        engine_upload_floats(e, xs, hxs, (size_t)Bs * D);
        engine_upload_floats(e, nr, hnr, (size_t)K * Br * D);
        engine_upload_floats(e, ns, hns, (size_t)K * Bs * D);
        engine_zero_floats(e, g, (size_t)Bs * D);
        const int64_t ts[2] = {100 + 150 * call, 600 + 70 * call};
        vec_put(out, matching_loss_grad(&net, &s, &w, xr, yr, Br, xs, ys, NULL, Bs, ts, K, nr, ns, 0.1f, g, NULL));
        put_device(e, out, g, (size_t)Bs * D);
        free(hxs), free(hnr), free(hns);
    }
    engine_free(e, xr), engine_free(e, xs), engine_free(e, nr), engine_free(e, ns), engine_free(e, g);
    free(hxr);
    match_work_free(&w);
    unet_destroy(&net);
}

static const struct {
    const char *label;
    void (*run)(Engine *e, Vec *out);
    double tol_cuda;
    int graphs; /* 1: also on the CUDA engine with graphs (train_step_run, the sampler's
                 * forward and matching_loss_grad go through graph_run) */
} MODEL_CHECKS[] = {
    {"model: 5 train steps (train_step_run: loss, clip, Adam, EMA)", run_train, 1e-4, 1},
    {"model: DDIM 4 steps, guidance 2", run_ddim, 1e-4, 1},
    {"model: matching loss + hypergradient x5", run_hypergrad, 1e-2, 1},
};

int backend_model_checks(Engine *cpu, Engine *cuda, Engine *cuda_graph) {
    int failures = 0;
    Vec a = {0}, b = {0};
    for (size_t i = 0; i < sizeof MODEL_CHECKS / sizeof MODEL_CHECKS[0]; i++) {
        a.n = b.n = 0;
        engine_set_num_threads(1);
        MODEL_CHECKS[i].run(cpu, &a);
        engine_set_num_threads(2);
        MODEL_CHECKS[i].run(cpu, &b);
        /* bit for bit: any difference at all fails */
        size_t ndiff = a.n == b.n ? 0 : 1;
        for (size_t k = 0; k < a.n && k < b.n; k++) ndiff += memcmp(&a.v[k], &b.v[k], sizeof(double)) != 0 || !isfinite(a.v[k]);
        failures += report(cpu->name, "1 thr", MODEL_CHECKS[i].label, ndiff ? fmax(nerr(&b, &a), 1e-300) : 0.0, 0);
        /* the backward's one-clear gradient arena (the GPU's default) against the CPU's
         * per-buffer clears: the same sums into zeroed memory, so bit for bit */
        a.n = 0;
        g_one_clear = 1;
        MODEL_CHECKS[i].run(cpu, &a);
        g_one_clear = -1;
        ndiff = a.n == b.n ? 0 : 1;
        for (size_t k = 0; k < a.n && k < b.n; k++) ndiff += memcmp(&a.v[k], &b.v[k], sizeof(double)) != 0 || !isfinite(a.v[k]);
        failures += report(cpu->name, "cpu", "  the same, one clear per backward", ndiff ? fmax(nerr(&a, &b), 1e-300) : 0.0, 0);
        if (!cuda) continue;
        a.n = 0;
        MODEL_CHECKS[i].run(cuda, &a);
        failures += report(cuda->name, "cpu", MODEL_CHECKS[i].label, nerr(&a, &b), MODEL_CHECKS[i].tol_cuda);
        /* and on CUDA the per-buffer clears against its default (expected: 0) */
        Vec c = {0};
        g_one_clear = 0;
        MODEL_CHECKS[i].run(cuda, &c);
        g_one_clear = -1;
        failures += report(cuda->name, "cuda", "  the same, a clear per buffer", nerr(&c, &a), 1e-6);
        /* with CUDA graphs (4 DDIM steps, 5 train steps or 5 matching calls: warm-up,
         * recording, capture, one or two replays), against the eager CUDA run (expected: 0) */
        if (MODEL_CHECKS[i].graphs && cuda_graph) {
            c.n = 0;
            MODEL_CHECKS[i].run(cuda_graph, &c);
            failures += report(cuda_graph->name, "cuda", "  the same, CUDA graphs", nerr(&c, &a), 1e-6);
        }
        free(c.v);
    }
    free(a.v);
    free(b.v);
    return failures;
}

/* `d2c bench`: times d2c's work at the shapes of reference/bench_torch.py and prints one
 * line per workload in the same form, plus the machine's OpenBLAS sgemm rate measured in
 * the same run (the ceiling the convolutions, which are GEMMs, can reach). */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "condense/matching.h"
#include "core/rng.h"
#include "core/util.h"
#include "diffusion/ddpm.h"
#include "model/adam.h"
#include "model/unet.h"

static const char *USAGE =
    "usage: d2c bench [--threads T] [--batch B] [--hw N] [--channels C] [--in-channels 1|3] [--iters N]\n"
    "                 [--what all|train|hypergrad|sample|sgemm|condense]\n"
    "Times the train step, the matching hypergradient and a sampling step at the shapes of\n"
    "bench_torch.py; bench/run.sh runs both programs and prints the ratios.";

static double sgemm_gflops(int n, int reps) {
    float *a = xmalloc_floats((size_t)n * n), *b = xmalloc_floats((size_t)n * n), *c = xmalloc_floats((size_t)n * n);
    Rng r = rng_stream(1, RNG_EVAL, 0);
    rng_fill_normal(&r, a, (size_t)n * n);
    rng_fill_normal(&r, b, (size_t)n * n);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
    double t0 = now_seconds();
    for (int i = 0; i < reps; i++) cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
    double dt = (now_seconds() - t0) / reps;
    free(a);
    free(b);
    free(c);
    return 2.0 * n * n * n / dt * 1e-9;
}

typedef struct {
    int threads, batch, hw, channels, in_ch, iters;
} BenchShape;

static void bench_train(const BenchShape *s, double sgemm) {
    UNetConfig cfg = unet_default_config();
    cfg.base_channels = s->channels;
    cfg.in_channels = s->in_ch;
    const int B = s->batch;
    const size_t D = (size_t)s->in_ch * s->hw * s->hw;
    UNet net;
    unet_create(&net, &cfg, s->hw, s->hw, B);
    unet_init_params(&net.lay, net.params, 0);
    Adam adam;
    adam_create(&adam, net.lay.n_params, 2e-4f);
    Schedule sched;
    schedule_init(&sched, SCHEDULE_LINEAR);
    DdpmScratch w;
    ddpm_scratch_create(&w, B, D);
    float *x0 = xmalloc_floats((size_t)B * D), *noise = xmalloc_floats((size_t)B * D);
    int64_t *t = xcalloc((size_t)B, sizeof *t), *y = xcalloc((size_t)B, sizeof *y);
    Rng r = rng_stream(0, RNG_EVAL, 1);
    rng_fill_normal(&r, x0, (size_t)B * D);
    for (int b = 0; b < B; b++) y[b] = rng_below(&r, 10);
    double dt = 0;
    for (int it = 0; it < s->iters + 3; it++) {
        if (it == 3) dt = now_seconds();
        for (int b = 0; b < B; b++) t[b] = rng_below(&r, 1000);
        rng_fill_normal(&r, noise, (size_t)B * D);
        memset(net.grads, 0, net.lay.n_params * sizeof(float));
        ddpm_loss(&net, &sched, &w, x0, t, y, NULL, noise, B, 1, 1.0f, NULL, NULL);
        adam_step(&adam, net.params, net.grads);
    }
    dt = (now_seconds() - dt) / s->iters;
    double gflops = 3.0 * unet_forward_flops(&net) * B / dt * 1e-9;
    printf("train_step  d2c cpu threads=%d C=%d hw=%d in=%d B=%d: %.1f ms, %.1f img/s, %.1f GFLOP/s (%.0f%% of sgemm)\n",
           s->threads, s->channels, s->hw, s->in_ch, B, dt * 1e3, B / dt, gflops, 100 * gflops / sgemm);
    free(x0);
    free(noise);
    free(t);
    free(y);
    ddpm_scratch_free(&w);
    adam_destroy(&adam);
    unet_destroy(&net);
}

static void bench_hypergrad(const BenchShape *s) {
    UNetConfig cfg = unet_default_config();
    cfg.base_channels = s->channels;
    cfg.in_channels = s->in_ch;
    const int Br = 64, Bs = 10, K = 2;
    const size_t D = (size_t)s->in_ch * s->hw * s->hw;
    UNet net;
    unet_create(&net, &cfg, s->hw, s->hw, Br);
    unet_init_params(&net.lay, net.params, 0);
    Schedule sched;
    schedule_init(&sched, SCHEDULE_LINEAR);
    MatchWork w;
    match_work_create(&w, &net, Br, Bs);
    float *xr = xmalloc_floats((size_t)Br * D), *xs = xmalloc_floats((size_t)Bs * D), *g = xmalloc_floats((size_t)Bs * D);
    float *nr = xmalloc_floats((size_t)K * Br * D), *ns = xmalloc_floats((size_t)K * Bs * D);
    int64_t yr[64], ys[10], ts[2] = {100, 600};
    for (int b = 0; b < Br; b++) yr[b] = 3;
    for (int b = 0; b < Bs; b++) ys[b] = 3;
    Rng r = rng_stream(0, RNG_EVAL, 2);
    rng_fill_normal(&r, xr, (size_t)Br * D);
    rng_fill_normal(&r, xs, (size_t)Bs * D);
    rng_fill_normal(&r, nr, (size_t)K * Br * D);
    rng_fill_normal(&r, ns, (size_t)K * Bs * D);
    const int iters = s->iters / 2 > 2 ? s->iters / 2 : 2;
    double dt = 0;
    for (int it = 0; it < iters + 3; it++) {
        if (it == 3) dt = now_seconds();
        vec_zero(g, (size_t)Bs * D);
        matching_loss_grad(&net, &sched, &w, xr, yr, Br, xs, ys, NULL, Bs, ts, K, nr, ns, 0.0f, g, NULL);
    }
    dt = (now_seconds() - dt) / iters;
    printf("hypergrad   d2c cpu threads=%d C=%d hw=%d in=%d real=64 syn=10 K=2: %.1f ms, %.2f calls/s\n", s->threads,
           s->channels, s->hw, s->in_ch, dt * 1e3, 1 / dt);
    free(xr); free(xs); free(g); free(nr); free(ns);
    match_work_free(&w);
    unet_destroy(&net);
}

static void bench_sample(const BenchShape *s) {
    UNetConfig cfg = unet_default_config();
    cfg.base_channels = s->channels;
    cfg.in_channels = s->in_ch;
    const int B = s->batch;
    const size_t D = (size_t)s->in_ch * s->hw * s->hw;
    UNet net;
    unet_create(&net, &cfg, s->hw, s->hw, B);
    unet_init_params(&net.lay, net.params, 0);
    float *x = xmalloc_floats((size_t)B * D), *eps = xmalloc_floats((size_t)B * D);
    int64_t *t = xcalloc((size_t)B, sizeof *t), *y = xcalloc((size_t)B, sizeof *y);
    Rng r = rng_stream(0, RNG_EVAL, 3);
    rng_fill_normal(&r, x, (size_t)B * D);
    for (int b = 0; b < B; b++) t[b] = 500, y[b] = rng_below(&r, 10);
    double dt = 0;
    for (int it = 0; it < s->iters + 3; it++) {
        if (it == 3) dt = now_seconds();
        unet_forward(&net, x, t, y, NULL, B, eps);
    }
    dt = (now_seconds() - dt) / s->iters;
    printf("sample_step d2c cpu threads=%d C=%d hw=%d in=%d B=%d: %.1f ms, %.1f img/s\n", s->threads, s->channels, s->hw,
           s->in_ch, B, dt * 1e3, B / dt);
    free(x); free(eps); free(t); free(y);
    unet_destroy(&net);
}

int cmd_bench(int argc, char **argv) {
    BenchShape s = {2, 64, 28, 32, 1, 10};
    const char *what = "all";
    Option opts[] = {
        {"threads", OPT_INT, &s.threads, 1, 256, "CPU threads (default 2)", 0},
        {"batch", OPT_INT, &s.batch, 1, 4096, "images per step (default 64)", 0},
        {"hw", OPT_INT, &s.hw, 4, 512, "image size (default 28)", 0},
        {"channels", OPT_INT, &s.channels, 2, 512, "base channels (default 32)", 0},
        {"in-channels", OPT_INT, &s.in_ch, 1, 4, "image channels (default 1)", 0},
        {"iters", OPT_INT, &s.iters, 1, 100000, "timed iterations (default 10)", 0},
        {"what", OPT_STRING, &what, 1, 0, "all|train|hypergrad|sample|sgemm (default all)", 0},
        {NULL, 0, NULL, 0, 0, NULL, 0},
    };
    parse_options("bench", USAGE, opts, argc, argv, 2);
    apply_threads(s.threads);
    int all = strcmp(what, "all") == 0;
    if (!all && strcmp(what, "train") && strcmp(what, "hypergrad") && strcmp(what, "sample") && strcmp(what, "sgemm"))
        die_input("bench: --what must be all, train, hypergrad, sample or sgemm; got '%s'", what);
    double sg = sgemm_gflops(1024, 10);
    printf("sgemm       openblas threads=%d n=1024: %.1f GFLOP/s\n", s.threads, sg);
    if (all || !strcmp(what, "train")) bench_train(&s, sg);
    if (all || !strcmp(what, "hypergrad")) bench_hypergrad(&s);
    if (all || !strcmp(what, "sample")) bench_sample(&s);
    printf("peak_rss    d2c: %.1f MiB\n", peak_rss_mib());
    return 0;
}

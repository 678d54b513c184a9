/* `d2c bench`: times d2c's work at the shapes of reference/bench_torch.py and prints one
 * line per workload in the same form, plus the machine's OpenBLAS sgemm rate measured in
 * the same run (the ceiling the convolutions, which are GEMMs, can reach). */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "condense/condense.h"
#include "condense/matching.h"
#include "core/rng.h"
#include "core/util.h"
#include "diffusion/ddpm.h"
#include "diffusion/train_step.h"
#include "model/adam.h"
#include "model/unet.h"

static const char *USAGE =
    "usage: d2c bench [--threads T] [--batch B] [--hw N] [--channels C] [--in-channels 1|3] [--iters N]\n"
    "                 [--what all|train|hypergrad|sample|sgemm|condense] [--device cpu|cuda]\n"
    "Times the train step, the matching hypergradient and a sampling step at the shapes of\n"
    "bench_torch.py; bench/run.sh runs both programs and prints the ratios.\n"
    "--what condense (not part of all) times one class's matching of one outer iteration\n"
    "(real batch 64, syn batch 10) at K = 1, 4, 16 and all 50 candidate timesteps, on d2c\n"
    "condense's network (16 base channels unless --channels is given), and fits t(K) = a + b K;\n"
    "--iters sets its length: max(1, iters / 5) rounds of about 50 timesteps per K.";

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
    Engine *eng; /* --device */
} BenchShape;

/* A device buffer of n floats, or NULL on an engine of host memory (engine_view then
 * passes the host buffer itself). */
static float *mirror(Engine *e, size_t n) { return e->host_memory ? NULL : engine_xalloc_floats(e, n); }

/* "(P% of sgemm)" on the CPU (the machine's measured OpenBLAS rate), "(P% of FP32 peak
 * T TFLOP/s)" on a device that knows its peak (Engine.peak_gflops). */
static const char *rate_note(char *buf, size_t cap, const Engine *e, double gflops, double sgemm) {
    if (e->peak_gflops > 0)
        snprintf(buf, cap, "%.1f%% of FP32 peak %.1f TFLOP/s", 100 * gflops / e->peak_gflops, e->peak_gflops * 1e-3);
    else
        snprintf(buf, cap, "%.0f%% of sgemm", 100 * gflops / sgemm);
    return buf;
}

static int bench_train(const BenchShape *s, double sgemm) {
    UNetConfig cfg = unet_default_config();
    cfg.base_channels = s->channels;
    cfg.in_channels = s->in_ch;
    const int B = s->batch;
    const size_t D = (size_t)s->in_ch * s->hw * s->hw;
    Engine *e = s->eng;
    UNet net;
    D2C_TRY(unet_create(&net, e, &cfg, s->hw, s->hw, B));
    unet_init_weights(&net, 0);
    Adam adam;
    adam_create(&adam, e, net.lay.n_params, 2e-4f);
    Schedule sched;
    schedule_init(&sched, SCHEDULE_LINEAR);
    DdpmScratch w;
    ddpm_scratch_create(&w, e, B, D);
    TrainStep ts;
    train_step_create(&ts, &net, &adam, NULL, &sched, &w, 0.0, 0);
    float *x0 = xmalloc_floats((size_t)B * D), *noise = xmalloc_floats((size_t)B * D);
    float *dx0 = mirror(e, (size_t)B * D), *dnoise = mirror(e, (size_t)B * D);
    int64_t *t = xcalloc((size_t)B, sizeof *t), *y = xcalloc((size_t)B, sizeof *y);
    Rng r = rng_stream(0, RNG_EVAL, 1);
    rng_fill_normal(&r, x0, (size_t)B * D);
    const float *ex0 = engine_view(e, dx0, x0, (size_t)B * D);
    for (int b = 0; b < B; b++) y[b] = rng_below(&r, 10);
    double dt = 0;
    for (int it = 0; it < s->iters + 3; it++) {
        if (it == 3) {
            e->ops->sync(e);
            dt = now_seconds();
        }
        for (int b = 0; b < B; b++) t[b] = rng_below(&r, 1000);
        /* the noise as d2c train draws it: a fresh stream per step, on the engine */
        float *en = e->host_memory ? noise : dnoise;
        const Rng rn = rng_stream(0, RNG_NOISE, (uint64_t)it);
        e->ops->fill_normal(e, en, (size_t)B * D, &rn);
        /* bench_torch.py's step: zero_grad, the loss's backward, Adam (no clipping, no EMA) */
        train_step_run(&ts, ex0, en, t, y, B, 2e-4f, 0.0f, NULL);
    }
    D2C_TRY(e->ops->sync(e));
    dt = (now_seconds() - dt) / s->iters;
    double gflops = 3.0 * unet_forward_flops(&net) * B / dt * 1e-9;
    char note[96];
    printf("train_step  d2c %s threads=%d C=%d hw=%d in=%d B=%d: %.1f ms, %.1f img/s, %.1f GFLOP/s (%s)\n", e->name,
           s->threads, s->channels, s->hw, s->in_ch, B, dt * 1e3, B / dt, gflops,
           rate_note(note, sizeof note, e, gflops, sgemm));
    free(x0);
    free(noise);
    engine_free(e, dx0);
    engine_free(e, dnoise);
    free(t);
    free(y);
    train_step_destroy(&ts);
    ddpm_scratch_free(&w);
    adam_destroy(&adam);
    unet_destroy(&net);
    return D2C_OK;
}

/* The matching workload both hypergrad and condense time: a UNet of the given config, a
 * real batch of 64 and a synthetic batch of 10 images of one class, and their buffers. */
typedef struct {
    UNet net;
    Schedule sched;
    MatchWork w;
    size_t D;
    float *xr, *xs;        /* host (64, D), (10, D) */
    float *dxr, *dxs;      /* their engine copies (NULL on host memory) */
    float *g;              /* (10, D) engine memory */
    int64_t yr[64], ys[10];
} MatchBench;

enum { MB_REAL = 64, MB_SYN = 10 };

static int match_bench_create(MatchBench *m, UNetConfig cfg, const BenchShape *s) {
    cfg.base_channels = s->channels;
    cfg.in_channels = s->in_ch;
    m->D = (size_t)s->in_ch * s->hw * s->hw;
    D2C_TRY(unet_create(&m->net, s->eng, &cfg, s->hw, s->hw, MB_REAL));
    unet_init_weights(&m->net, 0);
    schedule_init(&m->sched, SCHEDULE_LINEAR);
    match_work_create(&m->w, &m->net, MB_REAL, MB_SYN);
    m->xr = xmalloc_floats((size_t)MB_REAL * m->D);
    m->xs = xmalloc_floats((size_t)MB_SYN * m->D);
    m->dxr = mirror(s->eng, (size_t)MB_REAL * m->D);
    m->dxs = mirror(s->eng, (size_t)MB_SYN * m->D);
    m->g = engine_xalloc_floats(s->eng, (size_t)MB_SYN * m->D);
    for (int b = 0; b < MB_REAL; b++) m->yr[b] = 3;
    for (int b = 0; b < MB_SYN; b++) m->ys[b] = 3;
    return D2C_OK;
}

static void match_bench_free(MatchBench *m) {
    Engine *e = m->net.eng;
    free(m->xr);
    free(m->xs);
    engine_free(e, m->dxr);
    engine_free(e, m->dxs);
    engine_free(e, m->g);
    match_work_free(&m->w);
    unet_destroy(&m->net);
}

static int bench_hypergrad(const BenchShape *s, double sgemm) {
    MatchBench m;
    D2C_TRY(match_bench_create(&m, unet_default_config(), s));
    const int Br = MB_REAL, Bs = MB_SYN, K = 2;
    const size_t D = m.D;
    Engine *e = s->eng;
    float *nr = xmalloc_floats((size_t)K * Br * D), *ns = xmalloc_floats((size_t)K * Bs * D);
    float *dnr = mirror(e, (size_t)K * Br * D), *dns = mirror(e, (size_t)K * Bs * D);
    int64_t ts[2] = {100, 600};
    Rng r = rng_stream(0, RNG_EVAL, 2);
    rng_fill_normal(&r, m.xr, (size_t)Br * D);
    rng_fill_normal(&r, m.xs, (size_t)Bs * D);
    rng_fill_normal(&r, nr, (size_t)K * Br * D);
    rng_fill_normal(&r, ns, (size_t)K * Bs * D);
    const float *exr = engine_view(e, m.dxr, m.xr, (size_t)Br * D), *exs = engine_view(e, m.dxs, m.xs, (size_t)Bs * D);
    const float *enr = engine_view(e, dnr, nr, (size_t)K * Br * D), *ens = engine_view(e, dns, ns, (size_t)K * Bs * D);
    const int iters = s->iters / 2 > 2 ? s->iters / 2 : 2;
    double dt = 0;
    for (int it = 0; it < iters + 3; it++) {
        if (it == 3) {
            e->ops->sync(e);
            dt = now_seconds();
        }
        engine_zero_floats(e, m.g, (size_t)Bs * D);
        matching_loss_grad(&m.net, &m.sched, &m.w, exr, m.yr, Br, exs, m.ys, NULL, Bs, ts, K, enr, ens, 0.0f, m.g, NULL);
    }
    D2C_TRY(e->ops->sync(e));
    dt = (now_seconds() - dt) / iters;
    /* per timestep: a real and a synthetic pass with weight gradients (3 forwards' work each)
     * and two synthetic input-gradient passes (2 forwards' work each) */
    const double gflops = K * (3.0 * Br + 3.0 * Bs + 4.0 * Bs) * unet_forward_flops(&m.net) / dt * 1e-9;
    char note[96];
    printf("hypergrad   d2c %s threads=%d C=%d hw=%d in=%d real=64 syn=10 K=2: %.1f ms, %.2f calls/s, %.1f GFLOP/s (%s)\n",
           e->name, s->threads, s->channels, s->hw, s->in_ch, dt * 1e3, 1 / dt, gflops,
           rate_note(note, sizeof note, e, gflops, sgemm));
    free(nr);
    free(ns);
    engine_free(e, dnr);
    engine_free(e, dns);
    match_bench_free(&m);
    return D2C_OK;
}

static int bench_sample(const BenchShape *s, double sgemm) {
    UNetConfig cfg = unet_default_config();
    cfg.base_channels = s->channels;
    cfg.in_channels = s->in_ch;
    const int B = s->batch;
    const size_t D = (size_t)s->in_ch * s->hw * s->hw;
    Engine *e = s->eng;
    UNet net;
    D2C_TRY(unet_create(&net, e, &cfg, s->hw, s->hw, B));
    unet_init_weights(&net, 0);
    float *xh = xmalloc_floats((size_t)B * D);
    float *x = engine_xalloc_floats(e, (size_t)B * D), *eps = engine_xalloc_floats(e, (size_t)B * D);
    int64_t *t = xcalloc((size_t)B, sizeof *t), *y = xcalloc((size_t)B, sizeof *y);
    Rng r = rng_stream(0, RNG_EVAL, 3);
    rng_fill_normal(&r, xh, (size_t)B * D);
    engine_upload_floats(e, x, xh, (size_t)B * D);
    for (int b = 0; b < B; b++) t[b] = 500, y[b] = rng_below(&r, 10);
    double dt = 0;
    for (int it = 0; it < s->iters + 3; it++) {
        if (it == 3) {
            e->ops->sync(e);
            dt = now_seconds();
        }
        unet_forward_infer(&net, x, t, y, NULL, B, eps);
    }
    D2C_TRY(e->ops->sync(e));
    dt = (now_seconds() - dt) / s->iters;
    const double gflops = unet_forward_flops(&net) * B / dt * 1e-9;
    char note[96];
    printf("sample_step d2c %s threads=%d C=%d hw=%d in=%d B=%d: %.1f ms, %.1f img/s, %.1f GFLOP/s (%s)\n", e->name,
           s->threads, s->channels, s->hw, s->in_ch, B, dt * 1e3, B / dt, gflops,
           rate_note(note, sizeof note, e, gflops, sgemm));
    free(xh); free(t); free(y);
    engine_free(e, x);
    engine_free(e, eps);
    unet_destroy(&net);
    return D2C_OK;
}


static double cpu_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* One call of the condensation benchmark: the noises of K timesteps (fresh buffers, so the
 * peak RSS reflects this K alone) and matching_loss_grad with the hypergradient. Adds the
 * wall-clock and process CPU seconds of the draw and the matching to wall[0], cpu[0]. */
static void condense_call(UNet *net, const Schedule *sched, MatchWork *w, const float *xr, const int64_t *yr, int Br,
                          const float *xs, const int64_t *ys, int Bs, size_t D, const int64_t *ts, int K, float *g,
                          uint64_t stream, double *wall, double *cpu) {
    Engine *e = net->eng;
    float *nr = xmalloc_floats((size_t)K * Br * D), *ns = xmalloc_floats((size_t)K * Bs * D);
    float *dnr = mirror(e, (size_t)K * Br * D), *dns = mirror(e, (size_t)K * Bs * D);
    const double t0 = now_seconds(), c0 = cpu_seconds();
    Rng rn = rng_stream(0, RNG_NOISE, stream);
    rng_fill_normal(&rn, nr, (size_t)K * Br * D);
    rng_fill_normal(&rn, ns, (size_t)K * Bs * D);
    engine_zero_floats(e, g, (size_t)Bs * D);
    matching_loss_grad(net, sched, w, xr, yr, Br, xs, ys, NULL, Bs, ts, K, engine_view(e, dnr, nr, (size_t)K * Br * D),
                       engine_view(e, dns, ns, (size_t)K * Bs * D), 0.0f, g, NULL);
    e->ops->sync(e);
    *wall += now_seconds() - t0;
    *cpu += cpu_seconds() - c0;
    free(nr);
    free(ns);
    engine_free(e, dnr);
    engine_free(e, dns);
}

/* Least squares y = a + b x over n points; returns R^2. */
static double fit_line(const int *x, const double *y, int n, double *a, double *b) {
    double mx = 0, my = 0, sxx = 0, sxy = 0, syy = 0, sse = 0;
    for (int i = 0; i < n; i++) mx += x[i] / (double)n, my += y[i] / n;
    for (int i = 0; i < n; i++) {
        sxx += (x[i] - mx) * (x[i] - mx);
        sxy += (x[i] - mx) * (y[i] - my);
        syy += (y[i] - my) * (y[i] - my);
    }
    *b = sxy / sxx;
    *a = my - *b * mx;
    for (int i = 0; i < n; i++) sse += (y[i] - *a - *b * x[i]) * (y[i] - *a - *b * x[i]);
    return syy > 0 ? 1 - sse / syy : 1.0;
}

/* Cost of condensation in K: one class's matching of one outer iteration, as match_class
 * in condense.c does it (draw the noises of the K timesteps, then matching_loss_grad with
 * the hypergradient; no DSA, no DM), for real batch 64 and synthetic batch 10 at K = 1,
 * 4, 16 and K = all 50 candidate timesteps of d2c condense's grid. Every K does about the
 * same work per round (round(50 / K) calls, ~50 timesteps) and the rounds interleave the
 * K, so on a shared machine a change of load spreads over all K instead of landing on
 * one; the mean seconds per call are fitted (a fastest-call fit would favour the many
 * short calls of small K). Prints per K the mean and fastest call, wall and process-CPU
 * seconds per timestep and the growth of the peak RSS (from the first round, taken in
 * ascending K after a warm-up call); then the least-squares lines t(K) = a + b K of wall
 * and CPU time with R^2, and what the wall line gives for K = 2 and all T = 1000. */
static int bench_condense(const BenchShape *s) {
    const CondenseOptions defaults = condense_default_options();
    MatchBench m;
    D2C_TRY(match_bench_create(&m, defaults.cfg, s));
    const int Br = MB_REAL, Bs = MB_SYN, NC = defaults.t_candidates, T = 1000;
    const size_t D = m.D;
    float *g = m.g;
    int64_t *yr = m.yr, *ys = m.ys, cand[64];
    for (int j = 0; j < NC; j++) cand[j] = ((long)j * T + T / 2) / NC; /* score_timesteps' grid */
    Rng r = rng_stream(0, RNG_EVAL, 4);
    for (size_t i = 0; i < (size_t)Br * D; i++) m.xr[i] = 2 * rng_uniform(&r) - 1;
    for (size_t i = 0; i < (size_t)Bs * D; i++) m.xs[i] = 2 * rng_uniform(&r) - 1;
    const float *xr = engine_view(s->eng, m.dxr, m.xr, (size_t)Br * D), *xs = engine_view(s->eng, m.dxs, m.xs, (size_t)Bs * D);

    enum { NK = 4 };
    const int Ks[NK] = {1, 4, 16, NC};
    int64_t ts[NK][64];
    int per_round[NK], n_calls[NK] = {0};
    double wall[NK] = {0}, cpu[NK] = {0}, fastest[NK], rss[NK];
    for (int q = 0; q < NK; q++) {
        for (int i = 0; i < Ks[q]; i++) ts[q][i] = cand[((long)i * NC + NC / 2) / Ks[q]]; /* K spread over the grid */
        per_round[q] = (NC + Ks[q] / 2) / Ks[q];
        if (per_round[q] < 1) per_round[q] = 1;
        fastest[q] = 1e300;
    }
    const int rounds = s->iters / 5 > 1 ? s->iters / 5 : 1;
    printf("condense    d2c %s threads=%d C=%d hw=%d in=%d real=%d syn=%d P=%zu: one class's matching of one outer\n"
           "            iteration (noise draw + matching loss + hypergradient) at K of the %d candidate timesteps;\n"
           "            %d interleaved round%s of about %d timesteps per K\n",
           s->eng->name, s->threads, s->channels, s->hw, s->in_ch, Br, Bs, m.net.lay.n_params, NC, rounds,
           rounds > 1 ? "s" : "", NC);
    fflush(stdout);
    double dw = 0, dc = 0;
    condense_call(&m.net, &m.sched, &m.w, xr, yr, Br, xs, ys, Bs, D, ts[0], 1, g, 0, &dw, &dc); /* warm-up: workspaces */
    const double rss0 = peak_rss_mib();
    for (int round = 0; round < rounds; round++)
        for (int q = 0; q < NK; q++) {
            for (int c = 0; c < per_round[q]; c++) {
                double one = 0;
                condense_call(&m.net, &m.sched, &m.w, xr, yr, Br, xs, ys, Bs, D, ts[q], Ks[q], g,
                              (uint64_t)q * 100000 + (uint64_t)n_calls[q] + 1, &one, &cpu[q]);
                wall[q] += one;
                if (one < fastest[q]) fastest[q] = one;
                n_calls[q]++;
            }
            if (round == 0) rss[q] = peak_rss_mib() - rss0;
        }
    double mean[NK], mean_cpu[NK];
    for (int q = 0; q < NK; q++) {
        mean[q] = wall[q] / n_calls[q];
        mean_cpu[q] = cpu[q] / n_calls[q];
        printf("condense    K=%-3d %8.3f s/call mean of %2d (fastest %.3f); per timestep %.3f s wall, %.3f s CPU; "
               "peak RSS +%.1f MiB (noise buffers %.1f MiB)\n",
               Ks[q], mean[q], n_calls[q], fastest[q], mean[q] / Ks[q], mean_cpu[q] / Ks[q], rss[q],
               (double)Ks[q] * (Br + Bs) * D * 4.0 / (1 << 20));
    }
    double a, b, ac, bc;
    const double r2 = fit_line(Ks, mean, NK, &a, &b), r2c = fit_line(Ks, mean_cpu, NK, &ac, &bc);
    printf("condense    fit t(K) = a + b K, wall: a = %.4f s, b = %.4f s per timestep, R^2 = %.5f\n", a, b, r2);
    printf("condense    fit t(K) = a + b K, CPU:  a = %.4f s, b = %.4f s per timestep, R^2 = %.5f\n", ac, bc, r2c);
    printf("condense    by the wall fit: K=%d (d2c condense's default top-k) %.2f s; all T=%d timesteps %.0f s (%.1f min)"
           " per class per outer iteration, noise buffers %.0f MiB\n",
           defaults.topk, a + b * defaults.topk, T, a + b * T, (a + b * T) / 60,
           (double)T * (Br + Bs) * D * 4.0 / (1 << 20));
    match_bench_free(&m);
    return D2C_OK;
}

int cmd_bench(int argc, char **argv) {
    BenchShape s = {2, 64, 28, 0, 1, 10, NULL}; /* channels 0: not given */
    const char *what = "all", *device = "cpu";
    Option opts[] = {
        {"threads", OPT_INT, &s.threads, 1, 256, "CPU threads (default 2)", 0},
        {"batch", OPT_INT, &s.batch, 1, 4096, "images per step (default 64)", 0},
        {"hw", OPT_INT, &s.hw, 4, 512, "image size (default 28)", 0},
        {"channels", OPT_INT, &s.channels, 2, 512, "base channels (default 32; condense: 16, as d2c condense)", 0},
        {"in-channels", OPT_INT, &s.in_ch, 1, 4, "image channels (default 1)", 0},
        {"iters", OPT_INT, &s.iters, 1, 100000, "timed iterations (default 10)", 0},
        {"device", OPT_STRING, &device, 1, 0, "cpu or cuda (default cpu)", 0},
        {"what", OPT_STRING, &what, 1, 0, "all|train|hypergrad|sample|sgemm|condense (default all; all leaves condense out)", 0},
        {NULL, 0, NULL, 0, 0, NULL, 0},
    };
    D2C_TRY(parse_options("bench", USAGE, opts, argc, argv, 2));
    D2C_TRY(open_device("bench", device, &s.eng));
    apply_threads(s.threads);
    int all = strcmp(what, "all") == 0;
    if (!all && strcmp(what, "train") && strcmp(what, "hypergrad") && strcmp(what, "sample") && strcmp(what, "sgemm") &&
        strcmp(what, "condense"))
        return d2c_error(D2C_ERR_INPUT, "bench: --what must be all, train, hypergrad, sample, sgemm or condense; got '%.64s'",
                         what);
    BenchShape sc = s; /* condense: d2c condense's network unless --channels is given */
    if (!sc.channels) sc.channels = condense_default_options().cfg.base_channels;
    if (!s.channels) s.channels = 32;
    double sg = sgemm_gflops(1024, 10);
    printf("sgemm       openblas threads=%d n=1024: %.1f GFLOP/s\n", s.threads, sg);
    if (all || !strcmp(what, "train")) D2C_TRY(bench_train(&s, sg));
    if (all || !strcmp(what, "hypergrad")) D2C_TRY(bench_hypergrad(&s, sg));
    if (all || !strcmp(what, "sample")) D2C_TRY(bench_sample(&s, sg));
    if (!strcmp(what, "condense")) D2C_TRY(bench_condense(&sc));
    printf("peak_rss    d2c: %.1f MiB\n", peak_rss_mib());
    return D2C_OK;
}

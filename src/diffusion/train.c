/* The training loop behind `d2c train`. Every random draw of step s comes from a stream
 * keyed by (seed, purpose, s), so a resumed run repeats the uninterrupted one exactly.
 * The network, Adam's moments, the EMA and the DDPM scratch live on the options' engine;
 * the data set stays on the host and each step's batch is uploaded; the noise is drawn on
 * the engine (fill_normal: the host generator's numbers); the step itself is
 * train_step_run (diffusion/train_step.h). The loss and gradient norm stay on
 * the engine and are read back a window of steps at a time (stats_flush), so the host does
 * not wait for an asynchronous engine at every step. */
#include "diffusion/train.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/progress.h"
#include "core/rng.h"
#include "core/util.h"
#include "diffusion/checkpoint.h"
#include "diffusion/ddpm.h"
#include "diffusion/train_step.h"
#include "io/dataset.h"
#include "model/adam.h"

TrainOptions train_default_options(void) {
    TrainOptions o = {0};
    o.data = "fashion-mnist";
    o.steps = 2000;
    o.batch = 64;
    o.lr = 1e-3;
    o.warmup = 100;
    o.grad_clip = 1.0;
    o.cond_drop = 0.1;
    o.ema_decay = 0.999;
    o.ckpt_every = 500;
    o.cfg = unet_default_config();
    o.schedule = SCHEDULE_LINEAR;
    o.seed = 0;
    return o;
}

/* The examples of step `step`: position step*B + i of an endless sequence of epochs,
 * each a permutation of the data keyed by (seed, epoch). */
typedef struct {
    int n;
    int *perm;
    long epoch;
    uint64_t seed;
} EpochSampler;

static void sampler_pick(EpochSampler *s, long step, int B, int *out) {
    for (int i = 0; i < B; i++) {
        long pos = step * (long)B + i;
        long epoch = pos / s->n;
        if (epoch != s->epoch) {
            for (int j = 0; j < s->n; j++) s->perm[j] = j;
            Rng r = rng_stream(s->seed, RNG_BATCH, (uint64_t)epoch);
            rng_shuffle(&r, s->perm, s->n);
            s->epoch = epoch;
        }
        out[i] = s->perm[pos % s->n];
    }
}

static char *options_json(const TrainOptions *o) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "data", o->data);
    cJSON_AddNumberToObject(j, "steps", (double)o->steps);
    cJSON_AddNumberToObject(j, "batch", o->batch);
    cJSON_AddNumberToObject(j, "lr", o->lr);
    cJSON_AddNumberToObject(j, "warmup", (double)o->warmup);
    cJSON_AddNumberToObject(j, "grad_clip", o->grad_clip);
    cJSON_AddNumberToObject(j, "cond_drop", o->cond_drop);
    cJSON_AddNumberToObject(j, "ema_decay", o->ema_decay);
    cJSON_AddNumberToObject(j, "seed", (double)o->seed);
    char *s = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    return s;
}

static int file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

static int same_config(const UNetConfig *a, const UNetConfig *b) {
    if (a->in_channels != b->in_channels || a->base_channels != b->base_channels ||
        a->num_levels != b->num_levels || a->num_classes != b->num_classes || a->groups != b->groups)
        return 0;
    for (int l = 0; l < a->num_levels; l++)
        if (a->channel_mult[l] != b->channel_mult[l] || a->attn[l] != b->attn[l]) return 0;
    return 1;
}

/* The model file's path for the log ("<out>.log.jsonl" unless given). */
static char *log_path_for(const TrainOptions *opt) {
    if (opt->log_path) return xstrdup(opt->log_path);
    char *p = xmalloc(strlen(opt->out) + 16);
    sprintf(p, "%s.log.jsonl", opt->out);
    return p;
}

/* The host copies of the training state that checkpoints read and write: (4 P) floats,
 * or, on an engine of host memory, the engine's buffers themselves (no copy: download and
 * upload onto the same address do nothing). */
typedef struct {
    float *params, *m, *v, *ema;
    float *owned; /* the allocation, NULL when the engine's buffers serve */
} HostState;

static void host_state_new(HostState *h, const UNet *net, const Adam *adam, float *ema) {
    const size_t P = net->lay.n_params;
    if (net->eng->host_memory) {
        *h = (HostState){net->params, adam->m, adam->v, ema, NULL};
        return;
    }
    h->owned = h->params = xmalloc_floats(4 * P);
    h->m = h->params + P;
    h->v = h->m + P;
    h->ema = h->v + P;
}

/* The engine's state -> h (for a checkpoint). */
static void host_state_download(HostState *h, const UNet *net, const Adam *adam, const float *ema) {
    Engine *e = net->eng;
    const size_t P = net->lay.n_params;
    unet_download_params(net, h->params);
    engine_download_floats(e, h->m, adam->m, P);
    engine_download_floats(e, h->v, adam->v, P);
    engine_download_floats(e, h->ema, ema, P);
}

static int save_checkpoint(const TrainOptions *opt, HostState *h, const UNet *net, const Adam *adam, const float *ema,
                           ModelInfo *info, long step) {
    host_state_download(h, net, adam, ema);
    TrainState ts = {.step = step, .params = h->params, .adam_m = h->m, .adam_v = h->v, .ema = h->ema};
    info->step = step;
    return checkpoint_save(opt->out, &net->lay, info, h->ema, &ts);
}

/* --resume: the checkpoint at opt->out must be of this config; loads its state (through
 * the host copies h) onto the engine. */
static int resume_from(const TrainOptions *opt, const UNetConfig *cfg, int H, int W, UNet *net, Adam *adam, float *ema,
                       HostState *h, long *start) {
    if (!file_exists(opt->out))
        return d2c_error(D2C_ERR_INPUT, "--resume: no checkpoint at '%s' to resume from", opt->out);
    ModelInfo old;
    D2C_TRY(d2c_error_context(checkpoint_read_info(&old, opt->out), "--resume: "));
    int same = same_config(&old.cfg, cfg) && old.H == H && old.W == W && old.schedule == opt->schedule;
    model_info_free(&old);
    if (!same)
        return d2c_error(D2C_ERR_INPUT, "--resume: '%s' was trained with another model config, schedule or image size",
                         opt->out);
    D2C_TRY(d2c_error_context(checkpoint_load_state(opt->out, &net->lay, h->params, h->m, h->v, h->ema, start),
                              "--resume: "));
    const size_t P = net->lay.n_params;
    unet_upload_params(net, h->params);
    engine_upload_floats(net->eng, adam->m, h->m, P);
    engine_upload_floats(net->eng, adam->v, h->v, P);
    engine_upload_floats(net->eng, ema, h->ema, P);
    adam->step = *start;
    if (*start > opt->steps)
        return d2c_error(D2C_ERR_INPUT, "--resume: '%s' is at step %ld, beyond --steps %ld", opt->out, *start, opt->steps);
    return D2C_OK;
}

/* The options' ranges (those of `d2c train`'s option table), for every caller of
 * train_run: D2C_ERR_INPUT naming the option. */
static int check_options(const TrainOptions *o) {
    const int E = D2C_ERR_INPUT;
    if (!o->data || !*o->data) return d2c_error(E, "--data: no data source given");
    if (!o->out || !*o->out) return d2c_error(E, "--out: no model file given");
    if (o->steps < 1 || o->steps > 1000000000L) return d2c_error(E, "--steps must be 1..1e9, got %ld", o->steps);
    if (o->batch < 1 || o->batch > 4096) return d2c_error(E, "--batch must be 1..4096, got %d", o->batch);
    if (!(o->lr >= 1e-8 && o->lr <= 1.0)) return d2c_error(E, "--lr must be in [1e-8, 1], got %g", o->lr);
    if (o->warmup < 0 || o->warmup > 1000000000L) return d2c_error(E, "--warmup must be 0..1e9, got %ld", o->warmup);
    if (!(o->grad_clip >= 0 && o->grad_clip <= 1e9))
        return d2c_error(E, "--grad-clip must be in [0, 1e9] (0 = off), got %g", o->grad_clip);
    if (!(o->cond_drop >= 0 && o->cond_drop <= 1)) return d2c_error(E, "--cond-drop must be in [0, 1], got %g", o->cond_drop);
    if (!(o->ema_decay >= 0 && o->ema_decay <= 1)) return d2c_error(E, "--ema must be in [0, 1], got %g", o->ema_decay);
    if (o->ckpt_every < 1 || o->ckpt_every > 1000000000L)
        return d2c_error(E, "--ckpt-every must be 1..1e9, got %ld", o->ckpt_every);
    if ((int)o->schedule < 0 || o->schedule >= SCHEDULE_COUNT) return d2c_error(E, "--schedule: not a schedule");
    return D2C_OK;
}

/* ---------------------------------------------------------------- the step statistics */

/* Each step's loss and gradient norm stay on the engine (mse_forward_to,
 * clip_grad_norm_to) in a window of up to STATS_WINDOW steps, read back with one download
 * when the window is full, before a checkpoint, at the end, and at least every half
 * second; then the log lines are written and the losses checked. So within a window the
 * host never waits for an asynchronous engine (on the CPU a step at the usual sizes takes
 * longer than half a second, so the window is one step). img_per_s is the window's mean
 * rate. */
#define STATS_WINDOW 64

typedef struct {
    double *dev;     /* (2 STATS_WINDOW) engine doubles: per step the loss, the gradient norm */
    double host[2 * STATS_WINDOW];
    double lr[STATS_WINDOW];
    long first;      /* the step of the window's first slot */
    int n;           /* steps in the window */
    double t_last;   /* when the last window was read */
    char status[96]; /* the progress line's note */
} Stats;

/* Reads the window back, writes its log lines and empties it. A non-finite loss stops the
 * run with the error (a checkpoint is written only after a read, so the one at opt->out is
 * the last good one). recent / n_recent sum the losses of the last 50 steps. */
static int stats_flush(Stats *s, Engine *eng, FILE *log, const TrainOptions *opt, int B, long last_ckpt,
                       double *recent, int *n_recent) {
    if (!s->n) return D2C_OK;
    eng->ops->download(eng, s->host, s->dev, sizeof(double) * 2 * (size_t)s->n);
    D2C_TRY(eng->ops->sync(eng));
    const double now = now_seconds();
    const double ips = (double)B * s->n / (now - s->t_last > 0 ? now - s->t_last : 1e-9);
    s->t_last = now;
    for (int k = 0; k < s->n; k++) {
        const long step = s->first + k;
        const float loss = (float)s->host[2 * k];
        if (!isfinite(loss)) {
            const char *what = isnan(loss) ? "NaN" : "infinite";
            if (last_ckpt >= 0)
                return d2c_error(D2C_ERR_FAIL, "loss became %s at step %ld; stopped, the last good checkpoint is '%s' (step %ld)",
                                 what, step + 1, opt->out, last_ckpt);
            return d2c_error(D2C_ERR_FAIL, "loss became %s at step %ld; stopped before the first checkpoint, '%s' was not written",
                             what, step + 1, opt->out);
        }
        fprintf(log, "{\"step\": %ld, \"loss\": %.6f, \"lr\": %.6g, \"grad_norm\": %.5f, \"img_per_s\": %.1f}\n",
                step + 1, loss, s->lr[k], s->host[2 * k + 1], ips);
        if (step >= opt->steps - 50) {
            *recent += loss;
            (*n_recent)++;
        }
        snprintf(s->status, sizeof s->status, "loss %.4f %.0f img/s", loss, ips);
    }
    s->first += s->n;
    s->n = 0;
    return D2C_OK;
}

int train_run(const TrainOptions *opt, double *final_loss) {
    *final_loss = 0;
    D2C_TRY(check_options(opt));
    D2C_TRY(check_writable(opt->out));
    Dataset data;
    D2C_TRY(d2c_error_context(dataset_load(&data, opt->data), "--data: "));
    int st;
    UNet net = {0};
    Adam adam = {0};
    Engine *eng = opt->engine ? opt->engine : engine_cpu_default();
    float *ema = NULL, *x0 = NULL, *noise = NULL;       /* device */
    float *x0_host = NULL;                              /* staging */
    HostState hs = {0};
    int64_t *t = NULL, *y = NULL;
    int *idx = NULL;
    char *log_path = NULL;
    FILE *log = NULL;
    DdpmScratch scratch = {0};
    TrainStep tstep = {0};
    Stats stats = {0};
    EpochSampler sampler = {.n = data.n, .perm = NULL, .epoch = -1, .seed = opt->seed};
    ModelInfo info = {0};
    /* every class of the data set needs images (the label rule of io/dataset.h) */
    D2C_TRY_GOTO(st, d2c_error_context(dataset_require_all_classes(&data), "--data: "), done);

    UNetConfig cfg = opt->cfg;
    cfg.in_channels = data.c;
    cfg.num_classes = data.num_classes;
    const int B = opt->batch, H = data.h, W = data.w;
    const size_t D = (size_t)data.c * H * W;
    D2C_TRY_GOTO(st, unet_create(&net, eng, &cfg, H, W, B), done);
    const size_t P = net.lay.n_params;
    adam_create(&adam, eng, P, (float)opt->lr);
    ema = engine_xalloc_floats(eng, P);
    host_state_new(&hs, &net, &adam, ema);

    info = (ModelInfo){.cfg = cfg, .schedule = opt->schedule, .H = H, .W = W};
    info.train_json = options_json(opt);
    long start = 0;
    if (opt->resume) {
        D2C_TRY_GOTO(st, resume_from(opt, &cfg, H, W, &net, &adam, ema, &hs, &start), done);
    } else {
        unet_init_weights(&net, opt->seed);
        eng->ops->copy(eng, ema, net.params, P * sizeof(float));
    }

    log_path = log_path_for(opt);
    log = fopen(log_path, opt->resume ? "a" : "w");
    if (!log) {
        st = d2c_error(D2C_ERR_INPUT, "%s: cannot write the training log: %s", log_path, strerror(errno));
        goto done;
    }

    Schedule sched;
    schedule_init(&sched, opt->schedule);
    ddpm_scratch_create(&scratch, eng, B, D);
    train_step_create(&tstep, &net, &adam, ema, &sched, &scratch, opt->grad_clip, 1);
    x0 = engine_xalloc_floats(eng, (size_t)B * D);
    noise = engine_xalloc_floats(eng, (size_t)B * D);
    if (eng->host_memory) { /* fill the engine's buffers directly: no staging copy */
        x0_host = x0;
    } else {
        x0_host = eng->ops->host_alloc(eng, (size_t)B * D * sizeof(float));
        if (!x0_host) {
            st = d2c_error(D2C_ERR_FAIL, "out of host memory for the batch staging buffers");
            goto done;
        }
    }
    t = xcalloc((size_t)B, sizeof *t);
    y = xcalloc((size_t)B, sizeof *y);
    idx = xcalloc((size_t)B, sizeof *idx);
    sampler.perm = xcalloc((size_t)data.n, sizeof(int));

    if (!opt->quiet)
        fprintf(stderr, "train: %s, %d images %dx%dx%d, %d classes; UNet C=%d, %zu parameters; %ld steps of %d\n",
                opt->data, data.n, data.c, H, W, data.num_classes, cfg.base_channels, P, opt->steps, B);
    Progress prog;
    progress_begin(&prog, "train", start, opt->steps);
    stats.first = start;
    stats.t_last = now_seconds();
    D2C_TRY_GOTO(st, engine_alloc(eng, (void **)&stats.dev, sizeof(double) * 2 * STATS_WINDOW), done);
    double recent = 0;
    int n_recent = 0;
    long last_ckpt = opt->resume ? start : -1; /* the step of the checkpoint now at opt->out */
    st = D2C_OK;
    for (long step = start; step < opt->steps; step++) {
        sampler_pick(&sampler, step, B, idx);
        Rng rt = rng_stream(opt->seed, RNG_TIMESTEP, (uint64_t)step);
        Rng rn = rng_stream(opt->seed, RNG_NOISE, (uint64_t)step);
        Rng rd = rng_stream(opt->seed, RNG_DROPOUT, (uint64_t)step);
        for (int b = 0; b < B; b++) {
            memcpy(x0_host + (size_t)b * D, data.images + (size_t)idx[b] * D, D * sizeof(float));
            t[b] = rng_below(&rt, (uint32_t)sched.T);
            y[b] = rng_uniform(&rd) < opt->cond_drop ? cfg.num_classes : data.labels[idx[b]];
        }
        eng->ops->fill_normal(eng, noise, (size_t)B * D, &rn); /* the same numbers on every engine */
        engine_upload_floats(eng, x0, x0_host, (size_t)B * D); /* no-op when x0_host is x0 */

        const double lr = opt->lr * (opt->warmup > 0 && step < opt->warmup ? (double)(step + 1) / opt->warmup : 1.0);
        /* EMA warm-up: the decay ramps as (1 + s) / (10 + s) up to ema_decay, so a short run's
         * EMA is not dominated by the initial weights */
        const double ramp = (1.0 + step) / (10.0 + step);
        const float d = (float)(opt->ema_decay < ramp ? opt->ema_decay : ramp);
        /* the loss and the gradient norm into the window's slot */
        train_step_run(&tstep, x0, noise, t, y, B, (float)lr, d, stats.dev + 2 * stats.n);
        stats.lr[stats.n++] = lr;

        const int ckpt = (step + 1) % opt->ckpt_every == 0 || step + 1 == opt->steps;
        if (ckpt || stats.n == STATS_WINDOW || now_seconds() - stats.t_last >= 0.5) {
            st = stats_flush(&stats, eng, log, opt, B, last_ckpt, &recent, &n_recent);
            if (!opt->quiet && st == D2C_OK) progress_update(&prog, step + 1, stats.status);
            if (st != D2C_OK) {
                if (!opt->quiet) progress_end(&prog);
                goto done;
            }
        }
        if (ckpt) {
            fflush(log);
            if ((st = save_checkpoint(opt, &hs, &net, &adam, ema, &info, step + 1)) != D2C_OK) {
                if (!opt->quiet) progress_end(&prog);
                d2c_error_context(st, "checkpoint at step %ld: ", step + 1);
                goto done;
            }
            last_ckpt = step + 1;
        }
    }
    if (!opt->quiet) progress_end(&prog);
    if (start == opt->steps) { /* nothing left to do: make sure the file is complete */
        D2C_TRY_GOTO(st, save_checkpoint(opt, &hs, &net, &adam, ema, &info, start), done);
    }
    *final_loss = n_recent ? recent / n_recent : 0.0;

done:
    if (log && fclose(log) != 0 && st == D2C_OK)
        st = d2c_error(D2C_ERR_FAIL, "%s: cannot write the training log: %s", log_path, strerror(errno));
    free(sampler.perm);
    free(idx);
    free(t);
    free(y);
    if (x0_host != x0) eng->ops->host_free(eng, x0_host);
    engine_free(eng, x0);
    engine_free(eng, noise);
    engine_free(eng, stats.dev);
    free(hs.owned);
    free(log_path);
    train_step_destroy(&tstep);
    ddpm_scratch_free(&scratch);
    engine_free(eng, ema);
    adam_destroy(&adam);
    unet_destroy(&net);
    model_info_free(&info);
    dataset_free(&data);
    return st;
}

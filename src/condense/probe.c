/* Noise-floor measurements of the matching objective. */
#include "condense/probe.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "condense/matching.h"
#include "core/rng.h"
#include "core/util.h"
#include "io/dataset.h"

/* Fills B images of class k (repeated M times, different noise per copy) from stream s. */
static void class_batch(const Dataset *d, const ClassIndex *ci, int k, int B, int M, uint64_t seed, uint64_t s,
                        float *x, int64_t *y) {
    const size_t D = (size_t)d->c * d->h * d->w;
    const int n = class_index_count(ci, k);
    Rng r = rng_stream(seed, RNG_POOL, s);
    for (int b = 0; b < B; b++) {
        int i = ci->index[ci->start[k] + (int)rng_below(&r, (uint32_t)n)];
        for (int m = 0; m < M; m++) {
            memcpy(x + ((size_t)m * B + b) * D, d->images + (size_t)i * D, D * sizeof(float));
            y[m * B + b] = k;
        }
    }
}

int condense_probe(const CondenseOptions *o) {
    Dataset d;
    D2C_TRY(d2c_error_context(dataset_load(&d, o->data), "--data: "));
    int st = d2c_error_context(dataset_require_all_classes(&d), "--data: ");
    if (st) {
        dataset_free(&d);
        return st;
    }
    ClassIndex ci = class_index_build(&d);
    const size_t D = (size_t)d.c * d.h * d.w;
    UNetConfig cfg = o->cfg;
    cfg.in_channels = d.c;
    cfg.num_classes = d.num_classes;
    const int draws[] = {1, 4, 16};
    const int n_draws = 3, Mmax = o->noise_draws > 16 ? o->noise_draws : 16;
    const int Br = o->real_batch, Bs = o->syn_batch, reps = 3;
    const int cap = Mmax * (Br > Bs ? Br : Bs);
    UNet net;
    if ((st = d2c_error_context(unet_create(&net, o->engine, &cfg, d.h, d.w, cap), "the probe network: ")) != D2C_OK) {
        class_index_free(&ci);
        dataset_free(&d);
        return st;
    }
    Engine *e = net.eng;
    unet_init_weights(&net, o->seed * 1000003ull + 17);
    Schedule s;
    schedule_init(&s, SCHEDULE_LINEAR);
    MatchWork w;
    match_work_create(&w, &net, cap, cap);
    float *xa = xmalloc_floats((size_t)cap * D), *xb = xmalloc_floats((size_t)cap * D);
    float *na = xmalloc_floats((size_t)cap * D), *nb = xmalloc_floats((size_t)cap * D);
    int64_t *ya = xcalloc((size_t)cap, sizeof(int64_t)), *yb = xcalloc((size_t)cap, sizeof(int64_t));
    float *mirror[4] = {NULL, NULL, NULL, NULL}; /* engine copies of xa, xb, na, nb (not on host memory) */
    for (int i = 0; i < 4 && !e->host_memory; i++) mirror[i] = engine_xalloc_floats(e, (size_t)cap * D);
    char *log_path = NULL;
    if (o->log_path) log_path = xstrdup(o->log_path);
    else {
        log_path = xmalloc(strlen(o->out) + 16);
        sprintf(log_path, "%s.probe.jsonl", o->out);
    }
    FILE *log = fopen(log_path, "w");
    if (!log) {
        st = d2c_error(D2C_ERR_INPUT, "%s: cannot write the probe log: %s", log_path, strerror(errno));
        goto done;
    }
    const int ts[] = {20, 100, 300, 500, 700, 900};
    printf("noise floor of the matching distance (class 0..2, real batch %d, pool batch %d, %d repeats; C=%d UNet at init)\n",
           Br, Bs, reps, cfg.base_channels);
    printf("%5s %6s %15s %15s %8s\n", "t", "draws", "floor", "noise pool", "signal");
    for (size_t ti = 0; ti < sizeof ts / sizeof ts[0]; ti++)
        for (int di = 0; di < n_draws; di++) {
            const int M = draws[di];
            const int64_t t = ts[ti];
            double sum[2] = {0}, sq[2] = {0};
            int cnt = 0;
            for (int k = 0; k < 3 && k < d.num_classes; k++)
                for (int r = 0; r < reps; r++) {
                    const uint64_t stream = ((uint64_t)ti * 64 + di) * 4096 + (uint64_t)k * 64 + r;
                    class_batch(&d, &ci, k, Br, M, o->seed, 2 * stream, xa, ya);
                    Rng rn = rng_stream(o->seed, RNG_NOISE, stream);
                    rng_fill_normal(&rn, na, (size_t)M * Br * D);
                    rng_fill_normal(&rn, nb, (size_t)M * Bs * D);
                    double v[2];
                    /* 0: another real batch of the class, of the pool batch's size: the floor,
                     * which is also where a pool initialised from real images starts;
                     * 1: a pool of noise images, clearly bad */
                    class_batch(&d, &ci, k, Bs, M, o->seed, 2 * stream + 1, xb, yb);
                    const size_t nr = (size_t)M * Br * D, ns = (size_t)M * Bs * D;
                    const float *exa = engine_view(e, mirror[0], xa, nr), *ena = engine_view(e, mirror[2], na, nr);
                    const float *enb = engine_view(e, mirror[3], nb, ns);
                    v[0] = matching_loss_grad(&net, &s, &w, exa, ya, M * Br, engine_view(e, mirror[1], xb, ns), yb, NULL, M * Bs,
                                              &t, 1, ena, enb, 0.0f, NULL, NULL);
                    Rng rx = rng_stream(o->seed, RNG_POOL, (2ull << 40) + stream);
                    for (size_t i = 0; i < (size_t)M * Bs * D; i++) {
                        float u = 0.5f * rng_normal(&rx);
                        xb[i] = u < -1 ? -1 : u > 1 ? 1 : u;
                    }
                    v[1] = matching_loss_grad(&net, &s, &w, exa, ya, M * Br, engine_view(e, mirror[1], xb, ns), yb, NULL, M * Bs,
                                              &t, 1, ena, enb, 0.0f, NULL, NULL);
                    for (int q = 0; q < 2; q++) {
                        sum[q] += v[q];
                        sq[q] += v[q] * v[q];
                    }
                    cnt++;
                }
            double mean[2], sd[2];
            for (int q = 0; q < 2; q++) {
                mean[q] = sum[q] / cnt;
                sd[q] = sqrt(fmax(sq[q] / cnt - mean[q] * mean[q], 0));
            }
            double signal = (mean[1] - mean[0]) / (sd[0] + 1e-9);
            printf("%5lld %6d %8.1f±%-6.1f %8.1f±%-6.1f %8.2f\n", (long long)t, M, mean[0], sd[0], mean[1], sd[1], signal);
            fflush(stdout);
            fprintf(log,
                    "{\"t\": %lld, \"draws\": %d, \"floor\": %.4f, \"floor_sd\": %.4f, \"noise_pool\": %.4f, "
                    "\"noise_pool_sd\": %.4f, \"signal\": %.4f}\n",
                    (long long)t, M, mean[0], sd[0], mean[1], sd[1], signal);
            fflush(log);
        }
    if (fclose(log) != 0) st = d2c_error(D2C_ERR_FAIL, "%s: cannot write the probe log: %s", log_path, strerror(errno));
done:
    free(log_path);
    free(xa); free(xb); free(na); free(nb); free(ya); free(yb);
    for (int i = 0; i < 4; i++) engine_free(e, mirror[i]);
    match_work_free(&w);
    unet_destroy(&net);
    class_index_free(&ci);
    dataset_free(&d);
    return st;
}

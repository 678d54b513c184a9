/* Sampling from a trained model in batches (generate.h): shared by `d2c sample` and the
 * public d2c_sampler, so both draw the same images from the same seed. */
#include "diffusion/generate.h"

#include <stdio.h>
#include <stdlib.h>

#include "core/progress.h"
#include "core/util.h"

static void unet_denoise(void *ctx, const float *x, const int64_t *t, const int64_t *y, int B, float *eps) {
    unet_forward_infer((UNet *)ctx, x, t, y, NULL, B, eps);
}

int generator_create(Generator *g, Engine *eng, const ModelInfo *info, int H, int W, int batch) {
    *g = (Generator){0};
    D2C_CHECK(batch >= 1);
    D2C_TRY(unet_config_validate(&info->cfg, H, W));
    D2C_TRY(unet_create(&g->net, eng, &info->cfg, H, W, 2 * batch));
    Engine *e = g->net.eng;
    if (!e->host_memory)
        g->x = engine_xalloc_floats(e, (size_t)batch * info->cfg.in_channels * H * W);
    schedule_init(&g->sched, info->schedule);
    g->num_classes = info->cfg.num_classes;
    g->batch = batch;
    return D2C_OK;
}

int generator_load_weights(Generator *g, const char *path) {
    float *host = xmalloc_floats(g->net.lay.n_params);
    int st = checkpoint_load_weights(path, &g->net.lay, host);
    if (st == D2C_OK) unet_upload_params(&g->net, host);
    free(host);
    return st;
}

void generator_free(Generator *g) {
    if (g->net.eng) engine_free(g->net.eng, g->x);
    unet_destroy(&g->net);
    *g = (Generator){0};
}

void generator_streams(uint64_t seed, int n, size_t D, Rng *rngs, float *x) {
    for (int i = 0; i < n; i++) {
        rngs[i] = rng_stream(seed, RNG_SAMPLE, (uint64_t)i);
        if (x) rng_fill_normal(&rngs[i], x + (size_t)i * D, D);
    }
}

int generator_check_labels(const int64_t *y, int n, int K) {
    for (int i = 0; i < n; i++)
        if (y[i] < 0 || y[i] > K)
            return d2c_error(D2C_ERR_INPUT, "label %lld of image %d is outside the model's classes 0..%d (%d = null)",
                             (long long)y[i], i, K - 1, K);
    return D2C_OK;
}

void generator_run(Generator *g, SamplerKind kind, float *x, const int64_t *y, int n, int steps, float guidance,
                   Rng *rngs, const char *progress) {
    const size_t D = (size_t)g->net.lay.cfg.in_channels * g->net.H * g->net.W;
    Engine *e = g->net.eng;
    DenoiserRef den = {unet_denoise, &g->net, g->num_classes, 2 * g->batch, e};
    Progress prog;
    if (progress) progress_begin(&prog, progress, 0, n);
    double t0 = now_seconds();
    for (int i = 0; i < n; i += g->batch) {
        int b = D2C_MIN(g->batch, n - i);
        float *xb = x + (size_t)i * D; /* host; run in place on an engine of host memory */
        float *xd = e->host_memory ? xb : g->x;
        engine_upload_floats(e, xd, xb, (size_t)b * D);
        sample_run(kind, &den, &g->sched, xd, y + i, b, D, steps, guidance, rngs + i);
        engine_download_floats(e, xb, xd, (size_t)b * D);
        if (progress) {
            char status[64];
            snprintf(status, sizeof status, "%.1f img/s", (i + b) / (now_seconds() - t0));
            progress_update(&prog, i + b, status);
        }
    }
    if (progress) progress_end(&prog);
}

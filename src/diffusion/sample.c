/* DDIM and DDPM samplers with classifier-free guidance. */
#include "diffusion/sample.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"

const char *const SAMPLER_NAMES[SAMPLER_COUNT] = {[SAMPLER_DDIM] = "ddim", [SAMPLER_DDPM] = "ddpm"};

int sampler_parse(const char *name, SamplerKind *kind) {
    int k;
    D2C_TRY(name_parse("sampler", SAMPLER_NAMES, SAMPLER_COUNT, name, &k));
    *kind = (SamplerKind)k;
    return D2C_OK;
}

void sample_run(SamplerKind kind, const DenoiserRef *net, const Schedule *s, float *x, const int64_t *y, int B,
                size_t D, int steps, float guidance, Rng *rngs) {
    switch (kind) {
    case SAMPLER_DDIM: ddim_sample(net, s, x, y, B, D, steps, guidance); return;
    case SAMPLER_DDPM: ddpm_sample(net, s, x, y, B, D, steps, guidance, rngs); return;
    case SAMPLER_COUNT: break;
    }
    D2C_CHECK(!"a sampler kind");
}

void ddim_timesteps(int steps, int T, int *taus) {
    for (int i = 0; i < steps; i++) taus[i] = (int)(((long)i * T) / steps);
}

/* eps for every image at timestep t, with guidance; buffers sized 2B. */
static void guided_eps(const DenoiserRef *net, const float *x, int t, const int64_t *y, int B, size_t D,
                       float guidance, float *xin, int64_t *tt, int64_t *yy, float *eps2, float *eps) {
    Engine *e = net->eng;
    const int two = guidance != 1.0f;
    const size_t bytes = (size_t)B * D * sizeof(float);
    e->ops->copy(e, xin, x, bytes);
    for (int b = 0; b < B; b++) {
        tt[b] = t;
        yy[b] = y[b];
    }
    if (two) {
        e->ops->copy(e, xin + (size_t)B * D, x, bytes);
        for (int b = 0; b < B; b++) {
            tt[B + b] = t;
            yy[B + b] = net->null_label;
        }
    }
    net->fn(net->ctx, xin, tt, yy, two ? 2 * B : B, eps2);
    if (!two) {
        e->ops->copy(e, eps, eps2, bytes);
        return;
    }
    e->ops->guidance(e, eps, eps2, eps2 + (size_t)B * D, guidance, (size_t)B * D);
}

typedef struct {
    float *xin, *eps2, *eps, *z; /* device */
    float *z_host;               /* DDPM noise staging (the device buffer itself on the CPU) */
    int64_t *tt, *yy;
} SampleBuffers;

static SampleBuffers buffers_new(const DenoiserRef *net, int B, size_t D, float guidance, int want_z) {
    Engine *e = net->eng;
    SampleBuffers sb = {0};
    int cap = guidance != 1.0f ? 2 * B : B;
    D2C_CHECK(cap <= net->max_batch);
    sb.xin = engine_xalloc_floats(e, (size_t)cap * D);
    sb.eps2 = engine_xalloc_floats(e, (size_t)cap * D);
    sb.eps = engine_xalloc_floats(e, (size_t)B * D);
    if (want_z) {
        sb.z = engine_xalloc_floats(e, (size_t)B * D);
        sb.z_host = e->host_memory ? sb.z : xmalloc_floats((size_t)B * D);
    }
    sb.tt = xcalloc((size_t)cap, sizeof(int64_t));
    sb.yy = xcalloc((size_t)cap, sizeof(int64_t));
    return sb;
}

static void buffers_free(const DenoiserRef *net, SampleBuffers *sb) {
    Engine *e = net->eng;
    engine_free(e, sb->xin);
    engine_free(e, sb->eps2);
    engine_free(e, sb->eps);
    if (sb->z_host != sb->z) free(sb->z_host);
    engine_free(e, sb->z);
    free(sb->tt);
    free(sb->yy);
}

void ddim_sample(const DenoiserRef *net, const Schedule *s, float *x, const int64_t *y, int B, size_t D,
                 int steps, float guidance) {
    Engine *e = net->eng;
    int *taus = xcalloc((size_t)steps, sizeof(int));
    ddim_timesteps(steps, s->T, taus);
    SampleBuffers sb = buffers_new(net, B, D, guidance, 0);
    const size_t n = (size_t)B * D;
    for (int i = steps - 1; i >= 0; i--) {
        guided_eps(net, x, taus[i], y, B, D, guidance, sb.xin, sb.tt, sb.yy, sb.eps2, sb.eps);
        /* the spec's float32 arithmetic, operation for operation */
        const float ab = s->alpha_bar[taus[i]];
        const float ab_prev = i > 0 ? s->alpha_bar[taus[i - 1]] : 1.0f;
        const float c_noise = sqrtf(1.0f - ab), c_sig = sqrtf(ab);
        const float c_prev = sqrtf(ab_prev), c_prev_noise = sqrtf(1.0f - ab_prev);
        e->ops->ddim_step(e, x, sb.eps, n, c_noise, c_sig, c_prev, c_prev_noise);
    }
    e->ops->clamp(e, x, -1.0f, 1.0f, n);
    buffers_free(net, &sb);
    free(taus);
}

void ddpm_sample(const DenoiserRef *net, const Schedule *s, float *x, const int64_t *y, int B, size_t D,
                 int steps, float guidance, Rng *rngs) {
    Engine *e = net->eng;
    if (steps <= 0 || steps > s->T) steps = s->T;
    int *taus = xcalloc((size_t)steps, sizeof(int));
    ddim_timesteps(steps, s->T, taus);
    SampleBuffers sb = buffers_new(net, B, D, guidance, 1);
    for (int i = steps - 1; i >= 0; i--) {
        guided_eps(net, x, taus[i], y, B, D, guidance, sb.xin, sb.tt, sb.yy, sb.eps2, sb.eps);
        /* respaced schedule: alpha_t = ab_t / ab_prev over the skipped stretch */
        const double ab = s->alpha_bar[taus[i]];
        const double ab_prev = i > 0 ? s->alpha_bar[taus[i - 1]] : 1.0;
        const double beta = 1.0 - ab / ab_prev;
        const float c_eps = (float)(beta / sqrt(1.0 - ab));
        const float c_scale = (float)(1.0 / sqrt(1.0 - beta));
        const float sigma = i > 0 ? (float)sqrt(beta * (1.0 - ab_prev) / (1.0 - ab)) : 0.0f;
        const float *z = NULL;
        if (sigma > 0) { /* each image's noise from its own stream, in order */
            for (int b = 0; b < B; b++)
                for (size_t k = 0; k < D; k++) sb.z_host[(size_t)b * D + k] = rng_normal(&rngs[b]);
            engine_upload_floats(e, sb.z, sb.z_host, (size_t)B * D);
            z = sb.z;
        }
        e->ops->ddpm_step(e, x, sb.eps, z, (size_t)B * D, c_eps, c_scale, sigma);
    }
    e->ops->clamp(e, x, -1.0f, 1.0f, (size_t)B * D);
    buffers_free(net, &sb);
    free(taus);
}

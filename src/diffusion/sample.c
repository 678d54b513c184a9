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
    const int two = guidance != 1.0f;
    memcpy(xin, x, (size_t)B * D * sizeof(float));
    for (int b = 0; b < B; b++) {
        tt[b] = t;
        yy[b] = y[b];
    }
    if (two) {
        memcpy(xin + (size_t)B * D, x, (size_t)B * D * sizeof(float));
        for (int b = 0; b < B; b++) {
            tt[B + b] = t;
            yy[B + b] = net->null_label;
        }
    }
    net->fn(net->ctx, xin, tt, yy, two ? 2 * B : B, eps2);
    if (!two) {
        memcpy(eps, eps2, (size_t)B * D * sizeof(float));
        return;
    }
    const float *ec = eps2, *en = eps2 + (size_t)B * D;
    for (size_t i = 0; i < (size_t)B * D; i++) eps[i] = en[i] + guidance * (ec[i] - en[i]);
}

typedef struct {
    float *xin, *eps2, *eps;
    int64_t *tt, *yy;
} SampleBuffers;

static SampleBuffers buffers_new(const DenoiserRef *net, int B, size_t D, float guidance) {
    SampleBuffers sb;
    int cap = guidance != 1.0f ? 2 * B : B;
    D2C_CHECK(cap <= net->max_batch);
    sb.xin = xmalloc_floats((size_t)cap * D);
    sb.eps2 = xmalloc_floats((size_t)cap * D);
    sb.eps = xmalloc_floats((size_t)B * D);
    sb.tt = xcalloc((size_t)cap, sizeof(int64_t));
    sb.yy = xcalloc((size_t)cap, sizeof(int64_t));
    return sb;
}

static void buffers_free(SampleBuffers *sb) {
    free(sb->xin);
    free(sb->eps2);
    free(sb->eps);
    free(sb->tt);
    free(sb->yy);
}

static void clamp_unit(float *x, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] = x[i] < -1.0f ? -1.0f : x[i] > 1.0f ? 1.0f : x[i];
}

void ddim_sample(const DenoiserRef *net, const Schedule *s, float *x, const int64_t *y, int B, size_t D,
                 int steps, float guidance) {
    int *taus = xcalloc((size_t)steps, sizeof(int));
    ddim_timesteps(steps, s->T, taus);
    SampleBuffers sb = buffers_new(net, B, D, guidance);
    const size_t n = (size_t)B * D;
    for (int i = steps - 1; i >= 0; i--) {
        guided_eps(net, x, taus[i], y, B, D, guidance, sb.xin, sb.tt, sb.yy, sb.eps2, sb.eps);
        /* the spec's float32 arithmetic, operation for operation */
        const float ab = s->alpha_bar[taus[i]];
        const float ab_prev = i > 0 ? s->alpha_bar[taus[i - 1]] : 1.0f;
        const float c_noise = sqrtf(1.0f - ab), c_sig = sqrtf(ab);
        const float c_prev = sqrtf(ab_prev), c_prev_noise = sqrtf(1.0f - ab_prev);
        for (size_t k = 0; k < n; k++) {
            float x0 = (x[k] - c_noise * sb.eps[k]) / c_sig;
            x[k] = c_prev * x0 + c_prev_noise * sb.eps[k];
        }
    }
    clamp_unit(x, n);
    buffers_free(&sb);
    free(taus);
}

void ddpm_sample(const DenoiserRef *net, const Schedule *s, float *x, const int64_t *y, int B, size_t D,
                 int steps, float guidance, Rng *rngs) {
    if (steps <= 0 || steps > s->T) steps = s->T;
    int *taus = xcalloc((size_t)steps, sizeof(int));
    ddim_timesteps(steps, s->T, taus);
    SampleBuffers sb = buffers_new(net, B, D, guidance);
    for (int i = steps - 1; i >= 0; i--) {
        guided_eps(net, x, taus[i], y, B, D, guidance, sb.xin, sb.tt, sb.yy, sb.eps2, sb.eps);
        /* respaced schedule: alpha_t = ab_t / ab_prev over the skipped stretch */
        const double ab = s->alpha_bar[taus[i]];
        const double ab_prev = i > 0 ? s->alpha_bar[taus[i - 1]] : 1.0;
        const double beta = 1.0 - ab / ab_prev;
        const float c_eps = (float)(beta / sqrt(1.0 - ab));
        const float c_scale = (float)(1.0 / sqrt(1.0 - beta));
        const float sigma = i > 0 ? (float)sqrt(beta * (1.0 - ab_prev) / (1.0 - ab)) : 0.0f;
        for (int b = 0; b < B; b++) {
            float *xb = x + (size_t)b * D;
            const float *eb = sb.eps + (size_t)b * D;
            for (size_t k = 0; k < D; k++) {
                float z = sigma > 0 ? rng_normal(&rngs[b]) : 0.0f;
                xb[k] = (xb[k] - c_eps * eb[k]) * c_scale + sigma * z;
            }
        }
    }
    clamp_unit(x, (size_t)B * D);
    buffers_free(&sb);
    free(taus);
}

/* The DDPM epsilon objective, forward and backward. */
#include "diffusion/ddpm.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"

void ddpm_scratch_create(DdpmScratch *w, Engine *eng, int cap, size_t D) {
    w->eng = eng ? eng : engine_cpu_default();
    w->cap = cap;
    w->D = D;
    w->xt = engine_xalloc_floats_raw(w->eng, (size_t)cap * D); /* written before read */
    w->eps = engine_xalloc_floats_raw(w->eng, (size_t)cap * D);
    w->deps = engine_xalloc_floats_raw(w->eng, 2 * (size_t)cap * D); /* deps, then dxt: one clear for both */
    w->dxt = w->deps + (size_t)cap * D;
}

void ddpm_scratch_zero(DdpmScratch *w, size_t n, int with_dxt) {
    /* dxt follows deps' cap * D floats: one memzero covers deps[0, n) and dxt[0, n) */
    engine_zero_floats(w->eng, w->deps, with_dxt ? (size_t)(w->dxt - w->deps) + n : n);
}

void ddpm_scratch_free(DdpmScratch *w) {
    if (w->eng) {
        engine_free(w->eng, w->xt);
        engine_free(w->eng, w->eps);
        engine_free(w->eng, w->deps); /* dxt included */
    }
    memset(w, 0, sizeof *w);
}

/* the pass; the backward's scale is scale, or with div != NULL mult / div[0] read on the device */
static void pass(UNet *net, const Schedule *s, DdpmScratch *w, const float *x0, const int64_t *t, const int64_t *y,
                 const float *cond, const float *noise, int B, int backward, float scale, const float *div,
                 float *dx0, float *dcond) {
    Engine *e = net->eng;
    const size_t D = w->D, n = (size_t)B * D;
    D2C_CHECK(B <= w->cap && w->eng == e);
    e->ops->q_sample(e, w->xt, x0, noise, t, s->alpha_bar, B, D);
    unet_forward(net, w->xt, t, y, cond, B, w->eps);
    if (!backward) return;
    ddpm_scratch_zero(w, n, dx0 != NULL);
    if (div)
        e->ops->mse_backward_div(e, w->deps, w->eps, noise, n, scale, div);
    else
        e->ops->mse_backward(e, w->deps, w->eps, noise, n, scale);
    unet_backward(net, w->deps, NULL, dx0 ? w->dxt : NULL, dcond);
    if (dx0) e->ops->q_sample_backward(e, dx0, w->dxt, t, s->alpha_bar, B, D);
}

void ddpm_pass(UNet *net, const Schedule *s, DdpmScratch *w, const float *x0, const int64_t *t,
               const int64_t *y, const float *cond, const float *noise, int B, int backward,
               float scale, float *dx0, float *dcond) {
    pass(net, s, w, x0, t, y, cond, noise, B, backward, scale, NULL, dx0, dcond);
}

void ddpm_pass_div(UNet *net, const Schedule *s, DdpmScratch *w, const float *x0, const int64_t *t,
                   const int64_t *y, const float *cond, const float *noise, int B, float mult, const float *div,
                   float *dx0, float *dcond) {
    pass(net, s, w, x0, t, y, cond, noise, B, 1, mult, div, dx0, dcond);
}

float ddpm_loss(UNet *net, const Schedule *s, DdpmScratch *w, const float *x0, const int64_t *t,
                const int64_t *y, const float *cond, const float *noise, int B, int backward,
                float scale, float *dx0, float *dcond) {
    ddpm_pass(net, s, w, x0, t, y, cond, noise, B, backward, scale, dx0, dcond);
    /* the loss last: on an asynchronous backend its read-back then waits for the whole
     * pass instead of stalling between forward and backward (eps and noise are unchanged) */
    return net->eng->ops->mse_forward(net->eng, w->eps, noise, (size_t)B * w->D);
}

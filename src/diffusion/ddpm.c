/* The DDPM epsilon objective, forward and backward. */
#include "diffusion/ddpm.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "engine/kernels.h"

void ddpm_scratch_create(DdpmScratch *w, int cap, size_t D) {
    w->cap = cap;
    w->D = D;
    w->xt = xmalloc_floats((size_t)cap * D);
    w->eps = xmalloc_floats((size_t)cap * D);
    w->deps = xmalloc_floats((size_t)cap * D);
    w->dxt = xmalloc_floats((size_t)cap * D);
}

void ddpm_scratch_free(DdpmScratch *w) {
    free(w->xt);
    free(w->eps);
    free(w->deps);
    free(w->dxt);
    memset(w, 0, sizeof *w);
}

float ddpm_loss(UNet *net, const Schedule *s, DdpmScratch *w, const float *x0, const int64_t *t,
                const int64_t *y, const float *cond, const float *noise, int B, int backward,
                float scale, float *dx0, float *dcond) {
    const size_t D = w->D, n = (size_t)B * D;
    D2C_CHECK(B <= w->cap);
    q_sample(w->xt, x0, noise, t, s, B, D);
    unet_forward(net, w->xt, t, y, cond, B, w->eps);
    float loss = mse_forward(w->eps, noise, n);
    if (!backward) return loss;
    vec_zero(w->deps, n);
    mse_backward(w->deps, w->eps, noise, n, scale);
    if (dx0) vec_zero(w->dxt, n);
    unet_backward(net, w->deps, NULL, dx0 ? w->dxt : NULL, dcond);
    if (dx0) {
        for (int b = 0; b < B; b++) {
            float ca = sqrtf(s->alpha_bar[t[b]]);
            vec_axpy(dx0 + (size_t)b * D, ca, w->dxt + (size_t)b * D, D);
        }
    }
    return loss;
}

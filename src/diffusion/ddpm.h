/* The DDPM epsilon objective of the spec: loss = mean((eps_theta(x_t, t, c) - eps)^2),
 * x_t = q_sample(x_0, t, eps), with its backward to the weights, the clean images x_0
 * and the conditioning vectors. */
#ifndef D2C_DIFFUSION_DDPM_H
#define D2C_DIFFUSION_DDPM_H

#include <stddef.h>
#include <stdint.h>

#include "diffusion/schedule.h"
#include "model/unet.h"

typedef struct {
    Engine *eng;    /* where the buffers live */
    int cap;        /* images */
    size_t D;       /* values per image */
    float *xt, *eps, *deps, *dxt;   /* (cap, D) device memory */
} DdpmScratch;

/* eng NULL: engine_cpu_default(). */
void ddpm_scratch_create(DdpmScratch *w, Engine *eng, int cap, size_t D);
void ddpm_scratch_free(DdpmScratch *w);
/* deps[0, n) = 0 and, with with_dxt, dxt[0, n) = 0: one memzero (dxt follows deps). */
void ddpm_scratch_zero(DdpmScratch *w, size_t n, int with_dxt);

/* ddpm_pass: the loss's forward and, with backward != 0, its backward pass, without
 * reading the loss back (nothing waits for the device; read it with mse_forward(_to) of
 * w->eps against noise, which the pass leaves unchanged). ddpm_loss: the same, then the
 * loss returned to the host (synchronising). */
void ddpm_pass(UNet *net, const Schedule *s, DdpmScratch *w, const float *x0, const int64_t *t,
               const int64_t *y, const float *cond, const float *noise, int B, int backward,
               float scale, float *dx0, float *dcond);
/* ddpm_pass with its backward, d loss scaled by mult / div[0] (0 when div[0] is 0), div
 * one float of engine memory read when the op runs (a finite-difference step computed on
 * the device, EngineOps.fd_coef). */
void ddpm_pass_div(UNet *net, const Schedule *s, DdpmScratch *w, const float *x0, const int64_t *t,
                   const int64_t *y, const float *cond, const float *noise, int B, float mult, const float *div,
                   float *dx0, float *dcond);
/* Returns the loss (host). x0, noise, cond, dx0, dcond: device memory of net->eng (the
 * scratch's engine); t, y: host. With backward != 0, runs the backward pass with d loss scaled by
 * scale: net->grads += scale dL/dtheta; dx0 (B, D) += scale dL/dx0 and dcond (B, E) +=
 * scale dL/dcond where not NULL. y or cond as in unet_forward. */
float ddpm_loss(UNet *net, const Schedule *s, DdpmScratch *w, const float *x0, const int64_t *t,
                const int64_t *y, const float *cond, const float *noise, int B, int backward,
                float scale, float *dx0, float *dcond);

#endif

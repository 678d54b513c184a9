/* Samplers: deterministic DDIM exactly as the spec's ddim_sample (its timestep rule, no
 * clipping inside the loop, clamp to [-1, 1] at the end) and DDPM ancestral sampling,
 * both with classifier-free guidance. The samplers see the network only through a
 * denoiser callback, and run their arithmetic on the denoiser's engine: x and eps are
 * device memory of DenoiserRef.eng, t and y host arrays. Shapes: B images of D = C*H*W
 * values. DDPM's noise is drawn on the host from the per-image streams and uploaded. */
#ifndef D2C_DIFFUSION_SAMPLE_H
#define D2C_DIFFUSION_SAMPLE_H

#include <stddef.h>
#include <stdint.h>

#include "core/rng.h"
#include "diffusion/schedule.h"
#include "engine/backend.h"

/* eps (B, D) = eps_theta(x (B, D), t (B), y (B)); y may hold the null label. */
typedef void (*Denoiser)(void *ctx, const float *x, const int64_t *t, const int64_t *y, int B, float *eps);

typedef struct {
    Denoiser fn;
    void *ctx;
    int null_label;     /* num_classes */
    int max_batch;      /* the callback accepts up to this many images (>= 2B with guidance) */
    Engine *eng;        /* where x and eps live and the sampler arithmetic runs */
} DenoiserRef;

/* The samplers, as --sampler and the samples file's metadata name them. */
typedef enum { SAMPLER_DDIM = 0, SAMPLER_DDPM = 1, SAMPLER_COUNT } SamplerKind;
extern const char *const SAMPLER_NAMES[SAMPLER_COUNT];
/* "ddim" or "ddpm" -> kind; D2C_ERR_INPUT listing the names for anything else. */
int sampler_parse(const char *name, SamplerKind *kind);

/* tau_i = floor(i * T / steps), i = 0..steps-1. */
void ddim_timesteps(int steps, int T, int *taus);

/* x (B, D): x_T on entry, the sample on return. guidance w: eps = eps_null + w (eps_y -
 * eps_null); w == 1 skips the null pass. */
void ddim_sample(const DenoiserRef *net, const Schedule *s, float *x, const int64_t *y, int B, size_t D,
                 int steps, float guidance);

/* Ancestral DDPM over all T steps (or a strided subset of `steps`, respacing the
 * schedule): x_{t-1} = (x_t - beta_t / sqrt(1 - ab_t) eps) / sqrt(alpha_t) + sigma_t z,
 * sigma_t^2 = beta_t (1 - ab_{t-1}) / (1 - ab_t); z from rngs[b] (one stream per image,
 * so results do not depend on batching). */
void ddpm_sample(const DenoiserRef *net, const Schedule *s, float *x, const int64_t *y, int B, size_t D,
                 int steps, float guidance, Rng *rngs);

/* The sampler of this kind: ddim_sample, or ddpm_sample with rngs (unused by DDIM). */
void sample_run(SamplerKind kind, const DenoiserRef *net, const Schedule *s, float *x, const int64_t *y, int B,
                size_t D, int steps, float guidance, Rng *rngs);

#endif

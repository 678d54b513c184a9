/* The CPU backend's flat-buffer kernels (engine/cpu/flat.c): the semantics of the
 * EngineOps entries of the same names in engine/backend.h, on host memory. */
#ifndef D2C_ENGINE_CPU_FLAT_H
#define D2C_ENGINE_CPU_FLAT_H

#include <stddef.h>
#include <stdint.h>

#include "engine/backend.h"

void flat_axpby(float *y, float a, const float *x, float b, size_t n);
void flat_waxpy(float *w, float a, const float *x, const float *y, size_t n);
void flat_scale(float *y, float a, size_t n);
void flat_clamp(float *y, float lo, float hi, size_t n);
double flat_clip_grad_norm(float *g, size_t n, double max_norm);
void flat_adam_step(float *p, const float *g, float *m, float *v, size_t n, float b1, float b2, float eps,
                    float step_size, float bc2_sqrt);
void flat_ema_update(float *ema, const float *p, float decay, size_t n);
void flat_q_sample(float *xt, const float *x0, const float *noise, const int64_t *t, const float *alpha_bar, int B,
                   size_t D);
void flat_q_sample_backward(float *dx0, const float *dxt, const int64_t *t, const float *alpha_bar, int B, size_t D);
void flat_guidance(float *eps, const float *ec, const float *en, float g, size_t n);
void flat_ddim_step(float *x, const float *eps, size_t n, float c_noise, float c_sig, float c_prev, float c_prev_noise);
void flat_ddpm_step(float *x, const float *eps, const float *z, size_t n, float c_eps, float c_scale, float sigma);
double flat_layerwise_distance(const EngineRows *rows, int nrows, const float *g_real, const float *g_syn,
                               float *v_real, float *v_syn, size_t n);
/* The finite-difference step coefficients of EngineOps.fd_coef (host memory). */
void flat_fd_coef(float *coef, const float *v, size_t n, double base);
/* EngineOps.feature_gap (host memory). */
void flat_feature_gap(double *sq, float *grad, const float *fr, const float *fs, int C, float coef, float denom);
void flat_channel_mean(float *feat, const float *x, int B, int C, size_t N);
void flat_channel_fill(float *x, const float *vals, int B, int C, size_t N);
void flat_row_mean(float *y, const float *x, size_t rows, size_t N);
void flat_row_mean_backward(float *dx, const float *dy, size_t rows, size_t N);
void flat_softmax_rows(float *probs, const float *logits, int B, int K);

#endif

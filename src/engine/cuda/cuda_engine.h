/* The CUDA backend's own interface: the device state (stream, cuBLAS handle, scratch) and
 * one entry point per engine operation of engine/backend.h's table, with the same arguments
 * after a leading CudaEngine * (backend_cuda.c fills the table with them). Plain C, shared
 * by that glue and the .cu files, which give these functions C linkage.
 *
 * Pointers are device memory, except where an argument says "host": index arrays
 * (embedding rows, timesteps), the schedule of q_sample and the row list of the layer-wise
 * distance, which the backend uploads.
 * Semantics are the CPU kernels': forward overwrites its outputs; backward ACCUMULATES
 * into every gradient it is given and skips NULL ones.
 *
 * Errors: launches are asynchronous, so a failure is recorded in the engine (the first
 * one, with its d2c message) and reported by cu_sync or by any op that returns a status;
 * after a failure the other ops do nothing. */
#ifndef D2C_ENGINE_CUDA_ENGINE_H
#define D2C_ENGINE_CUDA_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#include "core/rng.h"        /* Rng */
#include "engine/backend.h" /* ConvShape, EngineRows */

typedef struct CudaEngine CudaEngine;

/* ---- lifetime, errors, memory */
/* D2C_ERR_INPUT "no CUDA device" when cudaGetDeviceCount fails or finds none. */
int cu_create(CudaEngine **out);
void cu_destroy(CudaEngine *e);
const char *cu_device_name(const CudaEngine *e);
/* FP32 peak without tensor cores: SMs x FP32 lanes per SM x 2 (FMA) x the SM clock */
double cu_peak_gflops(const CudaEngine *e);
/* D2C_CUDA_PROFILE=1 (profile.cu): begin returns the slot of an event pair recorded before
 * an op (-1 when not profiling), end records the pair's second event under label; the
 * engine prints the per-label totals when destroyed (cu_prof_report) and frees them. */
int cu_prof_begin(CudaEngine *e);
void cu_prof_end(CudaEngine *e, int slot, const char *label);
void cu_prof_report(CudaEngine *e);
void cu_prof_free(CudaEngine *e);
/* Waits for the stream; returns D2C_OK or the first recorded failure. */
int cu_sync(CudaEngine *e);
int cu_status(const CudaEngine *e);  /* the recorded status, without waiting */
/* NULL when the memory is not there, recording nothing (the table's contract) */
void *cu_alloc(CudaEngine *e, size_t bytes);
void cu_free(CudaEngine *e, void *p);
void *cu_host_alloc(CudaEngine *e, size_t bytes); /* pinned */
void cu_host_free(CudaEngine *e, void *p);
void cu_upload(CudaEngine *e, void *dst, const void *host_src, size_t bytes);
void cu_download(CudaEngine *e, void *host_dst, const void *src, size_t bytes); /* synchronises */
void cu_copy(CudaEngine *e, void *dst, const void *src, size_t bytes); /* device to device */
void cu_memzero(CudaEngine *e, void *dst, size_t bytes);

/* ---- layers (shapes as in engine/backend.h) */
void cu_conv2d_forward(CudaEngine *e, float *y, const float *x, const float *w, const float *bias,
                       ConvShape s);
void cu_conv2d_backward(CudaEngine *e, float *dx, float *dw, float *dbias, const float *dy,
                        const float *x, const float *w, ConvShape s);
void cu_linear_forward(CudaEngine *e, float *y, const float *x, const float *w, const float *bias,
                       int B, int in, int out);
void cu_linear_backward(CudaEngine *e, float *dx, float *dw, float *dbias, const float *dy,
                        const float *x, const float *w, int B, int in, int out);
void cu_groupnorm_forward(CudaEngine *e, float *y, float *mean, float *rstd, const float *x,
                          const float *gamma, const float *beta, int B, int C, int N, int G,
                          int silu);
void cu_groupnorm_backward(CudaEngine *e, float *dx, float *dgamma, float *dbeta, const float *dy,
                           const float *x, const float *mean, const float *rstd,
                           const float *gamma, const float *beta, int B, int C, int N, int G,
                           int silu);
void cu_silu_forward(CudaEngine *e, float *y, const float *x, size_t n);
void cu_silu_backward(CudaEngine *e, float *dx, const float *dy, const float *x, size_t n);
void cu_add_channel_bias_forward(CudaEngine *e, float *h, const float *bias, int B, int C, int N);
void cu_add_channel_bias_backward(CudaEngine *e, float *dbias, const float *dh, int B, int C,
                                  int N);
void cu_upsample2x_forward(CudaEngine *e, float *y, const float *x, int B, int C, int H, int W);
void cu_upsample2x_backward(CudaEngine *e, float *dx, const float *dy, int B, int C, int H, int W);
void cu_concat_channels_forward(CudaEngine *e, float *y, const float *a, const float *b, int B,
                                int Ca, int Cb, int N);
void cu_concat_channels_backward(CudaEngine *e, float *da, float *db, const float *dy, int B,
                                 int Ca, int Cb, int N);
void cu_attention_forward(CudaEngine *e, float *out, float *attn, const float *qkv, int B, int C,
                          int N);
void cu_attention_backward(CudaEngine *e, float *dqkv, const float *dout, const float *qkv,
                           const float *attn, int B, int C, int N);
/* idx, t: host arrays of B values */
void cu_embedding_forward(CudaEngine *e, float *y, const float *table, const int64_t *idx, int B,
                          int E);
void cu_embedding_backward(CudaEngine *e, float *dtable, const float *dy, const int64_t *idx,
                           int B, int E);
void cu_timestep_embedding(CudaEngine *e, float *y, const int64_t *t, int B, int dim);
/* returns the mean on the host (synchronises); NaN after a failure */
float cu_mse_forward(CudaEngine *e, const float *pred, const float *target, size_t n);
/* out (device, one double) = what cu_mse_forward returns, without synchronising */
void cu_mse_forward_to(CudaEngine *e, double *out, const float *pred, const float *target, size_t n);
/* the clip of op_clip_grad_norm on the device: norm (device, one double) = the norm */
void cu_clip_grad_norm_to(CudaEngine *e, float *g, size_t n, double max_norm, double *norm);
void cu_mse_backward(CudaEngine *e, float *dpred, const float *pred, const float *target,
                     size_t n, float scale);
void cu_softmax_rows(CudaEngine *e, float *probs, const float *logits, int B, int K);

/* ---- flat buffers (backend.h says what each computes) */
void cu_axpy(CudaEngine *e, float *y, float a, const float *x, size_t n);            /* y += a x */
void cu_axpby(CudaEngine *e, float *y, float a, const float *x, float b, size_t n);  /* y = a x + b y */
void cu_waxpy(CudaEngine *e, float *w, float a, const float *x, const float *y, size_t n); /* w = a x + y */
void cu_scale(CudaEngine *e, float *y, float a, size_t n);                           /* y *= a */
void cu_clamp(CudaEngine *e, float *y, float lo, float hi, size_t n);
/* sum of x^2 in double, fixed-order two-pass reduction; host result (synchronises) */
double cu_sum_sq(CudaEngine *e, const float *x, size_t n);
/* coef [step_size, bc2_sqrt] and decay: device */
void cu_adam_step(CudaEngine *e, float *p, const float *g, float *m, float *v, size_t n, float b1,
                  float b2, float eps, const float *coef);
void cu_ema_update(CudaEngine *e, float *ema, const float *p, const float *decay, size_t n);
/* t (B), alpha_bar (ENGINE_T_STEPS): host, uploaded by the call (the coefficients are
 * computed on the device, so a graph replay follows new t) */
void cu_q_sample(CudaEngine *e, float *xt, const float *x0, const float *noise, const int64_t *t,
                 const float *alpha_bar, int B, size_t D);
void cu_q_sample_backward(CudaEngine *e, float *dx0, const float *dxt, const int64_t *t,
                          const float *alpha_bar, int B, size_t D);
void cu_guidance(CudaEngine *e, float *eps, const float *ec, const float *en, float g, size_t n);
void cu_ddim_step(CudaEngine *e, float *x, const float *eps, size_t n, float c_noise, float c_sig,
                  float c_prev, float c_prev_noise);
void cu_ddpm_step(CudaEngine *e, float *x, const float *eps, const float *z, size_t n, float c_eps,
                  float c_scale, float sigma);
/* rows: host; returns the distance (host, synchronises; rows added in order) */
double cu_layerwise_distance(CudaEngine *e, const EngineRows *rows, int nrows, const float *a,
                             const float *b, float *va, float *vb, size_t n);
/* the same, the distance into out (device) in row order: no synchronisation */
void cu_layerwise_distance_to(CudaEngine *e, const EngineRows *rows, int nrows, const float *a,
                              const float *b, float *va, float *vb, size_t n, double *out);
/* the table's fd_coef, waxpy_at, mse_backward_div, feature_gap (backend.h) */
void cu_fd_coef(CudaEngine *e, float *coef, const float *v, size_t n, double base);
void cu_waxpy_at(CudaEngine *e, float *w, const float *a, float sign, const float *x, const float *y,
                 size_t n);
void cu_mse_backward_div(CudaEngine *e, float *dpred, const float *pred, const float *target, size_t n,
                         float mult, const float *div);
void cu_feature_gap(CudaEngine *e, double *sq, float *grad, const float *fr, const float *fs, int C,
                    float coef, float denom);
void cu_channel_mean(CudaEngine *e, float *feat, const float *x, int B, int C, size_t N);
void cu_channel_fill(CudaEngine *e, float *x, const float *vals, int B, int C, size_t N);
void cu_row_mean(CudaEngine *e, float *y, const float *x, size_t rows, size_t N);
void cu_row_mean_backward(CudaEngine *e, float *dx, const float *dy, size_t rows, size_t N);
/* x[0..n) = what rng_fill_normal would write from a copy of *r (host; not advanced); r at a
 * pair boundary (has_spare 0, avail even): the table's fill_normal. */
void cu_fill_normal(CudaEngine *e, float *x, size_t n, const Rng *r);

/* the table's graph_run / graph_reset (graph.cu; D2C_CUDA_GRAPH=1, else fn runs eagerly) */
void cu_graph_run(CudaEngine *e, const uint64_t *key, int nkey, void (*fn)(void *ctx), void *ctx);
void cu_graph_reset(CudaEngine *e);

#ifdef __cplusplus
}
#endif
#endif

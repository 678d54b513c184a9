/* Naive double-precision references of the engine's layer ops, for test_backend_ops: the
 * definitions written out directly (loops over every index, no BLAS, no im2col, no
 * fused tricks), so a wrong backend cannot agree with them by sharing its code. Inputs are
 * float (what the backends see), results double. Backward functions ACCUMULATE into
 * their outputs, as the engine's ops do; a NULL output is skipped. */
#ifndef D2C_TESTS_BACKEND_REF_H
#define D2C_TESTS_BACKEND_REF_H

#include <stddef.h>
#include <stdint.h>

#include "engine/backend.h"

void ref_conv2d_forward(double *y, const float *x, const float *w, const float *bias, ConvShape s);
void ref_conv2d_backward(double *dx, double *dw, double *dbias, const float *dy, const float *x, const float *w,
                         ConvShape s);
void ref_linear_forward(double *y, const float *x, const float *w, const float *bias, int B, int in, int out);
void ref_linear_backward(double *dx, double *dw, double *dbias, const float *dy, const float *x, const float *w, int B,
                         int in, int out);
/* y, and the per-(b, g) mean and rstd (eps 1e-5, biased variance) */
void ref_groupnorm_forward(double *y, double *mean, double *rstd, const float *x, const float *gamma, const float *beta,
                           int B, int C, int N, int G, int silu);
void ref_groupnorm_backward(double *dx, double *dgamma, double *dbeta, const float *dy, const float *x,
                            const float *gamma, const float *beta, int B, int C, int N, int G, int silu);
/* attn (B, N, N) may be NULL */
void ref_attention_forward(double *out, double *attn, const float *qkv, int B, int C, int N);
void ref_attention_backward(double *dqkv, const float *dout, const float *qkv, int B, int C, int N);
void ref_timestep_embedding(double *y, const int64_t *t, int B, int dim);
double ref_silu(double x);
double ref_dsilu(double x);

#endif

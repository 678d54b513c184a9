/* The CPU backend's layer kernels: forward and backward of every operation the UNet and
 * the evaluator use. Callers above the engine reach them through engine/backend.h's
 * table (engine/cpu/backend_cpu.c); only src/engine/cpu and the kernel tests include
 * this header. Plain float* buffers, NCHW, shapes in the argument names.
 *
 * Shape letters: B batch, C channels (Cin/Cout), H W spatial, N = H*W positions,
 * G GroupNorm groups, E embedding width, K = Cin*k*k im2col rows.
 *
 * Conventions, the same for every kernel:
 *  - forward writes (overwrites) its outputs;
 *  - backward ACCUMULATES into every gradient it is given (dx += ..., dw += ...), so a
 *    tensor read by several layers gets the sum; the caller zeroes gradient buffers;
 *  - any gradient pointer may be NULL when that gradient is not wanted;
 *  - kernels parallelise with OpenMP internally and call single-threaded BLAS inside
 *    parallel regions (OpenBLAS's OpenMP build does this by itself);
 *  - scratch memory comes from a caller-owned Workspace, never malloc in the hot path. */
#ifndef D2C_ENGINE_KERNELS_H
#define D2C_ENGINE_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "engine/backend.h"

/* A growable scratch arena. ensure() only reallocates when a larger size is asked for,
 * so after the first step of a run no allocation happens. */
typedef struct {
    float *data;
    size_t capacity; /* floats */
} Workspace;
float *workspace_ensure(Workspace *ws, size_t floats);
void workspace_free(Workspace *ws);

/* ---- 2-D convolution, k in {1, 3}, stride in {1, 2}, padding k/2 (PyTorch Conv2d).
 * x (B, Cin, H, W) -> y (B, Cout, Ho, Wo), Ho = (H + 2*(k/2) - k)/stride + 1.
 * w (Cout, Cin, k, k), bias (Cout) or NULL. */
/* ConvShape and conv_out_size are in engine/backend.h (shared by every backend). */
void conv2d_forward(float *y, const float *x, const float *w, const float *bias, ConvShape s,
                    Workspace *ws);
/* dx += dL/dx, dw += dL/dw, dbias += dL/dbias, given dy and the forward input x. */
void conv2d_backward(float *dx, float *dw, float *dbias, const float *dy, const float *x,
                     const float *w, ConvShape s, Workspace *ws);

/* ---- y = conv2d(upsample2x(x)) for a 3x3 stride-1 conv of shape s on the upsampled grid:
 * x (B, Cin, H/2, W/2) with s.H, s.W even, y (B, Cout, H, W); equal to upsample2x_forward
 * then conv2d_forward up to float rounding, with 4/9 of the multiply-adds (upconv.c). */
void upsample2x_conv2d_forward(float *y, const float *x, const float *w, const float *bias,
                               ConvShape s, Workspace *ws);

/* ---- Linear: y (B, out) = x (B, in) @ w^T (w is (out, in)) + bias (out) or NULL. */
void linear_forward(float *y, const float *x, const float *w, const float *bias, int B, int in,
                    int out);
void linear_backward(float *dx, float *dw, float *dbias, const float *dy, const float *x,
                     const float *w, int B, int in, int out);

/* ---- GroupNorm (eps 1e-5, affine) with an optional fused SiLU on its output.
 * x, y (B, C, N); gamma, beta (C); mean, rstd (B, G) saved for backward.
 * With silu != 0, y = silu(groupnorm(x)); backward recomputes the normalised value. */
void groupnorm_forward(float *y, float *mean, float *rstd, const float *x, const float *gamma,
                       const float *beta, int B, int C, int N, int G, int silu);
void groupnorm_backward(float *dx, float *dgamma, float *dbeta, const float *dy, const float *x,
                        const float *mean, const float *rstd, const float *gamma,
                        const float *beta, int B, int C, int N, int G, int silu);

/* ---- SiLU, elementwise over n values: y = x * sigmoid(x). */
void silu_forward(float *y, const float *x, size_t n);
void silu_backward(float *dx, const float *dy, const float *x, size_t n);

/* ---- Per-(batch, channel) bias broadcast over positions: h (B, C, N) += e (B, C).
 * Backward: de (B, C) += sum over N of dh. (dh passes through unchanged.) */
void add_channel_bias_forward(float *h, const float *e, int B, int C, int N);
void add_channel_bias_backward(float *de, const float *dh, int B, int C, int N);

/* ---- Nearest-neighbour x2 upsampling: x (B, C, H, W) -> y (B, C, 2H, 2W). */
void upsample2x_forward(float *y, const float *x, int B, int C, int H, int W);
void upsample2x_backward(float *dx, const float *dy, int B, int C, int H, int W);

/* ---- Channel concatenation: y (B, Ca + Cb, N) = [a (B, Ca, N), b (B, Cb, N)]. */
void concat_channels_forward(float *y, const float *a, const float *b, int B, int Ca, int Cb,
                             int N);
void concat_channels_backward(float *da, float *db, const float *dy, int B, int Ca, int Cb,
                              int N);

/* ---- Single-head self-attention core (the part between the qkv and proj 1x1 convs).
 * qkv (B, 3C, N) holds q, k, v as consecutive (C, N) blocks per image.
 * attn (B, N, N) = softmax_j(q_i . k_j / sqrt(C)) is saved for backward.
 * out (B, C, N): out[c, i] = sum_j v[c, j] attn[i, j]. */
void attention_forward(float *out, float *attn, const float *qkv, int B, int C, int N,
                       Workspace *ws);
void attention_backward(float *dqkv, const float *dout, const float *qkv, const float *attn,
                        int B, int C, int N, Workspace *ws);

/* ---- Embedding lookup: y (B, E) = table[idx[b]] (table is (rows, E)). */
void embedding_forward(float *y, const float *table, const int64_t *idx, int B, int E);
void embedding_backward(float *dtable, const float *dy, const int64_t *idx, int B, int E);

/* ---- Sinusoidal timestep embedding (no parameters, no backward):
 * y (B, dim) = [sin(t * f_j), cos(t * f_j)], f_j = exp(-ln(10000) j / (dim/2)). */
void timestep_embedding(float *y, const int64_t *t, int B, int dim);

/* ---- Mean squared error over n values. Returns mean((pred - target)^2);
 * backward: dpred += scale * 2 (pred - target) / n. */
float mse_forward(const float *pred, const float *target, size_t n);
void mse_backward(float *dpred, const float *pred, const float *target, size_t n, float scale);

/* ---- Small vector helpers used by layers and optimisers. */
void vec_add(float *y, const float *x, size_t n);             /* y += x */
void vec_axpy(float *y, float a, const float *x, size_t n);   /* y += a x */
void vec_zero(float *y, size_t n);
double vec_sum_sq(const float *x, size_t n);                  /* in double */

#endif

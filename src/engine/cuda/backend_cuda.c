/* The CUDA backend's entry in the engine seam: engine_cuda_create and the
 * EngineOps table, each entry forwarding to the cu_* function of the same name
 * (the .cu files beside this one) with the backend's CudaEngine. Compiled only
 * in a -DD2C_CUDA=ON build (otherwise src/engine/cuda_stub.c supplies
 * engine_cuda_create). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/status.h"
#include "engine/backend.h"
#include "engine/cuda/cuda_engine.h"

#define CU(e) ((CudaEngine *)(e)->impl)

/* Every op but memory management runs through the profiler (profile.cu): one
 * branch each unless D2C_CUDA_PROFILE=1. */
#define PROFILED(e, label, call)                                                                                       \
    do {                                                                                                               \
        const int prof_slot_ = cu_prof_begin(CU(e));                                                                   \
        call;                                                                                                          \
        if (prof_slot_ >= 0) cu_prof_end(CU(e), prof_slot_, (label));                                                  \
    } while (0)

/* "conv3x3/2 32->64 28x28 fwd": a convolution's profile label */
static const char *conv_label(char *buf, size_t cap, ConvShape s, const char *dir) {
    snprintf(buf, cap, "conv%dx%d/%d %d->%d %dx%d %s", s.k, s.k, s.stride, s.Cin, s.Cout, s.H, s.W, dir);
    return buf;
}

/* "linear 128->64 B=256 fwd": a label by shape, so that each shape's first call (which
 * loads its kernels) is kept apart from the steady state */
static const char *shape_label(char *buf, size_t cap, const char *op, int in, int out, int B, const char *dir) {
    snprintf(buf, cap, "%s %d->%d B=%d %s", op, in, out, B, dir);
    return buf;
}

static void op_destroy(Engine *e) {
    if (!e) return;
    cu_destroy(CU(e));
    free(e);
}

/* ---- memory */
static void *op_alloc(Engine *e, size_t bytes) { return cu_alloc(CU(e), bytes); }
static void op_free(Engine *e, void *p) { cu_free(CU(e), p); }
static void *op_host_alloc(Engine *e, size_t bytes) { return cu_host_alloc(CU(e), bytes); }
static void op_host_free(Engine *e, void *p) { cu_host_free(CU(e), p); }
static void op_upload(Engine *e, void *dst, const void *src, size_t bytes) {
    PROFILED(e, "upload", cu_upload(CU(e), dst, src, bytes));
}
static void op_download(Engine *e, void *dst, const void *src, size_t bytes) {
    PROFILED(e, "download", cu_download(CU(e), dst, src, bytes));
}
static void op_copy(Engine *e, void *dst, const void *src, size_t bytes) {
    PROFILED(e, "copy", cu_copy(CU(e), dst, src, bytes));
}
static void op_memzero(Engine *e, void *dst, size_t bytes) { PROFILED(e, "memzero", cu_memzero(CU(e), dst, bytes)); }
static int op_sync(Engine *e) { return cu_sync(CU(e)); }

/* ---- layers */
static void op_conv2d_forward(Engine *e, float *y, const float *x, const float *w, const float *bias, ConvShape s) {
    char label[64];
    const int slot = cu_prof_begin(CU(e));
    cu_conv2d_forward(CU(e), y, x, w, bias, s);
    if (slot >= 0) cu_prof_end(CU(e), slot, conv_label(label, sizeof label, s, "fwd"));
}
static void op_conv2d_backward(Engine *e, float *dx, float *dw, float *dbias, const float *dy, const float *x,
                               const float *w, ConvShape s) {
    char label[64];
    const int slot = cu_prof_begin(CU(e));
    cu_conv2d_backward(CU(e), dx, dw, dbias, dy, x, w, s);
    if (slot >= 0) cu_prof_end(CU(e), slot, conv_label(label, sizeof label, s, dx ? "bwd" : "bwd (no dx)"));
}
static void op_linear_forward(Engine *e, float *y, const float *x, const float *w, const float *bias, int B, int in,
                              int out) {
    char label[64];
    PROFILED(e, shape_label(label, sizeof label, "linear", in, out, B, "fwd"), cu_linear_forward(CU(e), y, x, w, bias, B, in, out));
}
static void op_linear_backward(Engine *e, float *dx, float *dw, float *dbias, const float *dy, const float *x,
                               const float *w, int B, int in, int out) {
    char label[64];
    PROFILED(e, shape_label(label, sizeof label, "linear", in, out, B, "bwd"),
             cu_linear_backward(CU(e), dx, dw, dbias, dy, x, w, B, in, out));
}
static void op_groupnorm_forward(Engine *e, float *y, float *mean, float *rstd, const float *x, const float *gamma,
                                 const float *beta, int B, int C, int N, int G, int silu) {
    PROFILED(e, "groupnorm_forward", cu_groupnorm_forward(CU(e), y, mean, rstd, x, gamma, beta, B, C, N, G, silu));
}
static void op_groupnorm_backward(Engine *e, float *dx, float *dgamma, float *dbeta, const float *dy, const float *x,
                                  const float *mean, const float *rstd, const float *gamma, const float *beta, int B,
                                  int C, int N, int G, int silu) {
    PROFILED(e, "groupnorm_backward",
             cu_groupnorm_backward(CU(e), dx, dgamma, dbeta, dy, x, mean, rstd, gamma, beta, B, C, N, G, silu));
}
static void op_silu_forward(Engine *e, float *y, const float *x, size_t n) {
    PROFILED(e, "silu_forward", cu_silu_forward(CU(e), y, x, n));
}
static void op_silu_backward(Engine *e, float *dx, const float *dy, const float *x, size_t n) {
    PROFILED(e, "silu_backward", cu_silu_backward(CU(e), dx, dy, x, n));
}
static void op_bias_forward(Engine *e, float *h, const float *bias, int B, int C, int N) {
    PROFILED(e, "bias_forward", cu_add_channel_bias_forward(CU(e), h, bias, B, C, N));
}
static void op_bias_backward(Engine *e, float *dbias, const float *dh, int B, int C, int N) {
    PROFILED(e, "bias_backward", cu_add_channel_bias_backward(CU(e), dbias, dh, B, C, N));
}
static void op_upsample_forward(Engine *e, float *y, const float *x, int B, int C, int H, int W) {
    PROFILED(e, "upsample_forward", cu_upsample2x_forward(CU(e), y, x, B, C, H, W));
}
static void op_upsample_backward(Engine *e, float *dx, const float *dy, int B, int C, int H, int W) {
    PROFILED(e, "upsample_backward", cu_upsample2x_backward(CU(e), dx, dy, B, C, H, W));
}
static void op_concat_forward(Engine *e, float *y, const float *a, const float *b, int B, int Ca, int Cb, int N) {
    PROFILED(e, "concat_forward", cu_concat_channels_forward(CU(e), y, a, b, B, Ca, Cb, N));
}
static void op_concat_backward(Engine *e, float *da, float *db, const float *dy, int B, int Ca, int Cb, int N) {
    PROFILED(e, "concat_backward", cu_concat_channels_backward(CU(e), da, db, dy, B, Ca, Cb, N));
}
static void op_attention_forward(Engine *e, float *out, float *attn, const float *qkv, int B, int C, int N) {
    PROFILED(e, "attention_forward", cu_attention_forward(CU(e), out, attn, qkv, B, C, N));
}
static void op_attention_backward(Engine *e, float *dqkv, const float *dout, const float *qkv, const float *attn, int B,
                                  int C, int N) {
    PROFILED(e, "attention_backward", cu_attention_backward(CU(e), dqkv, dout, qkv, attn, B, C, N));
}
static void op_embedding_forward(Engine *e, float *y, const float *table, const int64_t *idx, int B, int E) {
    PROFILED(e, "embedding_forward", cu_embedding_forward(CU(e), y, table, idx, B, E));
}
static void op_embedding_backward(Engine *e, float *dtable, const float *dy, const int64_t *idx, int B, int E) {
    PROFILED(e, "embedding_backward", cu_embedding_backward(CU(e), dtable, dy, idx, B, E));
}
static void op_timestep_embedding(Engine *e, float *y, const int64_t *t, int B, int dim) {
    PROFILED(e, "timestep_embedding", cu_timestep_embedding(CU(e), y, t, B, dim));
}
static float op_mse_forward(Engine *e, const float *pred, const float *target, size_t n) {
    float r;
    PROFILED(e, "mse_forward", r = cu_mse_forward(CU(e), pred, target, n));
    return r;
}
static void op_mse_backward(Engine *e, float *dpred, const float *pred, const float *target, size_t n, float scale) {
    PROFILED(e, "mse_backward", cu_mse_backward(CU(e), dpred, pred, target, n, scale));
}
static void op_softmax_rows(Engine *e, float *probs, const float *logits, int B, int K) {
    PROFILED(e, "softmax_rows", cu_softmax_rows(CU(e), probs, logits, B, K));
}

/* ---- flat buffers */
static void op_add(Engine *e, float *y, const float *x, size_t n) { PROFILED(e, "add", cu_axpy(CU(e), y, 1.0f, x, n)); }
static void op_axpy(Engine *e, float *y, float a, const float *x, size_t n) {
    PROFILED(e, "axpy", cu_axpy(CU(e), y, a, x, n));
}
static void op_axpby(Engine *e, float *y, float a, const float *x, float b, size_t n) {
    PROFILED(e, "axpby", cu_axpby(CU(e), y, a, x, b, n));
}
static void op_waxpy(Engine *e, float *w, float a, const float *x, const float *y, size_t n) {
    PROFILED(e, "waxpy", cu_waxpy(CU(e), w, a, x, y, n));
}
static void op_scale(Engine *e, float *y, float a, size_t n) { PROFILED(e, "scale", cu_scale(CU(e), y, a, n)); }
static void op_clamp(Engine *e, float *y, float lo, float hi, size_t n) {
    PROFILED(e, "clamp", cu_clamp(CU(e), y, lo, hi, n));
}
static double op_sum_sq(Engine *e, const float *x, size_t n) {
    double r;
    PROFILED(e, "sum_sq", r = cu_sum_sq(CU(e), x, n));
    return r;
}
/* the CPU's rule (engine/cpu/flat.c): the norm in double, the scale applied on
 * the device */
static double op_clip_grad_norm(Engine *e, float *g, size_t n, double max_norm) {
    double norm;
    PROFILED(e, "clip_grad_norm", norm = sqrt(cu_sum_sq(CU(e), g, n));
             if (max_norm > 0 && norm > max_norm) cu_scale(CU(e), g, (float)(max_norm / (norm + 1e-6)), n));
    return norm;
}
static void op_clip_grad_norm_to(Engine *e, float *g, size_t n, double max_norm, double *norm) {
    PROFILED(e, "clip_grad_norm", cu_clip_grad_norm_to(CU(e), g, n, max_norm, norm));
}
static void op_mse_forward_to(Engine *e, double *out, const float *pred, const float *target, size_t n) {
    PROFILED(e, "mse_forward", cu_mse_forward_to(CU(e), out, pred, target, n));
}
static void op_adam_step(Engine *e, float *p, const float *g, float *m, float *v, size_t n, float b1, float b2,
                         float eps, const float *coef) {
    PROFILED(e, "adam_step", cu_adam_step(CU(e), p, g, m, v, n, b1, b2, eps, coef));
}
static void op_ema_update(Engine *e, float *ema, const float *p, const float *decay, size_t n) {
    PROFILED(e, "ema_update", cu_ema_update(CU(e), ema, p, decay, n));
}
static void op_q_sample(Engine *e, float *xt, const float *x0, const float *noise, const int64_t *t,
                        const float *alpha_bar, int B, size_t D) {
    PROFILED(e, "q_sample", cu_q_sample(CU(e), xt, x0, noise, t, alpha_bar, B, D));
}
static void op_q_sample_backward(Engine *e, float *dx0, const float *dxt, const int64_t *t, const float *alpha_bar,
                                 int B, size_t D) {
    PROFILED(e, "q_sample_backward", cu_q_sample_backward(CU(e), dx0, dxt, t, alpha_bar, B, D));
}
static void op_guidance(Engine *e, float *eps, const float *ec, const float *en, float g, size_t n) {
    PROFILED(e, "guidance", cu_guidance(CU(e), eps, ec, en, g, n));
}
static void op_ddim_step(Engine *e, float *x, const float *eps, size_t n, float c_noise, float c_sig, float c_prev,
                         float c_prev_noise) {
    PROFILED(e, "ddim_step", cu_ddim_step(CU(e), x, eps, n, c_noise, c_sig, c_prev, c_prev_noise));
}
static void op_ddpm_step(Engine *e, float *x, const float *eps, const float *z, size_t n, float c_eps, float c_scale,
                         float sigma) {
    PROFILED(e, "ddpm_step", cu_ddpm_step(CU(e), x, eps, z, n, c_eps, c_scale, sigma));
}
static double op_layerwise_distance(Engine *e, const EngineRows *rows, int nrows, const float *a, const float *b,
                                    float *va, float *vb, size_t n) {
    double r;
    PROFILED(e, "layerwise_distance", r = cu_layerwise_distance(CU(e), rows, nrows, a, b, va, vb, n));
    return r;
}
static void op_layerwise_distance_to(Engine *e, const EngineRows *rows, int nrows, const float *a, const float *b,
                                     float *va, float *vb, size_t n, double *out) {
    PROFILED(e, "layerwise_distance", cu_layerwise_distance_to(CU(e), rows, nrows, a, b, va, vb, n, out));
}
static void op_fd_coef(Engine *e, float *coef, const float *v, size_t n, double base) {
    PROFILED(e, "fd_coef", cu_fd_coef(CU(e), coef, v, n, base));
}
static void op_waxpy_at(Engine *e, float *w, const float *a, float sign, const float *x, const float *y, size_t n) {
    PROFILED(e, "waxpy", cu_waxpy_at(CU(e), w, a, sign, x, y, n));
}
static void op_mse_backward_div(Engine *e, float *dpred, const float *pred, const float *target, size_t n, float mult,
                                const float *div) {
    PROFILED(e, "mse_backward", cu_mse_backward_div(CU(e), dpred, pred, target, n, mult, div));
}
static void op_feature_gap(Engine *e, double *sq, float *grad, const float *fr, const float *fs, int C, float coef,
                           float denom) {
    PROFILED(e, "feature_gap", cu_feature_gap(CU(e), sq, grad, fr, fs, C, coef, denom));
}
static void op_channel_mean(Engine *e, float *feat, const float *x, int B, int C, size_t N) {
    PROFILED(e, "channel_mean", cu_channel_mean(CU(e), feat, x, B, C, N));
}
static void op_channel_fill(Engine *e, float *x, const float *vals, int B, int C, size_t N) {
    PROFILED(e, "channel_fill", cu_channel_fill(CU(e), x, vals, B, C, N));
}

static void op_fill_normal(Engine *e, float *x, size_t n, const Rng *r) {
    PROFILED(e, "fill_normal", cu_fill_normal(CU(e), x, n, r));
}
static void op_row_mean(Engine *e, float *y, const float *x, size_t rows, size_t N) {
    PROFILED(e, "row_mean", cu_row_mean(CU(e), y, x, rows, N));
}
static void op_row_mean_backward(Engine *e, float *dx, const float *dy, size_t rows, size_t N) {
    PROFILED(e, "row_mean_backward", cu_row_mean_backward(CU(e), dx, dy, rows, N));
}

/* not profiled as one op: the ops fn issues are (graphs are off while profiling) */
static void op_graph_run(Engine *e, const uint64_t *key, int nkey, void (*fn)(void *ctx), void *ctx) {
    cu_graph_run(CU(e), key, nkey, fn, ctx);
}
static void op_graph_reset(Engine *e) { cu_graph_reset(CU(e)); }

static const EngineOps CUDA_OPS = {
    .destroy = op_destroy,
    .alloc = op_alloc,
    .free = op_free,
    .host_alloc = op_host_alloc,
    .host_free = op_host_free,
    .upload = op_upload,
    .download = op_download,
    .copy = op_copy,
    .memzero = op_memzero,
    .sync = op_sync,
    .conv2d_forward = op_conv2d_forward,
    .conv2d_backward = op_conv2d_backward,
    .linear_forward = op_linear_forward,
    .linear_backward = op_linear_backward,
    .groupnorm_forward = op_groupnorm_forward,
    .groupnorm_backward = op_groupnorm_backward,
    .silu_forward = op_silu_forward,
    .silu_backward = op_silu_backward,
    .add_channel_bias_forward = op_bias_forward,
    .add_channel_bias_backward = op_bias_backward,
    .upsample2x_forward = op_upsample_forward,
    .upsample2x_backward = op_upsample_backward,
    .concat_channels_forward = op_concat_forward,
    .concat_channels_backward = op_concat_backward,
    .attention_forward = op_attention_forward,
    .attention_backward = op_attention_backward,
    .embedding_forward = op_embedding_forward,
    .embedding_backward = op_embedding_backward,
    .timestep_embedding = op_timestep_embedding,
    .mse_forward = op_mse_forward,
    .mse_backward = op_mse_backward,
    .softmax_rows = op_softmax_rows,
    .add = op_add,
    .axpy = op_axpy,
    .axpby = op_axpby,
    .waxpy = op_waxpy,
    .scale = op_scale,
    .clamp = op_clamp,
    .sum_sq = op_sum_sq,
    .clip_grad_norm = op_clip_grad_norm,
    .clip_grad_norm_to = op_clip_grad_norm_to,
    .mse_forward_to = op_mse_forward_to,
    .adam_step = op_adam_step,
    .ema_update = op_ema_update,
    .q_sample = op_q_sample,
    .q_sample_backward = op_q_sample_backward,
    .guidance = op_guidance,
    .ddim_step = op_ddim_step,
    .ddpm_step = op_ddpm_step,
    .layerwise_distance = op_layerwise_distance,
    .layerwise_distance_to = op_layerwise_distance_to,
    .fd_coef = op_fd_coef,
    .waxpy_at = op_waxpy_at,
    .mse_backward_div = op_mse_backward_div,
    .feature_gap = op_feature_gap,
    .channel_mean = op_channel_mean,
    .fill_normal = op_fill_normal,
    .channel_fill = op_channel_fill,
    .row_mean = op_row_mean,
    .row_mean_backward = op_row_mean_backward,
    .graph_run = op_graph_run,
    .graph_reset = op_graph_reset,
};

int engine_cuda_create(Engine **out) {
    *out = NULL;
    CudaEngine *ce = NULL;
    D2C_TRY(cu_create(&ce));
    Engine *e = calloc(1, sizeof *e);
    if (!e) {
        cu_destroy(ce);
        return d2c_error(D2C_ERR_FAIL, "cuda: out of host memory");
    }
    e->ops = &CUDA_OPS;
    e->device = ENGINE_CUDA;
    e->name = "cuda";
    e->host_memory = 0;
    e->impl = ce;
    e->peak_gflops = cu_peak_gflops(ce);
    *out = e;
    return D2C_OK;
}

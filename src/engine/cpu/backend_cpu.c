/* The CPU backend: engine/backend.h's table filled with the kernels of engine/cpu
 * (OpenBLAS GEMMs, OpenMP loops). Device memory is host memory, so upload, download and
 * copy are memcpy; the instance's private state is the kernels' scratch Workspace. */
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "core/util.h"
#include "engine/backend.h"
#include "engine/cpu/flat.h"
#include "engine/cpu/kernels.h"

static Workspace *WS(Engine *e) { return (Workspace *)e->impl; }

static void cpu_destroy(Engine *e) {
    workspace_free(WS(e));
    free(e->impl);
    free(e);
}

/* 64-byte aligned, like the arenas the kernels were written for */
static void *cpu_alloc(Engine *e, size_t bytes) {
    void *p = NULL;
    size_t rounded = (bytes + 63) & ~(size_t)63;
    if (rounded < bytes || posix_memalign(&p, 64, rounded ? rounded : 64) != 0) return NULL;
    return p;
}
static void cpu_free(Engine *e, void *p) { free(p); }
static void *cpu_host_alloc(Engine *e, size_t bytes) { return cpu_alloc(e, bytes); }
static void cpu_host_free(Engine *e, void *p) { free(p); }
static void cpu_copy(Engine *e, void *dst, const void *src, size_t bytes) {
    if (dst != src && bytes) memmove(dst, src, bytes);
}
static void cpu_download(Engine *e, void *dst, const void *src, size_t bytes) { cpu_copy(e, dst, src, bytes); }
static void cpu_memzero(Engine *e, void *dst, size_t bytes) {
    if (bytes) memset(dst, 0, bytes);
}
static int cpu_sync(Engine *e) { return D2C_OK; }

static void cpu_conv2d_forward(Engine *e, float *y, const float *x, const float *w, const float *bias, ConvShape s) {
    conv2d_forward(y, x, w, bias, s, WS(e));
}
static void cpu_conv2d_backward(Engine *e, float *dx, float *dw, float *dbias, const float *dy, const float *x,
                                const float *w, ConvShape s) {
    conv2d_backward(dx, dw, dbias, dy, x, w, s, WS(e));
}
static void cpu_linear_forward(Engine *e, float *y, const float *x, const float *w, const float *bias, int B, int in,
                               int out) {
    linear_forward(y, x, w, bias, B, in, out);
}
static void cpu_linear_backward(Engine *e, float *dx, float *dw, float *dbias, const float *dy, const float *x,
                                const float *w, int B, int in, int out) {
    linear_backward(dx, dw, dbias, dy, x, w, B, in, out);
}
static void cpu_groupnorm_forward(Engine *e, float *y, float *mean, float *rstd, const float *x, const float *gamma,
                                  const float *beta, int B, int C, int N, int G, int silu) {
    groupnorm_forward(y, mean, rstd, x, gamma, beta, B, C, N, G, silu);
}
static void cpu_groupnorm_backward(Engine *e, float *dx, float *dgamma, float *dbeta, const float *dy, const float *x,
                                   const float *mean, const float *rstd, const float *gamma, const float *beta, int B,
                                   int C, int N, int G, int silu) {
    groupnorm_backward(dx, dgamma, dbeta, dy, x, mean, rstd, gamma, beta, B, C, N, G, silu);
}
static void cpu_silu_forward(Engine *e, float *y, const float *x, size_t n) { silu_forward(y, x, n); }
static void cpu_silu_backward(Engine *e, float *dx, const float *dy, const float *x, size_t n) {
    silu_backward(dx, dy, x, n);
}
static void cpu_acb_forward(Engine *e, float *h, const float *b, int B, int C, int N) {
    add_channel_bias_forward(h, b, B, C, N);
}
static void cpu_acb_backward(Engine *e, float *db, const float *dh, int B, int C, int N) {
    add_channel_bias_backward(db, dh, B, C, N);
}
static void cpu_up_forward(Engine *e, float *y, const float *x, int B, int C, int H, int W) {
    upsample2x_forward(y, x, B, C, H, W);
}
static void cpu_up_backward(Engine *e, float *dx, const float *dy, int B, int C, int H, int W) {
    upsample2x_backward(dx, dy, B, C, H, W);
}
static void cpu_cat_forward(Engine *e, float *y, const float *a, const float *b, int B, int Ca, int Cb, int N) {
    concat_channels_forward(y, a, b, B, Ca, Cb, N);
}
static void cpu_cat_backward(Engine *e, float *da, float *db, const float *dy, int B, int Ca, int Cb, int N) {
    concat_channels_backward(da, db, dy, B, Ca, Cb, N);
}
static void cpu_attn_forward(Engine *e, float *out, float *attn, const float *qkv, int B, int C, int N) {
    attention_forward(out, attn, qkv, B, C, N, WS(e));
}
static void cpu_attn_backward(Engine *e, float *dqkv, const float *dout, const float *qkv, const float *attn, int B,
                              int C, int N) {
    attention_backward(dqkv, dout, qkv, attn, B, C, N, WS(e));
}
static void cpu_emb_forward(Engine *e, float *y, const float *table, const int64_t *idx, int B, int E) {
    embedding_forward(y, table, idx, B, E);
}
static void cpu_emb_backward(Engine *e, float *dtable, const float *dy, const int64_t *idx, int B, int E) {
    embedding_backward(dtable, dy, idx, B, E);
}
static void cpu_temb(Engine *e, float *y, const int64_t *t, int B, int dim) { timestep_embedding(y, t, B, dim); }
static float cpu_mse_forward(Engine *e, const float *pred, const float *target, size_t n) {
    return mse_forward(pred, target, n);
}
static void cpu_mse_backward(Engine *e, float *dpred, const float *pred, const float *target, size_t n, float scale) {
    mse_backward(dpred, pred, target, n, scale);
}
static void cpu_softmax_rows(Engine *e, float *probs, const float *logits, int B, int K) {
    flat_softmax_rows(probs, logits, B, K);
}

static void cpu_add(Engine *e, float *y, const float *x, size_t n) { vec_add(y, x, n); }
static void cpu_axpy(Engine *e, float *y, float a, const float *x, size_t n) { vec_axpy(y, a, x, n); }
static void cpu_axpby(Engine *e, float *y, float a, const float *x, float b, size_t n) { flat_axpby(y, a, x, b, n); }
static void cpu_waxpy(Engine *e, float *w, float a, const float *x, const float *y, size_t n) {
    flat_waxpy(w, a, x, y, n);
}
static void cpu_scale(Engine *e, float *y, float a, size_t n) { flat_scale(y, a, n); }
static void cpu_clamp(Engine *e, float *y, float lo, float hi, size_t n) { flat_clamp(y, lo, hi, n); }
static double cpu_sum_sq(Engine *e, const float *x, size_t n) { return vec_sum_sq(x, n); }
static double cpu_clip(Engine *e, float *g, size_t n, double max_norm) { return flat_clip_grad_norm(g, n, max_norm); }
static void cpu_adam(Engine *e, float *p, const float *g, float *m, float *v, size_t n, float b1, float b2, float eps,
                     const float *coef) {
    flat_adam_step(p, g, m, v, n, b1, b2, eps, coef[0], coef[1]);
}
static void cpu_ema(Engine *e, float *ema, const float *p, const float *decay, size_t n) {
    flat_ema_update(ema, p, *decay, n);
}
static void cpu_q_sample(Engine *e, float *xt, const float *x0, const float *noise, const int64_t *t,
                         const float *alpha_bar, int B, size_t D) {
    flat_q_sample(xt, x0, noise, t, alpha_bar, B, D);
}
static void cpu_q_sample_backward(Engine *e, float *dx0, const float *dxt, const int64_t *t, const float *alpha_bar,
                                  int B, size_t D) {
    flat_q_sample_backward(dx0, dxt, t, alpha_bar, B, D);
}
static void cpu_guidance(Engine *e, float *eps, const float *ec, const float *en, float g, size_t n) {
    flat_guidance(eps, ec, en, g, n);
}
static void cpu_ddim_step(Engine *e, float *x, const float *eps, size_t n, float c_noise, float c_sig, float c_prev,
                          float c_prev_noise) {
    flat_ddim_step(x, eps, n, c_noise, c_sig, c_prev, c_prev_noise);
}
static void cpu_ddpm_step(Engine *e, float *x, const float *eps, const float *z, size_t n, float c_eps, float c_scale,
                          float sigma) {
    flat_ddpm_step(x, eps, z, n, c_eps, c_scale, sigma);
}
static double cpu_layerwise(Engine *e, const EngineRows *rows, int nrows, const float *a, const float *b, float *va,
                            float *vb, size_t n) {
    return flat_layerwise_distance(rows, nrows, a, b, va, vb, n);
}
static void cpu_layerwise_to(Engine *e, const EngineRows *rows, int nrows, const float *a, const float *b, float *va,
                             float *vb, size_t n, double *out) {
    *out = flat_layerwise_distance(rows, nrows, a, b, va, vb, n);
}
static void cpu_fd_coef(Engine *e, float *coef, const float *v, size_t n, double base) {
    flat_fd_coef(coef, v, n, base);
}
static void cpu_waxpy_at(Engine *e, float *w, const float *a, float sign, const float *x, const float *y, size_t n) {
    flat_waxpy(w, sign * a[0], x, y, n);
}
static void cpu_mse_backward_div(Engine *e, float *dpred, const float *pred, const float *target, size_t n, float mult,
                                 const float *div) {
    mse_backward(dpred, pred, target, n, div[0] != 0 ? mult / div[0] : 0.0f);
}
static void cpu_feature_gap(Engine *e, double *sq, float *grad, const float *fr, const float *fs, int C, float coef,
                            float denom) {
    flat_feature_gap(sq, grad, fr, fs, C, coef, denom);
}
static void cpu_channel_mean(Engine *e, float *feat, const float *x, int B, int C, size_t N) {
    flat_channel_mean(feat, x, B, C, N);
}
static void cpu_channel_fill(Engine *e, float *x, const float *vals, int B, int C, size_t N) {
    flat_channel_fill(x, vals, B, C, N);
}
static void cpu_fill_normal(Engine *e, float *x, size_t n, const Rng *r) {
    Rng copy = *r;
    rng_fill_normal(&copy, x, n);
}
static void cpu_row_mean(Engine *e, float *y, const float *x, size_t rows, size_t N) { flat_row_mean(y, x, rows, N); }
static void cpu_row_mean_backward(Engine *e, float *dx, const float *dy, size_t rows, size_t N) {
    flat_row_mean_backward(dx, dy, rows, N);
}

static void cpu_upsample_conv_forward(Engine *e, float *y, const float *x, const float *w, const float *bias,
                                      ConvShape s, float *scratch) {
    upsample2x_conv2d_forward(y, x, w, bias, s, WS(e)); /* never builds the upsampled tensor */
}

static const EngineOps CPU_OPS = {
    .destroy = cpu_destroy,
    .alloc = cpu_alloc,
    .free = cpu_free,
    .host_alloc = cpu_host_alloc,
    .host_free = cpu_host_free,
    .upload = cpu_copy,
    .download = cpu_download,
    .copy = cpu_copy,
    .memzero = cpu_memzero,
    .sync = cpu_sync,
    .conv2d_forward = cpu_conv2d_forward,
    .conv2d_backward = cpu_conv2d_backward,
    .linear_forward = cpu_linear_forward,
    .linear_backward = cpu_linear_backward,
    .groupnorm_forward = cpu_groupnorm_forward,
    .groupnorm_backward = cpu_groupnorm_backward,
    .silu_forward = cpu_silu_forward,
    .silu_backward = cpu_silu_backward,
    .add_channel_bias_forward = cpu_acb_forward,
    .add_channel_bias_backward = cpu_acb_backward,
    .upsample2x_forward = cpu_up_forward,
    .upsample2x_backward = cpu_up_backward,
    .concat_channels_forward = cpu_cat_forward,
    .concat_channels_backward = cpu_cat_backward,
    .attention_forward = cpu_attn_forward,
    .attention_backward = cpu_attn_backward,
    .embedding_forward = cpu_emb_forward,
    .embedding_backward = cpu_emb_backward,
    .timestep_embedding = cpu_temb,
    .mse_forward = cpu_mse_forward,
    .mse_backward = cpu_mse_backward,
    .softmax_rows = cpu_softmax_rows,
    .add = cpu_add,
    .axpy = cpu_axpy,
    .axpby = cpu_axpby,
    .waxpy = cpu_waxpy,
    .scale = cpu_scale,
    .clamp = cpu_clamp,
    .sum_sq = cpu_sum_sq,
    .clip_grad_norm = cpu_clip,
    .adam_step = cpu_adam,
    .ema_update = cpu_ema,
    .q_sample = cpu_q_sample,
    .q_sample_backward = cpu_q_sample_backward,
    .guidance = cpu_guidance,
    .ddim_step = cpu_ddim_step,
    .ddpm_step = cpu_ddpm_step,
    .layerwise_distance = cpu_layerwise,
    .layerwise_distance_to = cpu_layerwise_to,
    .fd_coef = cpu_fd_coef,
    .waxpy_at = cpu_waxpy_at,
    .mse_backward_div = cpu_mse_backward_div,
    .feature_gap = cpu_feature_gap,
    .channel_mean = cpu_channel_mean,
    .fill_normal = cpu_fill_normal,
    .channel_fill = cpu_channel_fill,
    .row_mean = cpu_row_mean,
    .row_mean_backward = cpu_row_mean_backward,
    .upsample2x_conv2d_forward = cpu_upsample_conv_forward,
};

int engine_cpu_create(Engine **out) {
    Engine *e = xcalloc(1, sizeof *e);
    e->ops = &CPU_OPS;
    e->device = ENGINE_CPU;
    e->name = "cpu";
    e->host_memory = 1;
    e->impl = xcalloc(1, sizeof(Workspace));
    *out = e;
    return D2C_OK;
}

/* The engine seam: one table of operations (EngineOps) that every network, optimiser,
 * diffusion and condensation loop runs through, and the backend instance (Engine) that
 * carries it, chosen at run time (--device cpu | cuda). No graph machinery: callers hold
 * plain device buffers (float * / int64_t *) from engine_alloc and call the ops in order,
 * as llm.c does; the split between backends is ggml's.
 *
 * Memory. A "device pointer" is one returned by ops->alloc (on the CPU backend it is host
 * memory; on CUDA it is GPU memory). Every pointer argument of a layer or flat-buffer op is
 * a device pointer unless the comment says "host". Code above the engine never
 * dereferences a device pointer: it uploads inputs and downloads what the host needs
 * (a loss to log, weights to save). Host buffers that are uploaded often (batches, noise)
 * may come from host_alloc (pinned memory on CUDA; plain malloc on the CPU).
 *
 * Ordering. Ops run in call order on one stream; upload and download return when the
 * host side may be reused / read (download synchronises); ops returning a host value
 * (mse_forward, sum_sq, clip_grad_norm, layerwise_distance) synchronise too (the _to
 * forms of mse_forward and clip_grad_norm do not). sync waits
 * for everything queued and reports a backend's late failure. Index arrays (t, labels)
 * are small HOST arrays passed to the ops that use them.
 * An Engine is used by one host thread at a time.
 *
 * Layer ops mirror src/engine/cpu/kernels.h argument for argument with a leading
 * Engine * (the optional fused ops at the end add a scratch buffer for their default);
 * their conventions hold for every backend: forward overwrites its outputs,
 * backward ACCUMULATES into every gradient it is given (dx += ...), a NULL gradient
 * pointer means "not wanted"; there is no Workspace argument: kernel scratch is the
 * backend's business (the CPU's Workspace lives in its Engine).
 *
 * Random numbers: the counter-based generator of core/rng (Philox + Box-Muller) draws on
 * the host, and the noise is uploaded (matching, condensation, DDPM sampling), except where
 * a whole buffer comes from one fresh stream: fill_normal draws exactly the numbers
 * rng_fill_normal would, on the device (the training noise). So a seed gives the same
 * noise on every backend (CUDA's double-precision log/sin/cos may differ from glibc's in
 * the last bit of a rare value; the CPU entry is rng_fill_normal itself).
 *
 * Backends: the CPU (src/engine/cpu, OpenBLAS + OpenMP) is always built; CUDA
 * (src/engine/cuda) registers through engine_cuda_create, which a build without CUDA
 * supplies as a stub returning D2C_ERR_INPUT (src/engine/cuda_stub.c, compiled only when
 * D2C_CUDA is OFF: a link-time choice, no #ifdef in callers). */
#ifndef D2C_ENGINE_BACKEND_H
#define D2C_ENGINE_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "core/rng.h"

/* the number of alpha_bar values q_sample is given (diffusion/schedule.h D2C_T_STEPS) */
#define ENGINE_T_STEPS 1000

typedef enum { ENGINE_CPU = 0, ENGINE_CUDA = 1, ENGINE_DEVICE_COUNT } EngineDevice;
/* "cpu", "cuda" */
extern const char *const ENGINE_DEVICE_NAMES[ENGINE_DEVICE_COUNT];
/* name -> device; D2C_ERR_INPUT naming the choices otherwise. */
int engine_device_parse(const char *name, EngineDevice *dev);

/* ---- 2-D convolution shape, k in {1, 3}, stride in {1, 2}, padding k/2 (PyTorch Conv2d).
 * x (B, Cin, H, W) -> y (B, Cout, Ho, Wo), Ho = (H + 2*(k/2) - k)/stride + 1. */
typedef struct {
    int B, Cin, H, W, Cout, k, stride;
} ConvShape;
int conv_out_size(int size, int k, int stride);

/* One matrix tensor of a flat parameter buffer for the layer-wise gradient distance:
 * `rows` rows of `cols` floats starting at `offset` (floats). */
typedef struct {
    size_t offset;
    int rows;
    size_t cols;
} EngineRows;

typedef struct Engine Engine;
typedef struct EngineOps EngineOps;

struct Engine {
    const EngineOps *ops;
    EngineDevice device;
    const char *name;   /* "cpu", "cuda" */
    int host_memory;    /* 1: device pointers are host pointers (the CPU), so a caller may
                         * fill a device buffer directly and skip a staging copy; upload and
                         * copy with dst == src are no-ops there */
    void *impl;         /* backend-private state (CPU: Workspace; CUDA: handles, stream) */
    double peak_gflops; /* the device's FP32 peak in GFLOP/s from its clock and lanes (0:
                         * not known; the CPU's is measured instead, bench's sgemm) */
    EngineOps *own_ops; /* engine_complete_ops's copy of the table, if it made one (else NULL) */
};

struct EngineOps {
    void (*destroy)(Engine *e); /* frees impl and e itself */

    /* ---- memory (bytes). alloc returns NULL when the memory is not there (or bytes == 0
     * may return NULL too), setting no message: engine_alloc below adds it; free(NULL) is
     * a no-op. upload: host -> device; download:
     * device -> host (synchronises); copy: device -> device; memzero: device bytes = 0. */
    void *(*alloc)(Engine *e, size_t bytes);
    void (*free)(Engine *e, void *p);
    void *(*host_alloc)(Engine *e, size_t bytes); /* staging host memory (pinned on CUDA) */
    void (*host_free)(Engine *e, void *p);
    void (*upload)(Engine *e, void *dst, const void *src_host, size_t bytes);
    void (*download)(Engine *e, void *dst_host, const void *src, size_t bytes);
    void (*copy)(Engine *e, void *dst, const void *src, size_t bytes);
    void (*memzero)(Engine *e, void *dst, size_t bytes);
    /* waits for everything queued; returns D2C_OK or the status of the backend's first
     * recorded failure (its message set through d2c_error): asynchronous backends fail
     * late, so callers check sync (or download's later sync) at points where they report */
    int (*sync)(Engine *e);

    /* ---- layer ops (kernels.h; shapes there) */
    void (*conv2d_forward)(Engine *e, float *y, const float *x, const float *w, const float *bias, ConvShape s);
    void (*conv2d_backward)(Engine *e, float *dx, float *dw, float *dbias, const float *dy, const float *x,
                            const float *w, ConvShape s);
    void (*linear_forward)(Engine *e, float *y, const float *x, const float *w, const float *bias, int B, int in,
                           int out);
    void (*linear_backward)(Engine *e, float *dx, float *dw, float *dbias, const float *dy, const float *x,
                            const float *w, int B, int in, int out);
    void (*groupnorm_forward)(Engine *e, float *y, float *mean, float *rstd, const float *x, const float *gamma,
                              const float *beta, int B, int C, int N, int G, int silu);
    void (*groupnorm_backward)(Engine *e, float *dx, float *dgamma, float *dbeta, const float *dy, const float *x,
                               const float *mean, const float *rstd, const float *gamma, const float *beta, int B,
                               int C, int N, int G, int silu);
    void (*silu_forward)(Engine *e, float *y, const float *x, size_t n);
    void (*silu_backward)(Engine *e, float *dx, const float *dy, const float *x, size_t n);
    void (*add_channel_bias_forward)(Engine *e, float *h, const float *bias, int B, int C, int N);
    void (*add_channel_bias_backward)(Engine *e, float *dbias, const float *dh, int B, int C, int N);
    void (*upsample2x_forward)(Engine *e, float *y, const float *x, int B, int C, int H, int W);
    void (*upsample2x_backward)(Engine *e, float *dx, const float *dy, int B, int C, int H, int W);
    void (*concat_channels_forward)(Engine *e, float *y, const float *a, const float *b, int B, int Ca, int Cb,
                                    int N);
    void (*concat_channels_backward)(Engine *e, float *da, float *db, const float *dy, int B, int Ca, int Cb,
                                     int N);
    void (*attention_forward)(Engine *e, float *out, float *attn, const float *qkv, int B, int C, int N);
    void (*attention_backward)(Engine *e, float *dqkv, const float *dout, const float *qkv, const float *attn,
                               int B, int C, int N);
    /* idx, t: HOST int64 arrays of B values (the backend uploads them if it needs to) */
    void (*embedding_forward)(Engine *e, float *y, const float *table, const int64_t *idx, int B, int E);
    void (*embedding_backward)(Engine *e, float *dtable, const float *dy, const int64_t *idx, int B, int E);
    void (*timestep_embedding)(Engine *e, float *y, const int64_t *t, int B, int dim);
    /* returns (to the host, synchronising) mean((pred - target)^2), summed in double as
     * kernels.h; backward: dpred += scale * 2 (pred - target) / n */
    float (*mse_forward)(Engine *e, const float *pred, const float *target, size_t n);
    void (*mse_backward)(Engine *e, float *dpred, const float *pred, const float *target, size_t n, float scale);
    /* probs (B, K) = softmax of each row of logits (B, K) */
    void (*softmax_rows)(Engine *e, float *probs, const float *logits, int B, int K);

    /* ---- flat-buffer ops over n floats */
    void (*add)(Engine *e, float *y, const float *x, size_t n);                   /* y += x */
    void (*axpy)(Engine *e, float *y, float a, const float *x, size_t n);         /* y += a x */
    void (*axpby)(Engine *e, float *y, float a, const float *x, float b, size_t n); /* y = a x + b y */
    void (*waxpy)(Engine *e, float *w, float a, const float *x, const float *y, size_t n); /* w = a x + y */
    void (*scale)(Engine *e, float *y, float a, size_t n);                        /* y *= a */
    void (*clamp)(Engine *e, float *y, float lo, float hi, size_t n);             /* y = min(max(y, lo), hi) */
    /* sum of x^2 in double (fixed lanes, as kernels.h vec_sum_sq), returned to the host */
    double (*sum_sq)(Engine *e, const float *x, size_t n);
    /* torch.nn.utils.clip_grad_norm_: norm = sqrt(sum g^2) in double; if max_norm > 0 and
     * norm > max_norm, g *= (float)(max_norm / (norm + 1e-6)). Returns norm (host). */
    double (*clip_grad_norm)(Engine *e, float *g, size_t n, double max_norm);
    /* torch.optim.Adam without weight decay: m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
     * p -= step_size * m / (sqrt(v) / bc2_sqrt + eps), step_size = lr / (1 - b1^t) and
     * bc2_sqrt = sqrt(1 - b2^t) computed by the caller (float) and given in ENGINE memory,
     * coef = [step_size, bc2_sqrt]: the values that change every step are read by the op,
     * not fixed when it is issued, so a replayed record (graph_run) uses the new ones. */
    void (*adam_step)(Engine *e, float *p, const float *g, float *m, float *v, size_t n, float b1, float b2,
                      float eps, const float *coef);
    /* ema = decay ema + (1 - decay) p; decay is one float of ENGINE memory (as adam's coef) */
    void (*ema_update)(Engine *e, float *ema, const float *p, const float *decay, size_t n);
    /* xt (B, D) = ca_b x0 + cn_b noise with ab = alpha_bar[t[b]], ca_b = sqrtf(ab),
     * cn_b = sqrtf(1 - ab) (float); t (B) and alpha_bar are HOST arrays, alpha_bar of
     * ENGINE_T_STEPS values (a schedule's). Backward: dx0 (B, D) += ca_b dxt. */
    void (*q_sample)(Engine *e, float *xt, const float *x0, const float *noise, const int64_t *t,
                     const float *alpha_bar, int B, size_t D);
    void (*q_sample_backward)(Engine *e, float *dx0, const float *dxt, const int64_t *t, const float *alpha_bar,
                              int B, size_t D);
    /* classifier-free guidance: eps = en + g (ec - en) */
    void (*guidance)(Engine *e, float *eps, const float *ec, const float *en, float g, size_t n);
    /* one DDIM step: x = c_prev ((x - c_noise eps) / c_sig) + c_prev_noise eps */
    void (*ddim_step)(Engine *e, float *x, const float *eps, size_t n, float c_noise, float c_sig, float c_prev,
                      float c_prev_noise);
    /* one ancestral DDPM step: x = (x - c_eps eps) c_scale + sigma z; z (n) NULL = zeros */
    void (*ddpm_step)(Engine *e, float *x, const float *eps, const float *z, size_t n, float c_eps, float c_scale,
                      float sigma);
    /* The spec's layer-wise gradient distance over rows (host array of nrows segments of
     * one flat buffer of n floats): sum over rows of 1 - <a,b> / (|a| |b| + 1e-6), each
     * row's sums in double. Where not NULL, va = dD/da and vb = dD/db (device, n floats,
     * zeros outside the rows). Returns the distance to the host (synchronising). */
    double (*layerwise_distance)(Engine *e, const EngineRows *rows, int nrows, const float *a, const float *b,
                                 float *va, float *vb, size_t n);
    /* The same with the distance written to out (device, one double) instead of returned:
     * nothing waits. The terms are added in row order on every backend, so out holds the
     * value layerwise_distance returns. rows: a HOST array the backend may upload. */
    void (*layerwise_distance_to)(Engine *e, const EngineRows *rows, int nrows, const float *a, const float *b,
                                  float *va, float *vb, size_t n, double *out);
    /* The finite-difference step along v, on the device: r = sqrt(sum v^2) (double, as
     * sum_sq); coef[0] = eps = r > 0 ? (float)(base / r) : 0 and coef[1] = 2 eps (coef:
     * device, 2 floats). The ops below read it where it is, so the step needs no read-back. */
    void (*fd_coef)(Engine *e, float *coef, const float *v, size_t n, double base);
    /* w = (sign a[0]) x + y, a: one float of engine memory (waxpy with a device scalar) */
    void (*waxpy_at)(Engine *e, float *w, const float *a, float sign, const float *x, const float *y, size_t n);
    /* mse_backward with scale = div[0] != 0 ? mult / div[0] : 0 (div: one float of engine
     * memory; mult / div[0] in float, as a host caller would compute it) */
    void (*mse_backward_div)(Engine *e, float *dpred, const float *pred, const float *target, size_t n, float mult,
                             const float *div);
    /* The distribution-matching gap of two feature means fr, fs (C floats, device): where
     * sq is not NULL, sq[0] = sum_c ((double)fr[c] - fs[c])^2 in channel order; where grad
     * is not NULL, grad[c] = coef * (fs[c] - fr[c]) / denom (float). sq, grad: device. */
    void (*feature_gap)(Engine *e, double *sq, float *grad, const float *fr, const float *fs, int C, float coef,
                        float denom);
    /* feat (C) = mean of x (B, C, N) over images and positions (summed in double) */
    void (*channel_mean)(Engine *e, float *feat, const float *x, int B, int C, size_t N);
    /* x (n, device) = what rng_fill_normal(&copy, x, n) writes for a copy of *r (host);
     * *r is not advanced. r must be at a pair boundary with an even number of unread words
     * (has_spare == 0, avail even), as a fresh rng_stream() is. */
    void (*fill_normal)(Engine *e, float *x, size_t n, const Rng *r);
    /* x (B, C, N): x[b, c, i] = vals[c] (vals: device, C floats) */
    void (*channel_fill)(Engine *e, float *x, const float *vals, int B, int C, size_t N);
    /* global average pool: y (rows) = mean of each row of x (rows, N), summed in double
     * (the evaluator's pool head); backward OVERWRITES dx (rows, N) = dy[r] / (float)N */
    void (*row_mean)(Engine *e, float *y, const float *x, size_t rows, size_t N);
    void (*row_mean_backward)(Engine *e, float *dx, const float *dy, size_t rows, size_t N);

    /* ---- optional fused ops. A backend may leave these NULL: engine_create then puts in
     * the composition of the entries above that the comment names (engine_complete_ops),
     * so callers never see NULL. A fused entry equals its composition up to float rounding. */
    /* y = conv2d(upsample2x(x)): s is the 3x3 stride-1 conv's shape on the upsampled grid
     * (s.H, s.W even), x (B, Cin, H/2, W/2); scratch (B, Cin, H, W) is device memory the
     * composition (upsample2x_forward into scratch, then conv2d_forward) writes and a fused
     * implementation may leave alone. The CPU's does 4/9 of the multiply-adds. */
    void (*upsample2x_conv2d_forward)(Engine *e, float *y, const float *x, const float *w, const float *bias,
                                      ConvShape s, float *scratch);
    /* mse_forward and clip_grad_norm with their value written to out / norm (device, one
     * double: mse_forward's float result as a double; the norm) instead of returned, so
     * the host need not wait for it; a later download reads it. Same numbers as the
     * synchronous entries. The composition: the synchronous entry, then an upload. */
    void (*mse_forward_to)(Engine *e, double *out, const float *pred, const float *target, size_t n);
    void (*clip_grad_norm_to)(Engine *e, float *g, size_t n, double max_norm, double *norm);
    /* graph_run: runs fn(ctx), which issues ops on e (and may do host work), and returns once
     * they are queued. A backend may record the ops of a key's first calls and replay the
     * record for later calls with the same key instead of calling fn (CUDA graphs with
     * D2C_CUDA_GRAPH=1), so: the key (nkey words, at most 24) must name every pointer, size
     * and host array the ops depend on, the same key must mean the same ops on the same
     * buffers, host arrays given to uploading ops (t, idx, rows) must stay at the addresses
     * the key names (their values may change from call to call, not while fn runs), fn's
     * host work must not matter on a replay, and fn must neither synchronise nor return host
     * values (no mse_forward, sum_sq, layerwise_distance, download). graph_reset forgets every record (call it before freeing buffers a
     * key names). The composition: fn(ctx); nothing. */
    void (*graph_run)(Engine *e, const uint64_t *key, int nkey, void (*fn)(void *ctx), void *ctx);
    void (*graph_reset)(Engine *e);
};

/* The backend for dev: D2C_ERR_INPUT with a clear message when it is not built in or no
 * such device is present. engine_destroy(NULL) is a no-op. */
int engine_create(Engine **out, EngineDevice dev);
void engine_destroy(Engine *e);
/* Points e->ops at a copy of its table with every optional entry the backend left NULL set
 * to its composition (a no-op when none is NULL; engine_destroy frees the copy).
 * engine_create calls it; a table put together by hand (tests) calls it itself. */
void engine_complete_ops(Engine *e);
/* The process-wide CPU engine (created on first use, never freed): for code paths and
 * tests that are given no engine. */
Engine *engine_cpu_default(void);
/* The backends' constructors. engine_cuda_create lives in src/engine/cuda (a CUDA build)
 * or in src/engine/cuda_stub.c (every other build: D2C_ERR_INPUT, "built without CUDA"). */
int engine_cpu_create(Engine **out);
int engine_cuda_create(Engine **out);

/* Threads of the CPU backend (OpenMP and OpenBLAS); get: the current count. */
void engine_set_num_threads(int n);
int engine_get_num_threads(void);

/* ---- allocation helpers over the table */
/* *out = device buffer of bytes; D2C_ERR_FAIL naming the size and device if not there. */
int engine_alloc(Engine *e, void **out, size_t bytes);
/* The same for n floats, zeroed; fatal (d2c_fatal) when the memory is not there, as
 * xmalloc is (for buffers whose size the program chose, not the input). */
float *engine_xalloc_floats(Engine *e, size_t n);
/* The same without the zeroing, for scratch that is always written before it is read (its
 * pages then stay untouched until used, as malloc's do). */
float *engine_xalloc_floats_raw(Engine *e, size_t n);
int64_t *engine_xalloc_i64(Engine *e, size_t n);
void engine_free(Engine *e, void *p);
/* memzero of n floats */
void engine_zero_floats(Engine *e, float *p, size_t n);
/* A host buffer of n floats as the engine sees it: the host pointer itself on an engine of
 * host memory, else uploaded into mirror (device, n floats) and mirror returned. */
const float *engine_view(Engine *e, float *mirror, const float *host, size_t n);
/* upload / download n floats */
void engine_upload_floats(Engine *e, float *dst, const float *src_host, size_t n);
void engine_download_floats(Engine *e, float *dst_host, const float *src, size_t n);

#endif

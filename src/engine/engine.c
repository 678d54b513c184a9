/* The backend-independent half of the engine seam: device names, engine_create's choice
 * of backend (and the compositions standing in for optional entries it leaves NULL), the
 * process-wide CPU engine and the allocation helpers over the table. */
#include "engine/backend.h"

#include <pthread.h>
#include <stdlib.h>

#include "core/util.h"

const char *const ENGINE_DEVICE_NAMES[ENGINE_DEVICE_COUNT] = {[ENGINE_CPU] = "cpu", [ENGINE_CUDA] = "cuda"};

int engine_device_parse(const char *name, EngineDevice *dev) {
    int k;
    D2C_TRY(name_parse("device", ENGINE_DEVICE_NAMES, ENGINE_DEVICE_COUNT, name, &k));
    *dev = (EngineDevice)k;
    return D2C_OK;
}

/* ---------------------------------------------------------------- optional entries */

/* The compositions that stand in for the optional fused entries a backend leaves NULL. */
static void composed_upsample2x_conv2d_forward(Engine *e, float *y, const float *x, const float *w,
                                               const float *bias, ConvShape s, float *scratch) {
    e->ops->upsample2x_forward(e, scratch, x, s.B, s.Cin, s.H / 2, s.W / 2);
    e->ops->conv2d_forward(e, y, scratch, w, bias, s);
}

static void composed_graph_run(Engine *e, const uint64_t *key, int nkey, void (*fn)(void *ctx), void *ctx) {
    (void)e, (void)key, (void)nkey;
    fn(ctx);
}

static void composed_graph_reset(Engine *e) { (void)e; }

static void composed_mse_forward_to(Engine *e, double *out, const float *pred, const float *target, size_t n) {
    const double v = e->ops->mse_forward(e, pred, target, n);
    e->ops->upload(e, out, &v, sizeof v);
}

static void composed_clip_grad_norm_to(Engine *e, float *g, size_t n, double max_norm, double *norm) {
    const double v = e->ops->clip_grad_norm(e, g, n, max_norm);
    e->ops->upload(e, norm, &v, sizeof v);
}

void engine_complete_ops(Engine *e) {
    if (e->ops->upsample2x_conv2d_forward && e->ops->graph_run && e->ops->graph_reset && e->ops->mse_forward_to &&
        e->ops->clip_grad_norm_to)
        return;
    EngineOps *full = xmalloc(sizeof *full);
    *full = *e->ops;
    if (!full->upsample2x_conv2d_forward) full->upsample2x_conv2d_forward = composed_upsample2x_conv2d_forward;
    if (!full->graph_run) full->graph_run = composed_graph_run;
    if (!full->graph_reset) full->graph_reset = composed_graph_reset;
    if (!full->mse_forward_to) full->mse_forward_to = composed_mse_forward_to;
    if (!full->clip_grad_norm_to) full->clip_grad_norm_to = composed_clip_grad_norm_to;
    e->ops = full;
    e->own_ops = full;
}

static int create_backend(Engine **out, EngineDevice dev) {
    switch (dev) {
    case ENGINE_CPU: return engine_cpu_create(out);
    case ENGINE_CUDA: return engine_cuda_create(out);
    case ENGINE_DEVICE_COUNT: break;
    }
    return d2c_error(D2C_ERR_INPUT, "unknown engine device %d", (int)dev);
}

int engine_create(Engine **out, EngineDevice dev) {
    *out = NULL;
    int st = create_backend(out, dev);
    if (st == D2C_OK) engine_complete_ops(*out);
    return st;
}

void engine_destroy(Engine *e) {
    if (!e) return;
    EngineOps *own = e->own_ops;
    e->ops->destroy(e); /* frees e */
    free(own);
}

static Engine *g_cpu;
static pthread_once_t g_cpu_once = PTHREAD_ONCE_INIT;

static void cpu_default_init(void) {
    if (engine_create(&g_cpu, ENGINE_CPU) != D2C_OK) d2c_fatal("cannot create the CPU engine");
}

Engine *engine_cpu_default(void) {
    pthread_once(&g_cpu_once, cpu_default_init);
    return g_cpu;
}

int engine_alloc(Engine *e, void **out, size_t bytes) {
    *out = bytes ? e->ops->alloc(e, bytes) : NULL;
    if (bytes && !*out)
        return d2c_error(D2C_ERR_FAIL, "out of %s memory for %zu bytes (%.1f MiB)", e->name, bytes,
                         (double)bytes / (1024.0 * 1024.0));
    return D2C_OK;
}

static void *xalloc_raw(Engine *e, size_t bytes) {
    if (!bytes) return NULL;
    void *p = e->ops->alloc(e, bytes);
    if (!p) d2c_fatal("out of %s memory for %zu bytes", e->name, bytes);
    return p;
}

static void *xalloc_zeroed(Engine *e, size_t bytes) {
    void *p = xalloc_raw(e, bytes);
    if (p) e->ops->memzero(e, p, bytes);
    return p;
}

float *engine_xalloc_floats_raw(Engine *e, size_t n) {
    if (n > SIZE_MAX / sizeof(float)) d2c_fatal("engine allocation of %zu floats overflows", n);
    return xalloc_raw(e, n * sizeof(float));
}

float *engine_xalloc_floats(Engine *e, size_t n) {
    if (n > SIZE_MAX / sizeof(float)) d2c_fatal("engine allocation of %zu floats overflows", n);
    return xalloc_zeroed(e, n * sizeof(float));
}

int64_t *engine_xalloc_i64(Engine *e, size_t n) {
    if (n > SIZE_MAX / sizeof(int64_t)) d2c_fatal("engine allocation of %zu int64 overflows", n);
    return xalloc_zeroed(e, n * sizeof(int64_t));
}

void engine_free(Engine *e, void *p) {
    if (p) e->ops->free(e, p);
}

void engine_upload_floats(Engine *e, float *dst, const float *src_host, size_t n) {
    if (n) e->ops->upload(e, dst, src_host, n * sizeof(float));
}

void engine_download_floats(Engine *e, float *dst_host, const float *src, size_t n) {
    if (n) e->ops->download(e, dst_host, src, n * sizeof(float));
}

void engine_zero_floats(Engine *e, float *p, size_t n) {
    if (n) e->ops->memzero(e, p, n * sizeof(float));
}

const float *engine_view(Engine *e, float *mirror, const float *host, size_t n) {
    if (e->host_memory) return host;
    engine_upload_floats(e, mirror, host, n);
    return mirror;
}

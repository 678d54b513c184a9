/* The table's graph_run on the GPU (on by default; D2C_CUDA_GRAPH=0 turns it off): CUDA graphs of a
 * steady-state sequence of ops, e.g. the sampler's network forward (model/unet.c).
 *
 * Per key (at most SLOTS keys; the oldest is dropped): the first call runs fn eagerly
 * (warm-up: scratch growth, the convolution choices, lazy loading); the second runs it
 * eagerly and records its uploads (host address, bytes) and gives the key a device buffer
 * `in` for them; the third uploads the host arrays into `in` (ordinary staged uploads),
 * captures fn on the engine's stream, each upload captured as a device-to-device copy from
 * `in`, instantiates the graph and launches it. Later calls upload the recorded host arrays
 * into `in` again (their current values) and launch the graph: fn is not called. Stream
 * order puts each upload before the launch that reads it, and the next upload after it.
 *
 * Any failure while capturing or instantiating (an op that synchronises or allocates, a
 * different upload sequence, a library that cannot be captured) ends the capture, clears
 * the error, marks the key eager-only and runs fn eagerly (the first such failure of an engine
 * prints one warning). A scratch buffer that moved since
 * the capture (cu_scratch & co. grew: CudaEngine.buf_gen) makes the key start over; so does
 * graph_reset. With D2C_CUDA_PROFILE=1 nothing is captured (the profiler's events would be). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/cuda/cuda_private.cuh"

#define SLOTS 8
#define KEY_WORDS 24
#define UPLOADS 256 /* distinct host arrays per key; more: the key stays eager */

enum { G_WARM = 0, G_GRAPH = 1, G_EAGER = 2 };

typedef struct {
    const void *host;
    size_t bytes, off;
} Upload;

typedef struct {
    uint64_t key[KEY_WORDS];
    int nkey, used, state, calls;
    unsigned gen;       /* e->buf_gen when captured */
    unsigned long tick; /* last use, for eviction */
    int nup;            /* distinct host arrays recorded (one `in` slot each) */
    int ncalls, ncalls_seen; /* uploads made while recording; seen while capturing */
    int up_over;        /* more than UPLOADS host arrays: never captured */
    Upload *up;         /* UPLOADS entries, allocated when recording */
    char *in;           /* device copies of the uploads */
    size_t in_bytes;
    cudaGraphExec_t exec;
} Graph;

typedef struct {
    Graph g[SLOTS];
    unsigned long tick;
} Graphs;

static void drop(Graph *g) {
    if (g->exec) cudaGraphExecDestroy(g->exec);
    free(g->up);
    cudaFree(g->in);
    memset(g, 0, sizeof *g);
}

void cu_graph_reset(CudaEngine *e) {
    Graphs *gs = (Graphs *)e->graphs;
    if (!gs) return;
    if (e->stream) cudaStreamSynchronize(e->stream); /* a launched graph may still read `in` */
    for (int i = 0; i < SLOTS; i++) drop(&gs->g[i]);
}

void cu_graph_destroy(CudaEngine *e) {
    cu_graph_reset(e);
    free(e->graphs);
    e->graphs = NULL;
}

static Graph *find(CudaEngine *e, const uint64_t *key, int nkey) {
    Graphs *gs = (Graphs *)e->graphs;
    if (!gs && !(gs = (Graphs *)calloc(1, sizeof *gs))) return NULL;
    e->graphs = gs;
    gs->tick++;
    Graph *free_slot = NULL, *oldest = &gs->g[0];
    for (int i = 0; i < SLOTS; i++) {
        Graph *g = &gs->g[i];
        if (g->used && g->nkey == nkey && memcmp(g->key, key, (size_t)nkey * sizeof *key) == 0) {
            g->tick = gs->tick;
            return g;
        }
        if (!g->used && !free_slot) free_slot = g;
        if (g->tick < oldest->tick) oldest = g;
    }
    Graph *g = free_slot;
    if (!g) {
        if (e->stream) cudaStreamSynchronize(e->stream);
        drop(oldest);
        g = oldest;
    }
    g->used = 1;
    g->nkey = nkey;
    memcpy(g->key, key, (size_t)nkey * sizeof *key);
    g->tick = gs->tick;
    return g;
}

/* the recorded entry of (src, bytes), or -1 */
static int find_upload(const Graph *g, const void *src, size_t bytes) {
    for (int k = 0; k < g->nup; k++)
        if (g->up[k].host == src && g->up[k].bytes == bytes) return k;
    return -1;
}

/* stage_upload's hook (engine.cu): 1 when the upload was captured here (as a copy from
 * `in`), 0 when it goes the ordinary way (after being recorded, when recording). A host
 * array uploaded several times (the same address and size) gets one slot of `in`: its
 * values must not change while fn runs (backend.h), so one copy serves every use. */
int cu_graph_upload(CudaEngine *e, void *dst, const void *src, size_t bytes) {
    Graph *g = (Graph *)e->graph_cur;
    if (!g) return 0;
    if (e->graph_mode == 1) { /* recording */
        g->ncalls++;
        if (g->up_over || find_upload(g, src, bytes) >= 0) return 0;
        if (!g->up && !(g->up = (Upload *)malloc(UPLOADS * sizeof *g->up))) g->up_over = 1;
        if (g->nup == UPLOADS) g->up_over = 1;
        if (g->up_over) return 0;
        size_t off = g->nup ? g->up[g->nup - 1].off + ((g->up[g->nup - 1].bytes + 255) & ~(size_t)255) : 0;
        g->up[g->nup].host = src;
        g->up[g->nup].bytes = bytes;
        g->up[g->nup].off = off;
        g->nup++;
        return 0;
    }
    /* capturing: only recorded host arrays, as many uploads as recorded, or the capture fails */
    const int k = find_upload(g, src, bytes);
    if (k < 0 || ++g->ncalls_seen > g->ncalls) {
        cu_fail(e, D2C_ERR_FAIL, "cuda graph: the uploads differ from the recorded ones");
        return 1;
    }
    cu_check(e, cudaMemcpyAsync(dst, g->in + g->up[k].off, bytes, cudaMemcpyDeviceToDevice, e->stream),
             "cuda graph: an upload");
    return 1;
}

/* the recorded host arrays into `in`, the ordinary (staged, asynchronous) way */
static void refresh(CudaEngine *e, Graph *g) {
    for (int k = 0; k < g->nup && !e->status; k++) cu_upload(e, g->in + g->up[k].off, g->up[k].host, g->up[k].bytes);
}

/* Captures fn into g->exec; 0 when done (the work is then queued by a launch), -1 when it
 * failed (the engine's state restored; fn not run). */
static int capture(CudaEngine *e, Graph *g, void (*fn)(void *), void *ctx) {
    refresh(e, g);
    if (e->status) return -1;
    cudaGraph_t graph = NULL;
    g->ncalls_seen = 0;
    if (cudaStreamBeginCapture(e->stream, cudaStreamCaptureModeThreadLocal) != cudaSuccess) {
        cudaGetLastError();
        return -1;
    }
    e->graph_cur = g;
    e->graph_mode = 2;
    fn(ctx);
    e->graph_mode = 0;
    e->graph_cur = NULL;
    cudaError_t end = cudaStreamEndCapture(e->stream, &graph);
    int ok = e->status == D2C_OK && end == cudaSuccess && graph && g->ncalls_seen == g->ncalls;
    if (ok && cudaGraphInstantiate(&g->exec, graph, 0) != cudaSuccess) {
        g->exec = NULL;
        ok = 0;
    }
    if (graph) cudaGraphDestroy(graph);
    if (!ok) { /* forget what failed: fn runs eagerly instead, and say so once */
        if (!e->graph_warned) {
            fprintf(stderr, "d2c: warning: cuda graph: capturing failed (%s); running those ops eagerly "
                            "(D2C_CUDA_GRAPH=0 turns graphs off)\n",
                    e->status ? e->msg
                    : end != cudaSuccess ? cudaGetErrorString(end)
                                         : "the captured graph could not be instantiated, or the uploads differed");
            e->graph_warned = 1;
        }
        cudaStreamCaptureStatus st;
        if (cudaStreamIsCapturing(e->stream, &st) == cudaSuccess && st != cudaStreamCaptureStatusNone) {
            cudaGraph_t junk = NULL;
            cudaStreamEndCapture(e->stream, &junk);
            if (junk) cudaGraphDestroy(junk);
        }
        cudaGetLastError();
        e->status = D2C_OK;
        e->msg[0] = 0;
        return -1;
    }
    g->gen = e->buf_gen;
    return 0;
}

static void launch(CudaEngine *e, Graph *g) {
    cu_check(e, cudaGraphLaunch(g->exec, e->stream), "cuda graph: launching");
}

void cu_graph_run(CudaEngine *e, const uint64_t *key, int nkey, void (*fn)(void *), void *ctx) {
    if (!e->graph_on || e->status || e->graph_mode || nkey < 1 || nkey > KEY_WORDS) {
        fn(ctx);
        return;
    }
    Graph *g = find(e, key, nkey);
    if (!g) {
        fn(ctx);
        return;
    }
    if (g->state == G_GRAPH && g->gen != e->buf_gen) { /* a buffer it captured has moved: start over */
        cudaStreamSynchronize(e->stream);
        drop(g);
        g->used = 1;
        g->nkey = nkey;
        memcpy(g->key, key, (size_t)nkey * sizeof *key);
    }
    if (g->state == G_GRAPH) {
        refresh(e, g);
        launch(e, g);
        return;
    }
    if (g->state == G_EAGER || g->up_over) {
        fn(ctx);
        return;
    }
    g->calls++;
    if (g->calls == 1) { /* warm-up */
        fn(ctx);
        return;
    }
    if (g->calls == 2) { /* eager, recording the uploads */
        g->nup = g->ncalls = 0;
        e->graph_cur = g;
        e->graph_mode = 1;
        fn(ctx);
        e->graph_mode = 0;
        e->graph_cur = NULL;
        if (g->up_over) return;
        g->in_bytes = g->nup ? g->up[g->nup - 1].off + g->up[g->nup - 1].bytes : 0;
        if (g->in_bytes && cudaMalloc((void **)&g->in, g->in_bytes) != cudaSuccess) {
            cudaGetLastError();
            g->in = NULL;
            g->state = G_EAGER;
        }
        return;
    }
    if (capture(e, g, fn, ctx) == 0) {
        g->state = G_GRAPH;
        launch(e, g);
    } else {
        g->state = G_EAGER;
        fn(ctx);
    }
}

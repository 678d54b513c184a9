/* test_backend_ops (in the spirit of ggml's test-backend-ops): every entry of the engine
 * table (engine/backend.h) on every backend built into this binary, on random inputs.
 *   - the CPU backend against naive double-precision references (backend_ref.c and the
 *     one-liners below), so the check can fail;
 *   - the CUDA backend, when this build has one and a GPU is present, against the CPU
 *     backend on the same inputs.
 * Error: ||a - b|| / ||b|| (normalised L2), one line per op and backend with its tolerance.
 * Backward ops start from random gradient buffers, so the accumulate convention is
 * checked too. An entry a backend lacks (NULL) prints MISSING and fails the program; an
 * entry of EngineOps no case uses fails it too (and a new entry of the struct fails the
 * build until it is listed in OPS below). The cases are in backend_cases.c and
 * backend_flat.c, the naive
 * references in backend_ref.c; the whole-model checks (a train step, a DDIM run, the
 * hypergradient) in backend_model.c; the algorithm cache (CPU: the file; CUDA: the cached
 * convolution choices) in backend_algo.c.
 * Without a GPU (or in a build without CUDA) the CUDA half prints "cuda: not available"
 * and is skipped; D2C_REQUIRE_CUDA=1 turns that into a failure. The optional fused entries
 * are also checked in their composed form ("cpu~", see make_composed). */
#define _POSIX_C_SOURCE 200809L /* setenv */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend_test.h"
#include "core/status.h"
#include "core/util.h"
#include "engine/backend.h"

/* ---------------------------------------------------------------- the table's entries */

#define OPS(X)                                                                                                          \
    X(destroy) X(alloc) X(free) X(host_alloc) X(host_free) X(upload) X(download) X(copy) X(memzero) X(sync)           \
    X(conv2d_forward) X(conv2d_backward) X(linear_forward) X(linear_backward) X(groupnorm_forward)                   \
    X(groupnorm_backward) X(silu_forward) X(silu_backward) X(add_channel_bias_forward) X(add_channel_bias_backward)   \
    X(upsample2x_forward) X(upsample2x_backward) X(concat_channels_forward) X(concat_channels_backward)              \
    X(attention_forward) X(attention_backward) X(embedding_forward) X(embedding_backward) X(timestep_embedding)      \
    X(mse_forward) X(mse_backward) X(softmax_rows) X(add) X(axpy) X(axpby) X(waxpy) X(scale) X(clamp) X(sum_sq)     \
    X(clip_grad_norm) X(adam_step) X(ema_update) X(q_sample) X(q_sample_backward) X(guidance) X(ddim_step)          \
    X(ddpm_step) X(layerwise_distance) X(layerwise_distance_to) X(fd_coef) X(waxpy_at) X(mse_backward_div)      \
    X(feature_gap) X(channel_mean) X(fill_normal) X(channel_fill) X(row_mean) X(row_mean_backward) \
    X(upsample2x_conv2d_forward) X(mse_forward_to) X(clip_grad_norm_to) X(graph_run) X(graph_reset)
#define COUNT_OP(name) +1
enum { N_OPS = 0 OPS(COUNT_OP) };
_Static_assert(sizeof(EngineOps) == N_OPS * sizeof(void (*)(void)),
               "EngineOps has an entry that test_backend_ops does not list: add it to OPS and to a case");
#define OP_INFO(name) {#name, offsetof(EngineOps, name)},
static const struct {
    const char *name;
    size_t offset;
} OP_TABLE[N_OPS] = {OPS(OP_INFO)};
static int g_covered[N_OPS];
static int g_failures, g_missing;

static int op_present(const Engine *e, const char *name) {
    for (int i = 0; i < N_OPS; i++)
        if (strcmp(OP_TABLE[i].name, name) == 0) {
            void (*fn)(void);
            memcpy(&fn, (const char *)e->ops + OP_TABLE[i].offset, sizeof fn);
            g_covered[i] = 1;
            return fn != NULL;
        }
    fprintf(stderr, "test_backend_ops: '%s' is not an entry of EngineOps\n", name);
    exit(1);
}

/* ---------------------------------------------------------------- driver */

static int case_runnable(const Engine *e, const Case *c) {
    char buf[256];
    snprintf(buf, sizeof buf, "%s", c->ops);
    int ok = 1;
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save))
        if (!op_present(e, t)) {
            printf("%-5s %-36s MISSING (%s)\n", e->name, c->label, t);
            g_missing++;
            ok = 0;
        }
    return ok;
}

static void run_case(Engine *e, Engine *cpu, const Case *c, Vec *got, Vec *ref) {
    got->n = ref->n = 0;
    g_case_seed = 1000;
    if (e == cpu) {
        c->fn(e, got, ref, c->variant);
        g_failures += report(e->name, "naive", c->label, nerr(got, ref), c->tol);
    } else {
        c->fn(e, got, NULL, c->variant);
        g_case_seed = 1000;
        c->fn(cpu, ref, NULL, c->variant);
        g_failures += report(e->name, "cpu", c->label, nerr(got, ref), c->tol);
    }
}

/* --drop OP: the CPU table with entry OP set to NULL, run as a third backend, so that the
 * MISSING path is exercised (CTest expects that run to fail). */
static EngineOps g_dropped_ops;
static Engine g_dropped;

static int make_dropped(const Engine *cpu, const char *name) {
    g_dropped_ops = *cpu->ops;
    for (int i = 0; i < N_OPS; i++)
        if (strcmp(OP_TABLE[i].name, name) == 0) {
            memset((char *)&g_dropped_ops + OP_TABLE[i].offset, 0, sizeof(void (*)(void)));
            g_dropped = *cpu;
            g_dropped.ops = &g_dropped_ops;
            g_dropped.name = "cpu-";
            return 1;
        }
    return 0;
}

/* "cpu~": the CPU table with its optional fused entries set to NULL and completed by
 * engine_complete_ops, so the compositions that stand in for them on backends without
 * the fused ops (engine.c) are checked too; it runs the cases of those entries only. */
static const char *const OPTIONAL_OPS[] = {"upsample2x_conv2d_forward", "mse_forward_to", "clip_grad_norm_to", "graph_run"};
static EngineOps g_composed_ops;
static Engine g_composed;

static void make_composed(const Engine *cpu) {
    g_composed_ops = *cpu->ops;
    g_composed_ops.upsample2x_conv2d_forward = NULL;
    g_composed_ops.mse_forward_to = NULL;
    g_composed_ops.clip_grad_norm_to = NULL;
    g_composed_ops.graph_run = NULL;
    g_composed_ops.graph_reset = NULL;
    g_composed = *cpu;
    g_composed.ops = &g_composed_ops;
    g_composed.own_ops = NULL;
    g_composed.name = "cpu~";
    engine_complete_ops(&g_composed);
}

static int uses_optional_op(const Case *c) {
    for (size_t i = 0; i < sizeof OPTIONAL_OPS / sizeof OPTIONAL_OPS[0]; i++)
        if (strstr(c->ops, OPTIONAL_OPS[i])) return 1;
    return 0;
}

/* A CUDA engine made with D2C_CUDA_GRAPH=graph (the variable restored after) */
static int create_cuda(Engine **out, const char *graph) {
    const char *was = getenv("D2C_CUDA_GRAPH");
    char *keep = was ? xstrdup(was) : NULL;
    setenv("D2C_CUDA_GRAPH", graph, 1);
    const int st = engine_create(out, ENGINE_CUDA);
    if (keep) setenv("D2C_CUDA_GRAPH", keep, 1); else unsetenv("D2C_CUDA_GRAPH");
    free(keep);
    return st;
}

int main(int argc, char **argv) {
    engine_set_num_threads(2);
    Engine *cpu = NULL, *cuda = NULL, *cuda_graph = NULL;
    if (engine_create(&cpu, ENGINE_CPU) != D2C_OK) {
        printf("FAIL cpu engine: %s\n", d2c_last_error());
        return 1;
    }
    make_composed(cpu);
    Engine *backends[5] = {cpu, &g_composed, NULL, NULL, NULL};
    int nb = 2;
    if (argc == 3 && strcmp(argv[1], "--drop") == 0) {
        if (!make_dropped(cpu, argv[2])) {
            printf("usage: test_backend_ops [--drop OP]: '%s' is not an entry of EngineOps\n", argv[2]);
            return 2;
        }
        backends[nb++] = &g_dropped;
    }
    backend_algo_setup(); /* the CUDA engine's algorithm cache in a temporary folder */
    /* "cuda": eager (D2C_CUDA_GRAPH=0); "cuda+g": CUDA graphs (the default of d2c), for the
     * cases that use graph_run and the sampler's model check (capture and replay) */
    if (create_cuda(&cuda, "0") == D2C_OK) {
        backends[nb++] = cuda;
        if (create_cuda(&cuda_graph, "1") == D2C_OK) {
            cuda_graph->name = "cuda+g";
            backends[nb++] = cuda_graph;
        } else {
            printf("FAIL cuda with D2C_CUDA_GRAPH=1: %s\n", d2c_last_error());
            g_failures++;
        }
    } else {
        printf("cuda: not available (%s)\n", d2c_last_error());
        const char *req = getenv("D2C_REQUIRE_CUDA");
        if (req && strcmp(req, "1") == 0) {
            printf("FAIL D2C_REQUIRE_CUDA=1 but the CUDA backend is not available\n");
            g_failures++;
        }
    }
    Vec got = {0}, ref = {0};
    int cuda_missing = 0;
    for (int b = 0; b < nb; b++)
        for (int set = 0; set < 2; set++) {
            const Case *cases = set ? FLAT_CASES : LAYER_CASES;
            const int n = set ? N_FLAT_CASES : N_LAYER_CASES;
            for (int i = 0; i < n; i++) {
                if (backends[b] == &g_composed && !uses_optional_op(&cases[i])) continue;
                if (backends[b] == cuda_graph && !strstr(cases[i].ops, "graph_run")) continue;
                const int before = g_missing;
                if (case_runnable(backends[b], &cases[i])) run_case(backends[b], cpu, &cases[i], &got, &ref);
                if (backends[b] == cuda || backends[b] == cuda_graph) cuda_missing += g_missing - before;
            }
        }
    for (int i = 0; i < N_OPS; i++)
        if (!g_covered[i]) {
            printf("FAIL EngineOps.%s: no case checks it\n", OP_TABLE[i].name);
            g_failures++;
        }
    free(got.v);
    free(ref.v);
    /* the whole-model checks: backend_model.c */
    if (cuda_missing) printf("cuda  model checks skipped: the backend lacks %d op(s)\n", cuda_missing);
    g_failures += backend_model_checks(cpu, cuda_missing ? NULL : cuda, cuda_missing ? NULL : cuda_graph);
    g_failures += backend_algo_checks(cpu, cuda_missing ? NULL : cuda);
    engine_destroy(cuda_graph);
    engine_destroy(cuda);
    engine_destroy(cpu);
    free(g_composed.own_ops);
    printf("%d failed, %d missing\n", g_failures, g_missing);
    return g_failures || g_missing ? 1 : 0;
}

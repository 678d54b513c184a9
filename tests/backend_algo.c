/* test_backend_ops' checks of the measured-choice cache (engine/algo_cache.h) and of the
 * CUDA engine's cached convolution choices (src/engine/cuda/conv_choice.cu):
 *   - on the CPU: the file module alone: round trip, device keys kept apart, the first
 *     writer wins, a corrupt file and an unwritable path each give one warning and no crash;
 *   - on CUDA (when present, D2C_CUDA_CONV_ALGO=cached): the engine of the cases wrote the
 *     file (D2C_CUDA_ALGO_CACHE, pointed at a temporary folder by backend_algo_setup); a
 *     second engine reads it and gives the same bits; the file edited by hand to the GEMM
 *     paths (the split weight gradient included), to choices that are none, and to garbage,
 *     each agrees with the CPU-checked first engine within tolerance; the entries of the
 *     few-channel shapes (Cin or Cout <= 4: 1->32, 32->1 at 28x28, 3->32, 32->3 at 32x32,
 *     strided with odd sizes, 1x1) edited to "direct" (conv_direct.cu) agree with the CPU in
 *     every direction, whether or not that path won the timing. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backend_test.h"
#include "core/util.h"
#include "d2c.h"
#include "engine/algo_cache.h"

static char g_dir[256], g_cuda_file[300];
static int g_warnings;

static void count_warning(const char *msg) {
    g_warnings++;
    printf("      (warning: %s)\n", msg);
}

const char *backend_algo_setup(void) {
    snprintf(g_dir, sizeof g_dir, "/tmp/d2c_algo_test_XXXXXX");
    if (!mkdtemp(g_dir)) {
        g_dir[0] = 0;
        return NULL;
    }
    snprintf(g_cuda_file, sizeof g_cuda_file, "%s/cuda/conv_algos.txt", g_dir);
    setenv("D2C_CUDA_ALGO_CACHE", g_cuda_file, 1);
    return g_cuda_file;
}

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

static int check(int ok, const char *what) {
    printf("%-5s %-36s %s\n", "cpu", what, ok ? "ok" : "FAIL");
    return !ok;
}

/* the file module alone */
static int cpu_checks(void) {
    int fails = 0;
    char path[400], dirpath[400];
    snprintf(path, sizeof path, "%s/cpu/sub/algos.txt", g_dir);
    AlgoCache *a = algo_cache_open(path, "devA\tx");
    fails += check(algo_cache_get(a, "k1") == NULL, "algo cache: empty at first");
    fails += check(strcmp(algo_cache_put(a, "k1", "v1", 0), "v1") == 0, "algo cache: put");
    algo_cache_close(a);
    a = algo_cache_open(path, "devA\tx");
    AlgoCache *b = algo_cache_open(path, "devB");
    const char *got = algo_cache_get(a, "k1");
    fails += check(got && strcmp(got, "v1") == 0 && !algo_cache_get(b, "k1"), "algo cache: read back, per device");
    algo_cache_put(b, "k1", "w1", 0);
    AlgoCache *c = algo_cache_open(path, "devA\tx");
    got = algo_cache_get(c, "k1");
    fails += check(got && strcmp(got, "v1") == 0, "algo cache: other devices' entries kept");
    /* two processes measuring one shape: the first written value is the one used */
    algo_cache_put(a, "k2", "first", 0);
    fails += check(strcmp(algo_cache_put(c, "k2", "second", 0), "first") == 0, "algo cache: first writer wins");
    algo_cache_put(c, "k2", "third", 1); /* replace: the file changes, this run keeps "first" */
    fails += check(strcmp(algo_cache_get(c, "k2"), "first") == 0, "algo cache: replace keeps the run's");
    AlgoCache *d = algo_cache_open(path, "devA\tx");
    got = algo_cache_get(d, "k2");
    fails += check(got && strcmp(got, "third") == 0, "algo cache: replace");
    algo_cache_close(d);
    fails += check(algo_cache_warnings(a) + algo_cache_warnings(b) + algo_cache_warnings(c) == 0,
                   "algo cache: no warnings");
    algo_cache_close(a);
    algo_cache_close(b);
    algo_cache_close(c);
    /* corrupt: one warning, empty, rewritten by the next put */
    write_text(path, "# d2c algorithm cache v1\nnot an entry\n");
    a = algo_cache_open(path, "devA\tx");
    fails += check(!algo_cache_get(a, "k1") && algo_cache_warnings(a) == 1, "algo cache: corrupt file ignored");
    algo_cache_put(a, "k3", "v3", 0);
    fails += check(algo_cache_warnings(a) == 1, "algo cache: one warning only");
    algo_cache_close(a);
    a = algo_cache_open(path, "devA\tx");
    got = algo_cache_get(a, "k3");
    fails += check(got && strcmp(got, "v3") == 0 && algo_cache_warnings(a) == 0, "algo cache: rewritten whole");
    algo_cache_close(a);
    write_text(path, "some other file\n");
    a = algo_cache_open(path, "devA\tx");
    fails += check(algo_cache_warnings(a) == 1, "algo cache: no header, ignored");
    algo_cache_close(a);
    /* a folder where the file should be: unreadable and unwritable, memory only */
    snprintf(dirpath, sizeof dirpath, "%s/cpu/adir", g_dir);
    mkdir(dirpath, 0777);
    a = algo_cache_open(dirpath, "devA");
    got = algo_cache_put(a, "k", "v", 0);
    fails += check(got && strcmp(got, "v") == 0 && strcmp(algo_cache_get(a, "k"), "v") == 0 &&
                       algo_cache_warnings(a) >= 1 && algo_cache_warnings(a) <= 2,
                   "algo cache: unwritable path, memory only");
    algo_cache_close(a);
    a = algo_cache_open(NULL, "devA");
    algo_cache_put(a, "k", "v", 0);
    got = algo_cache_get(a, "k");
    fails += check(got && strcmp(got, "v") == 0 && algo_cache_warnings(a) == 0, "algo cache: no file");
    algo_cache_close(a);
    char buf[64];
    fails += check(algo_cache_path("", "x", buf, sizeof buf) == 0 && algo_cache_path("/a/b", "x", buf, sizeof buf) == 1 &&
                       strcmp(buf, "/a/b") == 0,
                   "algo cache: path override");
    return fails;
}

/* The shapes of run_convs: three with many channels, then ones the direct kernels take
 * (Cin or Cout <= 4): the UNet's first and last layers at 28x28 (1 channel) and 32x32 (3),
 * stride 2 at odd sizes (9x7 -> 5x4, 14x14 -> 7x7), groups of 4 channels cut short (6 of a
 * side), 1x1. */
static const ConvShape SHAPES[] = {
    {3, 5, 9, 7, 6, 3, 1},   {3, 5, 9, 7, 6, 3, 2},    {3, 5, 9, 7, 6, 1, 1},   {2, 1, 28, 28, 32, 3, 1},
    {2, 32, 28, 28, 1, 3, 1}, {2, 3, 32, 32, 32, 3, 1}, {2, 32, 32, 32, 3, 3, 1}, {3, 3, 9, 7, 6, 3, 2},
    {3, 6, 9, 7, 2, 3, 2},   {2, 32, 14, 14, 3, 3, 2}, {3, 2, 9, 7, 6, 1, 1},   {3, 32, 7, 7, 1, 1, 1}};
#define N_SHAPES ((int)(sizeof SHAPES / sizeof SHAPES[0]))

/* convolutions forward and backward at SHAPES on e (the same inputs every call) */
static void run_convs(Engine *e, Vec *out) {
    g_case_seed = 5000;
    for (int i = 0; i < N_SHAPES; i++) {
        ConvShape s = SHAPES[i];
        const int Ho = conv_out_size(s.H, s.k, s.stride), Wo = conv_out_size(s.W, s.k, s.stride);
        const size_t nx = (size_t)s.B * s.Cin * s.H * s.W, ny = (size_t)s.B * s.Cout * Ho * Wo,
                     nw = (size_t)s.Cout * s.Cin * s.k * s.k;
        float *x = rand_host(nx, 1), *w = rand_host(nw, 0.3f), *bias = rand_host((size_t)s.Cout, 1),
              *dy = rand_host(ny, 1), *gx = rand_host(nx, 1), *gw = rand_host(nw, 1), *gb = rand_host((size_t)s.Cout, 1);
        float *dx = to_dev(e, x, nx), *dw = to_dev(e, w, nw), *db = to_dev(e, bias, (size_t)s.Cout);
        float *ddy = to_dev(e, dy, ny), *dgx = to_dev(e, gx, nx), *dgw = to_dev(e, gw, nw);
        float *dgb = to_dev(e, gb, (size_t)s.Cout), *y = engine_xalloc_floats(e, ny);
        e->ops->conv2d_forward(e, y, dx, dw, db, s);
        e->ops->conv2d_backward(e, dgx, dgw, dgb, ddy, dx, dw, s);
        take(e, out, y, ny);
        take(e, out, dgx, nx);
        take(e, out, dgw, nw);
        take(e, out, dgb, (size_t)s.Cout);
        engine_free(e, dx);
        engine_free(e, dw);
        engine_free(e, db);
        engine_free(e, ddy);
        free(x), free(w), free(bias), free(dy), free(gx), free(gw), free(gb);
    }
}

/* 1 when the entry line's key ("conv3x3/1 B2 1->32 28x28 fwd") has Cin or Cout <= 4 */
static int few_channels(const char *line) {
    const char *key = strchr(line, '\t'); /* after the device key */
    const char *arrow = key ? strstr(key, "->") : NULL;
    if (!arrow) return 0;
    const char *p = arrow;
    while (p > key && p[-1] >= '0' && p[-1] <= '9') p--;
    return atoi(p) <= 4 || atoi(arrow + 2) <= 4;
}

/* Rewrites every entry's value of the file: FILTER entries to filter_value, others to
 * other_value (NULL: the whole file becomes garbage); with few_only, the entries of
 * shapes with more than 4 channels on both sides are left as they are. */
static int edit_file(const char *path, const char *other_value, const char *filter_value, int few_only) {
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    char line[2048], *text = xcalloc(1, 1);
    size_t len = 0;
    while (fgets(line, sizeof line, f)) {
        char *t = strrchr(line, '\t');
        if (other_value && line[0] != '#' && t && (!few_only || few_channels(line))) {
            const int filter = t - line >= 10 && strncmp(t - 10, "bwd_filter", 10) == 0;
            snprintf(t + 1, sizeof line - (size_t)(t + 1 - line), "%s\n", filter ? filter_value : other_value);
        }
        text = xrealloc(text, len + strlen(line) + 1);
        memcpy(text + len, line, strlen(line) + 1);
        len += strlen(line);
    }
    fclose(f);
    write_text(path, other_value ? text : "# d2c algorithm cache v1\n\x01garbage\n");
    free(text);
    return 1;
}

/* run_convs on a new CUDA engine into got; 1 (reported) when the engine cannot be made */
static int run_new_cuda(Vec *got, const char *what) {
    Engine *e = NULL;
    if (engine_create(&e, ENGINE_CUDA) != 0) {
        printf("FAIL cuda  %s: %s\n", what, d2c_last_error());
        return 1;
    }
    run_convs(e, got);
    engine_destroy(e);
    return 0;
}

static int same_bits(const Vec *a, const Vec *b) {
    if (a->n != b->n) return 0;
    for (size_t k = 0; k < a->n; k++)
        if (memcmp(&a->v[k], &b->v[k], sizeof(double)) != 0) return 0;
    return 1;
}

/* run_convs on a new CUDA engine against want (the first CUDA engine's results, or the
 * CPU's: against names it); tol 0: the same bits */
static int cuda_against(const char *against, const Vec *want, const char *what, double tol) {
    Vec got = {0};
    if (run_new_cuda(&got, what)) return 1;
    int f = tol == 0 ? report("cuda", against, what, same_bits(&got, want) ? 0.0 : 1.0, 0)
                     : report("cuda", against, what, nerr(&got, want), tol);
    free(got.v);
    return f;
}

int backend_algo_checks(Engine *cpu, Engine *cuda) {
    int fails = 0;
    if (!g_dir[0]) {
        printf("FAIL algo cache: no temporary folder\n");
        return 1;
    }
    d2c_set_warning_handler(count_warning);
    fails += cpu_checks();
    if (cuda) {
        Vec ref = {0}, first = {0};
        run_convs(cpu, &ref);
        run_convs(cuda, &first);
        fails += report(cuda->name, "cpu", "conv (algo cache set)", nerr(&first, &ref), 1e-5);
        struct stat st;
        if (stat(g_cuda_file, &st) != 0) {
            printf("cuda  algorithm cache: no file (D2C_CUDA_CONV=gemm or D2C_CUDA_CONV_ALGO other than cached): "
                   "skipped\n");
        } else {
            fails += cuda_against("cuda", &first, "algo cache: read back, same bits", 0);
            g_warnings = 0;
            edit_file(g_cuda_file, "gemm", "gemm_split", 0);
            fails += cuda_against("cuda", &first, "algo cache: gemm, gemm_split", 1e-5);
            const char *mode = getenv("D2C_CUDA_CONV"); /* cudnn: the GEMM and direct paths are not choices */
            const int own_paths = !mode || strcmp(mode, "cudnn") != 0;
            if (own_paths) fails += report(cuda->name, "-", "algo cache: edited, no warning", g_warnings, 0);
            /* the direct kernels in every direction of the few-channel shapes, the others
             * left on the GEMM paths: against the CPU itself */
            g_warnings = 0;
            edit_file(g_cuda_file, "direct", "direct", 1);
            Vec direct1 = {0}, direct2 = {0};
            if (run_new_cuda(&direct1, "algo cache: direct") || run_new_cuda(&direct2, "algo cache: direct")) {
                fails++;
            } else {
                fails += report("cuda", "cpu", "algo cache: direct (few channels)", nerr(&direct1, &ref), 1e-5);
                fails += report("cuda", "cuda", "algo cache: direct, same bits twice",
                                same_bits(&direct1, &direct2) ? 0.0 : 1.0, 0);
            }
            free(direct1.v);
            free(direct2.v);
            if (own_paths) fails += report(cuda->name, "-", "algo cache: direct, no warning", g_warnings, 0);
            g_warnings = 0;
            edit_file(g_cuda_file, "cudnn:999", "cudnn:999", 0);
            fails += cuda_against("cuda", &first, "algo cache: not a choice", 1e-5);
            char what[64];
            snprintf(what, sizeof what, "algo cache: %d warnings", 3 * N_SHAPES);
            fails += report(cuda->name, "-", what, g_warnings == 3 * N_SHAPES ? 0 : 1, 0);
            g_warnings = 0;
            fails += cuda_against("cuda", &first, "algo cache: rewritten, read back", 1e-5);
            fails += report(cuda->name, "-", "algo cache: rewritten, no warning", g_warnings, 0);
            edit_file(g_cuda_file, NULL, NULL, 0);
            fails += cuda_against("cuda", &first, "algo cache: corrupt file", 1e-5);
            fails += report(cuda->name, "-", "algo cache: 1 warning", g_warnings == 1 ? 0 : 1, 0);
        }
        free(ref.v);
        free(first.v);
    }
    d2c_set_warning_handler(NULL);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (system(cmd) != 0) printf("(could not remove %s)\n", g_dir);
    return fails;
}

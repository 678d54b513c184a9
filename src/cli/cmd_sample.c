/* `d2c sample`: DDIM or DDPM samples from a model file, from a noise file or a seed;
 * writes images + labels (safetensors) and optionally a PNG grid, one row per class. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "core/util.h"
#include "diffusion/checkpoint.h"
#include "diffusion/generate.h"
#include "io/image.h"
#include "io/safetensors.h"
#include "model/unet.h"

static const char *USAGE =
    "usage: d2c sample --model MODEL.safetensors --out SAMPLES.safetensors\n"
    "                  (--noise NOISE.safetensors | --n N [--labels all|I,J,...] [--seed S]) [options]\n"
    "Draws images with deterministic DDIM (the spec's ddim_sample) or ancestral DDPM, with\n"
    "classifier-free guidance --guidance W (1 = none). Uses the model's EMA weights.";

/* The labels to sample: y (n) from the noise file when it has them (and --labels was
 * not given), else --labels cycled: "all" is 0..K-1, a list is sized from its entries.
 * Every label must be a class of the model, or K (the null label, unconditional). */
static int make_labels(const char *labels, int labels_given, const StFile *nf, int n, int K, int64_t *y) {
    if (nf && st_find(nf, "labels") && !labels_given) {
        int64_t shp[1] = {n};
        const int64_t *lv;
        D2C_TRY(st_require_i64(nf, "labels", 1, shp, &lv));
        memcpy(y, lv, (size_t)n * sizeof *y);
        return d2c_error_context(generator_check_labels(y, n, K), "%s: ", st_path(nf));
    }
    const int all = strcmp(labels, "all") == 0;
    const int cap = all ? K : count_list_entries(labels);
    int *list = xcalloc((size_t)(cap > 0 ? cap : 1), sizeof *list);
    int nl = cap;
    if (all) {
        for (int k = 0; k < K; k++) list[k] = k;
    } else {
        nl = parse_int_list(labels, list, cap);
    }
    int st = D2C_OK;
    if (nl < 1)
        st = d2c_error(D2C_ERR_INPUT, "sample: --labels must be 'all' or a list of class numbers, got '%.64s'", labels);
    for (int i = 0; st == D2C_OK && i < nl; i++)
        if (list[i] < 0 || list[i] > K)
            st = d2c_error(D2C_ERR_INPUT, "sample: --labels: label %d outside the model's classes 0..%d (%d = null)",
                           list[i], K - 1, K);
    for (int i = 0; st == D2C_OK && i < n; i++) y[i] = list[i % nl];
    free(list);
    return st;
}

/* The noise file: x_T (n, C, H, W) for a model of C channels; sets n, H, W. */
static int read_noise(const StFile *nf, int C, int *n, int *H, int *W, float **x) {
    const char *path = st_path(nf);
    const StTensor *nt = st_find(nf, "noise");
    if (!nt || nt->ndim != 4) return d2c_error(D2C_ERR_INPUT, "%s: needs a 4-d 'noise' tensor (N, C, H, W)", path);
    if (nt->shape[1] != C)
        return d2c_error(D2C_ERR_INPUT, "%s: noise has %lld channels, the model takes %d", path, (long long)nt->shape[1], C);
    if (nt->shape[0] < 1) return d2c_error(D2C_ERR_INPUT, "%s: 'noise' holds no images", path);
    if (nt->shape[0] > 10000000 || nt->shape[2] > 65535 || nt->shape[3] > 65535)
        return d2c_error(D2C_ERR_INPUT, "%s: 'noise' of %lld images of %lldx%lld is more than d2c samples", path,
                         (long long)nt->shape[0], (long long)nt->shape[2], (long long)nt->shape[3]);
    const float *nv;
    D2C_TRY(st_require_f32(nf, "noise", 4, nt->shape, &nv));
    for (int64_t i = 0; i < nt->numel; i++)
        if (!isfinite(nv[i])) return d2c_error(D2C_ERR_INPUT, "%s: 'noise' holds a non-finite value (at element %lld)", path, (long long)i);
    *n = (int)nt->shape[0];
    *H = (int)nt->shape[2];
    *W = (int)nt->shape[3];
    *x = xmalloc_floats((size_t)nt->numel);
    memcpy(*x, nv, (size_t)nt->numel * sizeof(float));
    return D2C_OK;
}

/* The samples file and, when asked, the grid (one row per class present, up to 10 images
 * each, in class order). */
static int write_outputs(const char *out, const char *grid, const char *model, SamplerKind sampler, int steps,
                         double guidance, int seed, int from_noise, int n, int K, int C, int H, int W, const float *x,
                         const int64_t *y) {
    const size_t D = (size_t)C * H * W;
    StWriter *w = st_writer_new();
    int64_t shape[4] = {n, C, H, W}, nshape[1] = {n};
    st_add(w, "images", ST_F32, 4, shape, x);
    st_add(w, "labels", ST_I64, 1, nshape, y);
    char meta[512];
    snprintf(meta, sizeof meta, "%s", model);
    st_set_meta(w, "model", meta);
    st_set_meta(w, "sampler", SAMPLER_NAMES[sampler]);
    snprintf(meta, sizeof meta, "%d", steps);
    st_set_meta(w, "steps", meta);
    snprintf(meta, sizeof meta, "%g", guidance);
    st_set_meta(w, "guidance", meta);
    snprintf(meta, sizeof meta, "%d", seed);
    st_set_meta(w, "seed", from_noise ? "noise file" : meta);
    snprintf(meta, sizeof meta, "%d", K);
    st_set_meta(w, "num_classes", meta);
    int st = st_write(w, out);
    st_writer_free(w);
    if (st || !grid) return st;
    const int cols = 10;
    int rows = 0;
    float *g = xcalloc((size_t)(K + 1) * cols * D, sizeof(float));
    for (int k = 0; k <= K; k++) {
        int c = 0;
        for (int i = 0; i < n && c < cols; i++)
            if (y[i] == k) memcpy(g + ((size_t)rows * cols + c++) * D, x + (size_t)i * D, D * sizeof(float));
        if (c == 0) continue;
        for (; c < cols; c++) /* fill short rows with white */
            for (size_t j = 0; j < D; j++) g[((size_t)rows * cols + c) * D + j] = 1.0f;
        rows++;
    }
    st = png_write_grid(grid, g, rows * cols, C, H, W, cols, 2);
    free(g);
    return st;
}

int cmd_sample(int argc, char **argv) {
    const char *model = NULL, *out = NULL, *noise_path = NULL, *labels = "all", *sampler_name = SAMPLER_NAMES[SAMPLER_DDIM];
    const char *grid = NULL, *device = "cpu";
    int n = 0, seed = 0, steps = 50, threads = 2, batch = 128, quiet = 0;
    double guidance = 1.0;
    Option opts[] = {
        {"model", OPT_STRING, &model, 1, 0, "model file (required)", 0},
        {"out", OPT_STRING, &out, 1, 0, "samples file to write (required)", 0},
        {"noise", OPT_STRING, &noise_path, 1, 0, "initial x_T: safetensors with 'noise' (N,C,H,W), optional 'labels'", 0},
        {"n", OPT_INT, &n, 1, 10000000, "number of samples (without --noise)", 0},
        {"labels", OPT_STRING, &labels, 1, 0, "'all' (cycle through classes) or a list I,J,... to cycle", 0},
        {"seed", OPT_INT, &seed, 0, 2147483647, "seed for x_T and DDPM noise (default 0)", 0},
        {"sampler", OPT_STRING, &sampler_name, 1, 0, "ddim or ddpm (default ddim)", 0},
        {"steps", OPT_INT, &steps, 1, 1000, "sampling steps (default 50)", 0},
        {"guidance", OPT_FLOAT, &guidance, -100, 100, "classifier-free guidance scale w (default 1 = off)", 0},
        {"grid", OPT_STRING, &grid, 1, 0, "also write a PNG grid, one row per class", 0},
        {"batch", OPT_INT, &batch, 1, 4096, "images per network call (default 128)", 0},
        {"threads", OPT_INT, &threads, 1, 256, "CPU threads (default 2)", 0},
        {"device", OPT_STRING, &device, 1, 0, "cpu or cuda (default cpu)", 0},
        {"quiet", OPT_FLAG, &quiet, 1, 0, "no progress output", 0},
        {NULL, 0, NULL, 0, 0, NULL, 0},
    };
    D2C_TRY(parse_options("sample", USAGE, opts, argc, argv, 2));
    D2C_TRY(require_option("sample", opts, "model"));
    D2C_TRY(require_option("sample", opts, "out"));
    Engine *eng;
    D2C_TRY(open_device("sample", device, &eng));
    SamplerKind sampler;
    D2C_TRY(d2c_error_context(sampler_parse(sampler_name, &sampler), "sample: --sampler: "));
    if (!noise_path && !find_option(opts, "n")->seen) return d2c_error(D2C_ERR_INPUT, "sample: give --noise FILE or --n N");
    if (noise_path && find_option(opts, "n")->seen)
        return d2c_error(D2C_ERR_INPUT, "sample: give either --noise or --n, not both");
    apply_threads(threads);

    ModelInfo info;
    D2C_TRY(d2c_error_context(checkpoint_read_info(&info, model), "sample: --model: "));
    const int K = info.cfg.num_classes, C = info.cfg.in_channels;
    int H = info.H, W = info.W;
    float *x = NULL;
    int64_t *y = NULL;
    Rng *rngs = NULL;
    StFile *nf = NULL;
    Generator gen = {0};
    int st;
    if (noise_path) {
        D2C_TRY_GOTO(st, d2c_error_context(st_open(&nf, noise_path), "sample: --noise: "), done);
        D2C_TRY_GOTO(st, d2c_error_context(read_noise(nf, C, &n, &H, &W, &x), "sample: --noise: "), done);
    }
    y = xcalloc((size_t)n, sizeof *y);
    D2C_TRY_GOTO(st, make_labels(labels, find_option(opts, "labels")->seen, nf, n, K, y), done);
    D2C_TRY_GOTO(st, d2c_error_context(unet_config_validate(&info.cfg, H, W), "sample: %s: ", noise_path ? noise_path : model),
                 done);
    D2C_TRY_GOTO(st, check_writable(out), done);
    if (grid) D2C_TRY_GOTO(st, check_writable(grid), done);
    const size_t D = (size_t)C * H * W;
    rngs = xcalloc((size_t)n, sizeof(Rng));
    if (!x) {
        x = d2c_try_malloc((size_t)n * D * sizeof(float));
        if (!x) {
            st = d2c_error(D2C_ERR_FAIL, "sample: out of memory for %d images of %zu values", n, D);
            goto done;
        }
    }
    generator_streams((uint64_t)seed, n, D, rngs, noise_path ? NULL : x);

    if (batch > n) batch = n;
    D2C_TRY_GOTO(st, d2c_error_context(generator_create(&gen, eng, &info, H, W, batch), "sample: "), done);
    D2C_TRY_GOTO(st, d2c_error_context(generator_load_weights(&gen, model), "sample: --model: "),
                 done);
    double t0 = now_seconds();
    generator_run(&gen, sampler, x, y, n, steps, (float)guidance, rngs, quiet ? NULL : "sample");
    D2C_TRY_GOTO(st, write_outputs(out, grid, model, sampler, steps, guidance, seed, noise_path != NULL, n, K, C, H, W, x, y),
                 done);
    if (!quiet)
        fprintf(stderr, "sample: %d images (%s, %d steps, guidance %g) in %.1f s -> %s\n", n, SAMPLER_NAMES[sampler], steps,
                guidance, now_seconds() - t0, out);
done:
    generator_free(&gen);
    free(rngs);
    free(x);
    free(y);
    if (nf) st_close(nf);
    model_info_free(&info);
    return st;
}

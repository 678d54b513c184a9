/* `d2c sample`: DDIM or DDPM samples from a model file, from a noise file or a seed;
 * writes images + labels (safetensors) and optionally a PNG grid, one row per class. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "core/progress.h"
#include "core/rng.h"
#include "core/util.h"
#include "diffusion/checkpoint.h"
#include "diffusion/sample.h"
#include "io/image.h"
#include "io/safetensors.h"
#include "model/unet.h"

static const char *USAGE =
    "usage: d2c sample --model MODEL.safetensors --out SAMPLES.safetensors\n"
    "                  (--noise NOISE.safetensors | --n N [--labels all|I,J,...] [--seed S]) [options]\n"
    "Draws images with deterministic DDIM (the spec's ddim_sample) or ancestral DDPM, with\n"
    "classifier-free guidance --guidance W (1 = none). Uses the model's EMA weights.";

static void unet_denoise(void *ctx, const float *x, const int64_t *t, const int64_t *y, int B, float *eps) {
    unet_forward((UNet *)ctx, x, t, y, NULL, B, eps);
}

int cmd_sample(int argc, char **argv) {
    const char *model = NULL, *out = NULL, *noise_path = NULL, *labels = "all", *sampler = "ddim";
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
        {"sampler", OPT_STRING, &sampler, 1, 0, "ddim or ddpm (default ddim)", 0},
        {"steps", OPT_INT, &steps, 1, 1000, "sampling steps (default 50)", 0},
        {"guidance", OPT_FLOAT, &guidance, -100, 100, "classifier-free guidance scale w (default 1 = off)", 0},
        {"grid", OPT_STRING, &grid, 1, 0, "also write a PNG grid, one row per class", 0},
        {"batch", OPT_INT, &batch, 1, 4096, "images per network call (default 128)", 0},
        {"threads", OPT_INT, &threads, 1, 256, "CPU threads (default 2)", 0},
        {"device", OPT_STRING, &device, 1, 0, "cpu or cuda (default cpu)", 0},
        {"quiet", OPT_FLAG, &quiet, 1, 0, "no progress output", 0},
        {NULL, 0, NULL, 0, 0, NULL, 0},
    };
    parse_options("sample", USAGE, opts, argc, argv, 2);
    require_option("sample", opts, "model");
    require_option("sample", opts, "out");
    check_device("sample", device);
    int ddpm = 0;
    if (strcmp(sampler, "ddpm") == 0) ddpm = 1;
    else if (strcmp(sampler, "ddim") != 0) die_input("sample: --sampler must be ddim or ddpm, got '%s'", sampler);
    if (!noise_path && !find_option(opts, "n")->seen) die_input("sample: give --noise FILE or --n N");
    if (noise_path && find_option(opts, "n")->seen) die_input("sample: give either --noise or --n, not both");
    apply_threads(threads);

    ModelInfo info = checkpoint_read_info(model);
    const int K = info.cfg.num_classes, C = info.cfg.in_channels;
    int H = info.H, W = info.W;
    float *x = NULL;
    int64_t *y = NULL;
    StFile *nf = NULL;
    if (noise_path) {
        nf = st_open(noise_path);
        const StTensor *nt = st_find(nf, "noise");
        if (!nt || nt->ndim != 4) die_input("%s: needs a 4-d 'noise' tensor (N, C, H, W)", noise_path);
        if (nt->shape[1] != C) die_input("%s: noise has %lld channels, the model takes %d", noise_path, (long long)nt->shape[1], C);
        n = (int)nt->shape[0];
        H = (int)nt->shape[2];
        W = (int)nt->shape[3];
        if (n < 1) die_input("%s: 'noise' holds no images", noise_path);
        x = xmalloc_floats((size_t)n * C * H * W);
        memcpy(x, st_require_f32(nf, "noise", 4, nt->shape), (size_t)n * C * H * W * sizeof(float));
        if (st_find(nf, "labels") && !find_option(opts, "labels")->seen) {
            int64_t shp[1] = {n};
            y = xcalloc((size_t)n, sizeof *y);
            memcpy(y, st_require_i64(nf, "labels", 1, shp), (size_t)n * sizeof *y);
        }
    }
    if (!y) {
        y = xcalloc((size_t)n, sizeof *y);
        int list[4096], nl;
        if (strcmp(labels, "all") == 0) {
            nl = K;
            for (int k = 0; k < K; k++) list[k] = k;
        } else {
            nl = parse_int_list(labels, list, 4096);
            if (nl < 1) die_input("sample: --labels must be 'all' or a list of class numbers, got '%s'", labels);
        }
        for (int i = 0; i < n; i++) y[i] = list[i % nl];
    }
    for (int i = 0; i < n; i++)
        if (y[i] < 0 || y[i] > K) die_input("sample: label %lld outside 0..%d (%d = null)", (long long)y[i], K, K);
    char why[256];
    if (unet_config_validate(&info.cfg, H, W, why, sizeof why)) die_input("sample: %s", why);
    check_writable(out);
    if (grid) check_writable(grid);
    const size_t D = (size_t)C * H * W;
    Rng *rngs = xcalloc((size_t)n, sizeof(Rng));
    if (!x) x = xmalloc_floats((size_t)n * D);
    for (int i = 0; i < n; i++) {
        rngs[i] = rng_stream((uint64_t)seed, RNG_SAMPLE, (uint64_t)i);
        if (!noise_path) rng_fill_normal(&rngs[i], x + (size_t)i * D, D);
    }

    if (batch > n) batch = n;
    UNet net;
    unet_create(&net, &info.cfg, H, W, 2 * batch);
    checkpoint_load_weights(model, &net.lay, net.params);
    Schedule sched;
    schedule_init(&sched, info.schedule);
    DenoiserRef den = {unet_denoise, &net, K, 2 * batch};
    Progress prog;
    progress_begin(&prog, "sample", 0, n);
    double t0 = now_seconds();
    for (int i = 0; i < n; i += batch) {
        int b = D2C_MIN(batch, n - i);
        if (ddpm) ddpm_sample(&den, &sched, x + (size_t)i * D, y + i, b, D, steps, (float)guidance, rngs + i);
        else ddim_sample(&den, &sched, x + (size_t)i * D, y + i, b, D, steps, (float)guidance);
        char status[64];
        snprintf(status, sizeof status, "%.1f img/s", (i + b) / (now_seconds() - t0));
        if (!quiet) progress_update(&prog, i + b, status);
    }
    if (!quiet) progress_end(&prog);

    StWriter *w = st_writer_new();
    int64_t shape[4] = {n, C, H, W}, nshape[1] = {n};
    st_add(w, "images", ST_F32, 4, shape, x);
    st_add(w, "labels", ST_I64, 1, nshape, y);
    char meta[512];
    snprintf(meta, sizeof meta, "%s", model);
    st_set_meta(w, "model", meta);
    st_set_meta(w, "sampler", ddpm ? "ddpm" : "ddim");
    snprintf(meta, sizeof meta, "%d", steps);
    st_set_meta(w, "steps", meta);
    snprintf(meta, sizeof meta, "%g", guidance);
    st_set_meta(w, "guidance", meta);
    snprintf(meta, sizeof meta, "%d", seed);
    st_set_meta(w, "seed", noise_path ? "noise file" : meta);
    snprintf(meta, sizeof meta, "%d", K);
    st_set_meta(w, "num_classes", meta);
    st_write(w, out);
    st_writer_free(w);

    if (grid) {
        /* one row per class present, up to 10 images each, in class order */
        int cols = 10, rows = 0;
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
        png_write_grid(grid, g, rows * cols, C, H, W, cols, 2);
        free(g);
    }
    if (!quiet) fprintf(stderr, "sample: %d images (%s, %d steps, guidance %g) in %.1f s -> %s\n", n, ddpm ? "ddpm" : "ddim",
                        steps, guidance, now_seconds() - t0, out);
    unet_destroy(&net);
    free(rngs);
    free(x);
    free(y);
    if (nf) st_close(nf);
    model_info_free(&info);
    return 0;
}

/* train_and_sample: d2c's public API end to end, using nothing but <d2c.h>.
 *
 *   train_and_sample [DATA [OUT_MODEL [STEPS]]]
 *
 * Loads a data set (default fashion-mnist:test), trains a small diffusion model on it for
 * a few steps (default 20) into OUT_MODEL (default train_and_sample.safetensors), draws one
 * image per class from seed 0, and prints each image's class, pixel range and a coarse
 * picture of the first one. Every status is checked; a failure prints d2c_last_error()
 * and exits with the status (2: bad input, 1: other failures). */
#include <d2c.h>

#include <stdio.h>
#include <stdlib.h>

/* Ends the program with the library's message when a call failed. */
static void check(int status, const char *what) {
    if (status == D2C_OK) return;
    fprintf(stderr, "train_and_sample: %s: %s\n", what, d2c_last_error());
    exit(status);
}

int main(int argc, char **argv) {
    const char *src = argc > 1 ? argv[1] : "fashion-mnist:test";
    const char *model_path = argc > 2 ? argv[2] : "train_and_sample.safetensors";
    const int64_t steps = argc > 3 ? atoll(argv[3]) : 20;
    printf("d2c %s (header %s)\n", d2c_version(), D2C_VERSION);
    check(d2c_set_threads(2), "threads");

    /* the data: shape and classes */
    d2c_data *data;
    check(d2c_data_load(&data, src), "loading the data");
    int n, c, h, w, k;
    check(d2c_data_shape(data, &n, &c, &h, &w), "data shape");
    check(d2c_data_num_classes(data, &k), "data classes");
    const char *first_class;
    check(d2c_data_class_name(data, 0, &first_class), "class name");
    printf("data: %d images of %dx%dx%d, %d classes (class 0: %s)\n", n, c, h, w, k, first_class);
    d2c_data_free(data);

    /* a small model, a few steps */
    d2c_train_options opt;
    d2c_train_options_init(&opt);
    opt.data = src;
    opt.out = model_path;
    opt.steps = steps;
    opt.batch = 16;
    opt.base_channels = 16;
    opt.num_levels = 2; /* channel_mult 1, 2; attention at level 1 */
    opt.channel_mult[0] = 1, opt.channel_mult[1] = 2;
    opt.attn[0] = 0, opt.attn[1] = 1, opt.attn[2] = 0;
    opt.warmup = 0;
    opt.quiet = 1;
    double loss;
    check(d2c_train(&opt, &loss), "training");
    printf("trained %lld steps, final loss %.4f -> %s\n", (long long)steps, loss, model_path);

    /* one image per class, x_T from seed 0 as `d2c sample --seed 0` draws it */
    d2c_model *model;
    check(d2c_model_load(&model, model_path), "loading the model");
    d2c_sampler_options so;
    d2c_sampler_options_init(&so);
    so.steps = 10;
    d2c_sampler *sampler;
    check(d2c_sampler_create(&sampler, model, &so), "creating the sampler");
    d2c_model_free(model); /* the sampler keeps what it needs */
    check(d2c_sampler_shape(sampler, &c, &h, &w), "sampler shape");
    const size_t d = (size_t)c * h * w;
    float *images = malloc((size_t)k * d * sizeof *images);
    int64_t *labels = malloc((size_t)k * sizeof *labels);
    if (!images || !labels) return 1;
    for (int i = 0; i < k; i++) labels[i] = i;
    check(d2c_sampler_run_seeded(sampler, labels, k, c, h, w, 0, images), "sampling");
    d2c_sampler_free(sampler);

    for (int i = 0; i < k; i++) {
        float lo = images[i * d], hi = lo;
        for (size_t j = 0; j < d; j++) {
            float v = images[i * d + j];
            lo = v < lo ? v : lo;
            hi = v > hi ? v : hi;
        }
        printf("sample %d: class %lld, pixels in [%.3f, %.3f]\n", i, (long long)labels[i], lo, hi);
    }
    /* the first sample's first channel, every other row and column, dark to light */
    const char *shades = " .:-=+*#%@";
    for (int y = 0; y < h; y += 2) {
        for (int x = 0; x < w; x += 2) {
            float v = (images[(size_t)y * w + x] + 1) / 2; /* [-1, 1] -> [0, 1] */
            int s = (int)(v * 9.99f);
            putchar(shades[s < 0 ? 0 : s > 9 ? 9 : s]);
        }
        putchar('\n');
    }
    free(images);
    free(labels);
    return 0;
}

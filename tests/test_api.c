/* The public API (include/d2c.h) through d2c.h alone: its error paths (NULL handles and
 * arguments, bad shapes, out-of-range labels and options, options structs of an unknown
 * size) return D2C_ERR_INPUT with a message naming what is wrong, and never exit; and
 * the handles do real work (a 2-step model from Fashion-MNIST's test split, sampling that
 * does not depend on the batch, a random pool, the committed evaluator, FID against its
 * closed form).
 *
 *   test_api WORK_DIR EVALUATOR.safetensors */
#include <d2c.h>

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testing.h"

/* st is D2C_ERR_INPUT and this thread's message holds needle. */
static int input_error(int st, const char *needle) {
    const char *msg = d2c_last_error();
    int ok = st == D2C_ERR_INPUT && strstr(msg, needle) != NULL;
    if (!ok) printf("  status %d, message '%s' (wanted 2 and '%s')\n", st, msg, needle);
    return ok;
}
#define CHECK_INPUT(expr, needle) CHECK(input_error((expr), (needle)))

static char g_path[4096];
static const char *path_in(const char *dir, const char *name) {
    snprintf(g_path, sizeof g_path, "%s/%s", dir, name);
    return g_path;
}

static void test_version_and_threads(void) {
    CHECK(strcmp(d2c_version(), D2C_VERSION) == 0);
    CHECK(d2c_version_number() == D2C_VERSION_MAJOR * 10000 + D2C_VERSION_MINOR * 100 + D2C_VERSION_PATCH);
    CHECK(d2c_get_threads() >= 1); /* OpenMP's default before any d2c_set_threads */
    CHECK_INPUT(d2c_set_threads(0), "d2c_set_threads");
    CHECK(d2c_set_threads(2) == D2C_OK && d2c_get_threads() == 2);
    d2c_clear_error();
    CHECK(strcmp(d2c_last_error(), "") == 0);
}

static void *fail_on_other_thread(void *arg) {
    d2c_data *d;
    *(int *)arg = d2c_data_load(&d, "folder:/nonexistent-other-thread") == D2C_ERR_INPUT &&
                  strstr(d2c_last_error(), "nonexistent-other-thread") != NULL;
    return NULL;
}

static void test_data_errors(void) {
    d2c_data *d = (d2c_data *)&d; /* must come back NULL */
    CHECK_INPUT(d2c_data_load(NULL, "fashion-mnist"), "out is NULL");
    CHECK_INPUT(d2c_data_load(&d, NULL), "src is NULL");
    CHECK(d == NULL);
    CHECK_INPUT(d2c_data_load(&d, "folder:/nonexistent"), "/nonexistent");
    CHECK(d == NULL);
    /* the message is per thread: another thread's failure leaves this one's alone */
    int other_ok = 0;
    pthread_t t;
    CHECK(pthread_create(&t, NULL, fail_on_other_thread, &other_ok) == 0);
    pthread_join(t, NULL);
    CHECK(other_ok);
    CHECK(strstr(d2c_last_error(), "/nonexistent") && !strstr(d2c_last_error(), "other-thread"));

    int n;
    const float *img;
    const int64_t *lab;
    const char *s;
    CHECK_INPUT(d2c_data_shape(NULL, &n, NULL, NULL, NULL), "d2c_data_shape");
    CHECK_INPUT(d2c_data_num_classes(NULL, &n), "d2c_data_num_classes");
    CHECK_INPUT(d2c_data_images(NULL, &img), "d2c_data_images");
    CHECK_INPUT(d2c_data_labels(NULL, &lab), "d2c_data_labels");
    CHECK_INPUT(d2c_data_class_name(NULL, 0, &s), "d2c_data_class_name");
    CHECK_INPUT(d2c_data_source(NULL, &s), "d2c_data_source");
    d2c_data_free(NULL);
}

static void test_data(d2c_data *d) {
    int n, c, h, w, k;
    CHECK(d2c_data_shape(d, &n, &c, &h, &w) == D2C_OK && n == 10000 && c == 1 && h == 28 && w == 28);
    CHECK(d2c_data_num_classes(d, &k) == D2C_OK && k == 10);
    const char *name, *src;
    CHECK(d2c_data_class_name(d, 0, &name) == D2C_OK && strcmp(name, "T-shirt/top") == 0);
    CHECK_INPUT(d2c_data_class_name(d, 10, &name), "class 10");
    CHECK_INPUT(d2c_data_class_name(d, -1, &name), "class -1");
    CHECK(d2c_data_source(d, &src) == D2C_OK && strcmp(src, "fashion-mnist:test") == 0);
    const float *img;
    const int64_t *lab;
    CHECK(d2c_data_images(d, &img) == D2C_OK && d2c_data_labels(d, &lab) == D2C_OK);
    int in_range = 1;
    for (size_t i = 0; i < (size_t)n * c * h * w; i++) in_range &= img[i] >= -1 && img[i] <= 1;
    for (int i = 0; i < n; i++) in_range &= lab[i] >= 0 && lab[i] < k;
    CHECK(in_range);
}

/* A tiny config that trains in a fraction of a second. */
static void tiny_train_options(d2c_train_options *o, const char *out) {
    d2c_train_options_init(o);
    o->data = "fashion-mnist:test";
    o->out = out;
    o->steps = 2;
    o->batch = 4;
    o->base_channels = 8;
    o->num_levels = 2;
    o->channel_mult[0] = 1, o->channel_mult[1] = 2;
    o->attn[0] = 0, o->attn[1] = 1, o->attn[2] = 0;
    o->warmup = 0;
    o->quiet = 1;
}

static void test_train_errors(const char *work) {
    d2c_train_options o;
    const char *out = path_in(work, "never.safetensors");
    CHECK_INPUT(d2c_train(NULL, NULL), "d2c_train_options");
    tiny_train_options(&o, out);
    CHECK(o.struct_size == sizeof o);
    o.struct_size = 0;
    CHECK_INPUT(d2c_train(&o, NULL), "struct_size 0");
    o.struct_size = sizeof o + 8; /* a newer header than this library */
    CHECK_INPUT(d2c_train(&o, NULL), "struct_size");
    tiny_train_options(&o, out);
    o.device = "tpu";
    CHECK_INPUT(d2c_train(&o, NULL), "device must be");
    o.device = NULL;
    struct { int field; const char *needle; } bad_int[] = {{0, "--steps"}, {1, "--batch"}, {2, "--ckpt-every"},
                                                           {3, "num_levels"}, {4, "base channels"}};
    for (size_t i = 0; i < sizeof bad_int / sizeof *bad_int; i++) {
        tiny_train_options(&o, out);
        if (bad_int[i].field == 0) o.steps = 0;
        if (bad_int[i].field == 1) o.batch = 0;
        if (bad_int[i].field == 2) o.ckpt_every = 0;
        if (bad_int[i].field == 3) o.num_levels = D2C_MAX_LEVELS + 1;
        if (bad_int[i].field == 4) o.base_channels = 7;
        CHECK_INPUT(d2c_train(&o, NULL), bad_int[i].needle);
    }
    tiny_train_options(&o, out);
    o.lr = NAN;
    CHECK_INPUT(d2c_train(&o, NULL), "--lr");
    tiny_train_options(&o, out);
    o.cond_drop = 1.5;
    CHECK_INPUT(d2c_train(&o, NULL), "--cond-drop");
    tiny_train_options(&o, out);
    o.schedule = "quadratic";
    CHECK_INPUT(d2c_train(&o, NULL), "linear, cosine");
    tiny_train_options(&o, out);
    o.out = NULL;
    CHECK_INPUT(d2c_train(&o, NULL), "--out");
    tiny_train_options(&o, out);
    o.data = "folder:/nonexistent";
    CHECK_INPUT(d2c_train(&o, NULL), "/nonexistent");
    FILE *f = fopen(out, "rb");
    CHECK(f == NULL); /* no failed call left a file */
    if (f) fclose(f);
}

static void test_model(const char *path) {
    d2c_model *m = (d2c_model *)&m;
    CHECK_INPUT(d2c_model_load(&m, "/nonexistent/model.safetensors"), "/nonexistent/model.safetensors");
    CHECK(m == NULL);
    int c, h, w, k;
    int64_t steps, np;
    const char *s;
    CHECK_INPUT(d2c_model_shape(NULL, &c, &h, &w), "d2c_model_shape");
    CHECK_INPUT(d2c_model_num_classes(NULL, &k), "d2c_model_num_classes");
    CHECK_INPUT(d2c_model_config_json(NULL, &s), "d2c_model_config_json");
    test_require_ok(d2c_model_load(&m, path));
    CHECK(d2c_model_shape(m, &c, &h, &w) == D2C_OK && c == 1 && h == 28 && w == 28);
    CHECK(d2c_model_num_classes(m, &k) == D2C_OK && k == 10);
    CHECK(d2c_model_train_steps(m, &steps) == D2C_OK && steps == 2);
    CHECK(d2c_model_num_params(m, &np) == D2C_OK && np > 1000);
    CHECK(d2c_model_schedule(m, &s) == D2C_OK && strcmp(s, "linear") == 0);
    CHECK(d2c_model_config_json(m, &s) == D2C_OK && strstr(s, "\"base_channels\":8") != NULL);
    d2c_model_free(m);
}

static float max_abs_diff(const float *a, const float *b, int n) {
    float m = 0;
    for (int i = 0; i < n; i++) m = fmaxf(m, fabsf(a[i] - b[i]));
    return m;
}

static int all_in_range(const float *x, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!(x[i] >= -1 && x[i] <= 1)) return 0;
    return 1;
}

static void test_sampler(const char *path) {
    d2c_model *m;
    test_require_ok(d2c_model_load(&m, path));
    d2c_sampler *s = (d2c_sampler *)&s;
    d2c_sampler_options o;
    CHECK_INPUT(d2c_sampler_create(&s, NULL, NULL), "model handle");
    CHECK(s == NULL);
    d2c_sampler_options_init(&o);
    o.steps = 0;
    CHECK_INPUT(d2c_sampler_create(&s, m, &o), "steps");
    d2c_sampler_options_init(&o);
    o.sampler = "euler";
    CHECK_INPUT(d2c_sampler_create(&s, m, &o), "ddim, ddpm");
    d2c_sampler_options_init(&o);
    o.guidance = NAN;
    CHECK_INPUT(d2c_sampler_create(&s, m, &o), "guidance");
    d2c_sampler_options_init(&o);
    o.struct_size = 3;
    CHECK_INPUT(d2c_sampler_create(&s, m, &o), "struct_size");
    d2c_sampler_options_init(&o);
    o.device = "gpu";
    CHECK_INPUT(d2c_sampler_create(&s, m, &o), "device must be");
    /* an options struct of the first version (no device field) still works: the default */
    d2c_sampler_options_init(&o);
    o.struct_size = offsetof(d2c_sampler_options, device);
    test_require_ok(d2c_sampler_create(&s, m, &o));
    d2c_sampler_free(s);

    /* DDPM, 3 steps, guidance: batch 1 and batch 4 give the same images (each image has its
     * own noise streams), to float rounding: whether they match bit for bit depends on the
     * BLAS's kernels (OpenBLAS's Haswell sgemm blocks a 1-column and a 4-column product
     * differently, its SkylakeX one does not) */
    d2c_sampler *s1, *s4;
    d2c_sampler_options_init(&o);
    o.sampler = "ddpm";
    o.steps = 3;
    o.guidance = 2;
    o.batch = 1;
    test_require_ok(d2c_sampler_create(&s1, m, &o));
    o.batch = 4;
    test_require_ok(d2c_sampler_create(&s4, m, &o));
    d2c_model_free(m); /* the samplers keep what they need */
    enum { N = 5, D = 28 * 28 };
    int64_t labels[N] = {0, 3, 9, 10, 4}; /* 10 = the null label */
    static float a[N * D], b[N * D], noise[N * D];
    CHECK(d2c_sampler_run_seeded(s1, labels, N, 1, 28, 28, 11, a) == D2C_OK);
    CHECK(d2c_sampler_run_seeded(s4, labels, N, 1, 28, 28, 11, b) == D2C_OK);
    const float batch_diff = max_abs_diff(a, b, N * D);
    CHECK(batch_diff < 1e-4f); /* three network calls, differences scaled by the guidance (2) */
    printf("DDPM batch 1 vs batch 4: max abs difference %g\n", batch_diff);
    CHECK(all_in_range(a, N * D));
    /* given noise, out of place and in place */
    for (int i = 0; i < N * D; i++) noise[i] = (float)sin(0.37 * i);
    CHECK(d2c_sampler_run(s4, noise, labels, N, 1, 28, 28, 5, a) == D2C_OK);
    memcpy(b, noise, sizeof b);
    CHECK(d2c_sampler_run(s4, b, labels, N, 1, 28, 28, 5, b) == D2C_OK);
    CHECK(memcmp(a, b, sizeof a) == 0 && all_in_range(a, N * D));

    /* the error paths */
    int c, k;
    CHECK(d2c_sampler_shape(s4, &c, NULL, NULL) == D2C_OK && c == 1);
    CHECK(d2c_sampler_num_classes(s4, &k) == D2C_OK && k == 10);
    CHECK_INPUT(d2c_sampler_run(NULL, noise, labels, N, 1, 28, 28, 0, a), "sampler handle");
    CHECK_INPUT(d2c_sampler_run(s4, NULL, labels, N, 1, 28, 28, 0, a), "noise is NULL");
    CHECK_INPUT(d2c_sampler_run_seeded(s4, NULL, N, 1, 28, 28, 0, a), "labels is NULL");
    CHECK_INPUT(d2c_sampler_run_seeded(s4, labels, N, 1, 28, 28, 0, NULL), "out is NULL");
    CHECK_INPUT(d2c_sampler_run_seeded(s4, labels, 0, 1, 28, 28, 0, a), "image count");
    CHECK_INPUT(d2c_sampler_run_seeded(s4, labels, N, 3, 28, 28, 0, a), "(3, 28, 28)");
    CHECK_INPUT(d2c_sampler_run_seeded(s4, labels, N, 1, 32, 32, 0, a), "(1, 28, 28)");
    labels[2] = 11;
    CHECK_INPUT(d2c_sampler_run_seeded(s4, labels, N, 1, 28, 28, 0, a), "label 11 of image 2");
    labels[2] = -1;
    CHECK_INPUT(d2c_sampler_run(s4, noise, labels, N, 1, 28, 28, 0, a), "label -1 of image 2");
    CHECK_INPUT(d2c_sampler_shape(NULL, &c, NULL, NULL), "d2c_sampler_shape");
    d2c_sampler_free(s1);
    d2c_sampler_free(s4);
    d2c_sampler_free(NULL);
}

static void test_condense_and_pool(const char *work) {
    d2c_condense_options o;
    const char *out = path_in(work, "pool.safetensors");
    char out_copy[4096];
    snprintf(out_copy, sizeof out_copy, "%s", out);
    CHECK_INPUT(d2c_condense(NULL, NULL), "d2c_condense_options");
    d2c_condense_options_init(&o);
    o.data = "fashion-mnist:test";
    o.out = out_copy;
    o.quiet = 1;
    CHECK_INPUT(d2c_condense(&o, NULL), "exactly one of --ratio");
    o.ratio = 0.01, o.ipc = 2;
    CHECK_INPUT(d2c_condense(&o, NULL), "exactly one of --ratio");
    o.ratio = 1.5, o.ipc = 0;
    CHECK_INPUT(d2c_condense(&o, NULL), "--ratio");
    o.ratio = 0, o.ipc = 2;
    o.method = "magic";
    CHECK_INPUT(d2c_condense(&o, NULL), "condensation method 'magic'");
    o.method = "d2c";
    o.topk = 10, o.t_candidates = 5;
    CHECK_INPUT(d2c_condense(&o, NULL), "--topk 10 exceeds --t-candidates 5");
    d2c_condense_options_init(&o);
    o.data = "fashion-mnist:test", o.out = out_copy, o.quiet = 1, o.ipc = 2;
    o.iters = -1;
    CHECK_INPUT(d2c_condense(&o, NULL), "--iters");
    o.iters = 100;
    o.jitter = NAN;
    CHECK_INPUT(d2c_condense(&o, NULL), "--jitter");

    /* a real one: a random subset of 2 images per class */
    d2c_condense_options_init(&o);
    o.data = "fashion-mnist:test", o.out = out_copy, o.quiet = 1, o.ipc = 2, o.method = "random";
    double seconds = -1;
    test_require_ok(d2c_condense(&o, &seconds));
    CHECK(seconds >= 0);

    d2c_pool *p = (d2c_pool *)&p;
    CHECK_INPUT(d2c_pool_load(&p, "/nonexistent/pool.safetensors"), "/nonexistent/pool.safetensors");
    CHECK(p == NULL);
    test_require_ok(d2c_pool_load(&p, out_copy));
    int n, c, h, w, k, ipc, e;
    const float *img, *cond;
    const int64_t *lab;
    CHECK(d2c_pool_shape(p, &n, &c, &h, &w) == D2C_OK && n == 20 && c == 1 && h == 28 && w == 28);
    CHECK(d2c_pool_classes(p, &k, &ipc) == D2C_OK && k == 10 && ipc == 2);
    CHECK(d2c_pool_images(p, &img) == D2C_OK && all_in_range(img, (size_t)n * c * h * w));
    CHECK(d2c_pool_labels(p, &lab) == D2C_OK);
    int class_major = 1;
    for (int i = 0; i < n; i++) class_major &= lab[i] == i / ipc;
    CHECK(class_major);
    CHECK(d2c_pool_cond(p, &cond, &e) == D2C_OK && cond == NULL && e == 0);
    CHECK_INPUT(d2c_pool_shape(NULL, &n, NULL, NULL, NULL), "d2c_pool_shape");
    CHECK_INPUT(d2c_pool_images(NULL, &img), "d2c_pool_images");
    d2c_pool_free(p);
}

static void test_evaluator(const char *path, const char *not_an_evaluator, d2c_data *data) {
    d2c_evaluator *e = (d2c_evaluator *)&e;
    CHECK_INPUT(d2c_evaluator_load(&e, NULL, 0), "path is NULL");
    CHECK_INPUT(d2c_evaluator_load(&e, "/nonexistent/evaluator.safetensors", 0), "/nonexistent/evaluator.safetensors");
    CHECK(e == NULL);
    /* a well-formed safetensors file that is not an evaluator: a status, not an exit */
    CHECK_INPUT(d2c_evaluator_load(&e, not_an_evaluator, 0), not_an_evaluator);
    CHECK(e == NULL);
    CHECK_INPUT(d2c_evaluator_load(&e, path, -3), "batch");
    test_require_ok(d2c_evaluator_load(&e, path, 8));
    int c, h, w, D, K;
    const char *id;
    CHECK(d2c_evaluator_shape(e, &c, &h, &w) == D2C_OK && c == 1 && h == 28 && w == 28);
    CHECK(d2c_evaluator_feature_dim(e, &D) == D2C_OK && D > 0);
    CHECK(d2c_evaluator_num_classes(e, &K) == D2C_OK && K == 10);
    CHECK(d2c_evaluator_id(e, &id) == D2C_OK && strstr(id, ":") != NULL);
    enum { N = 20 };
    const float *img;
    const int64_t *lab;
    test_require_ok(d2c_data_images(data, &img));
    test_require_ok(d2c_data_labels(data, &lab));
    float *feats = malloc((size_t)N * D * sizeof(float)), *probs = malloc((size_t)N * K * sizeof(float));
    CHECK(d2c_evaluator_apply(e, img, N, 1, 28, 28, feats, probs) == D2C_OK);
    int rows_ok = 1, correct = 0;
    for (int i = 0; i < N; i++) {
        double sum = 0;
        int best = 0;
        for (int j = 0; j < K; j++) {
            sum += probs[i * K + j];
            if (probs[i * K + j] > probs[i * K + best]) best = j;
        }
        rows_ok &= fabs(sum - 1) < 1e-4;
        correct += best == lab[i];
    }
    CHECK(rows_ok);
    CHECK(correct >= N * 7 / 10); /* the committed evaluator is ~90% accurate on the test split */
    int finite = 1;
    for (int i = 0; i < N * D; i++) finite &= isfinite(feats[i]) != 0;
    CHECK(finite);
    CHECK_INPUT(d2c_evaluator_apply(e, img, N, 3, 28, 28, feats, NULL), "(3, 28, 28)");
    CHECK_INPUT(d2c_evaluator_apply(e, img, 0, 1, 28, 28, feats, NULL), "image count");
    CHECK_INPUT(d2c_evaluator_apply(e, img, N, 1, 28, 28, NULL, NULL), "both NULL");
    CHECK_INPUT(d2c_evaluator_apply(e, NULL, N, 1, 28, 28, feats, NULL), "images is NULL");
    CHECK_INPUT(d2c_evaluator_apply(NULL, img, N, 1, 28, 28, feats, NULL), "evaluator handle");
    CHECK_INPUT(d2c_evaluator_feature_dim(NULL, &D), "d2c_evaluator_feature_dim");

    /* FID: 0 against itself; a shifted copy (same covariance) is |shift|^2 exactly */
    double fid = -1;
    CHECK(d2c_fid(feats, N, feats, N, D, &fid) == D2C_OK && fabs(fid) < 1e-6 * D);
    float *shifted = malloc((size_t)N * D * sizeof(float));
    for (int i = 0; i < N * D; i++) shifted[i] = feats[i] + (i % D == 0 ? 0.5f : 0.0f) + (i % D == 1 ? -0.25f : 0.0f);
    CHECK(d2c_fid(feats, N, shifted, N, D, &fid) == D2C_OK);
    printf("fid of a shifted copy %.6f (|shift|^2 = 0.3125)\n", fid);
    CHECK(fabs(fid - 0.3125) < 1e-3);
    CHECK_INPUT(d2c_fid(NULL, N, feats, N, D, &fid), "a is NULL");
    CHECK_INPUT(d2c_fid(feats, 1, feats, N, D, &fid), "at least 2 points");
    CHECK_INPUT(d2c_fid(feats, N, feats, N, 0, &fid), "feature dimension");
    CHECK_INPUT(d2c_fid(feats, N, feats, N, D, NULL), "fid is NULL");
    shifted[3] = NAN;
    CHECK_INPUT(d2c_fid(feats, N, shifted, N, D, &fid), "non-finite");
    free(shifted);
    free(feats);
    free(probs);
    d2c_evaluator_free(e);
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: test_api WORK_DIR EVALUATOR.safetensors\n");
        return 2;
    }
    const char *work = argv[1];
    test_version_and_threads();
    test_data_errors();
    d2c_data *data;
    test_require_ok(d2c_data_load(&data, "fashion-mnist:test"));
    test_data(data);
    test_train_errors(work);
    char model[4096];
    snprintf(model, sizeof model, "%s", path_in(work, "model.safetensors"));
    d2c_train_options o;
    tiny_train_options(&o, model);
    double loss = -1;
    test_require_ok(d2c_train(&o, &loss));
    CHECK(isfinite(loss) && loss > 0);
    test_model(model);
    test_sampler(model);
    test_condense_and_pool(work);
    test_evaluator(argv[2], model, data);
    d2c_data_free(data);
    return test_finish();
}

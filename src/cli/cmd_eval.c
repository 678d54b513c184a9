/* `d2c eval`: quality of generated samples against a reference data set, measured with
 * the evaluator ConvNet: FID on its penultimate features (a Frechet distance on this
 * evaluator's features, not Inception's), Inception Score on its class probabilities,
 * precision/recall/density/coverage (k = 3) in its feature space, and class accuracy of
 * the samples against the labels they were generated for. Prints a table and writes the
 * METRICS JSON of INTERFACE.md. Reference features are cached (see eval/refstats.h). */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "core/rng.h"
#include "core/util.h"
#include "d2c.h"
#include "eval/evaluator.h"
#include "eval/metrics.h"
#include "eval/refstats.h"
#include "io/dataset.h"
#include "io/safetensors.h"

static const char *USAGE =
    "usage: d2c eval --samples SAMPLES.safetensors --ref SRC[:train|:test] --out METRICS.json [options]\n"
    "Measures samples (images F32 (N,C,H,W) in [-1,1], labels I64 (N)) against the reference\n"
    "images of SRC with the evaluator network: FID (a Frechet distance on the evaluator's\n"
    "features, not Inception's), Inception Score (10 splits, samples in a fixed shuffled order),\n"
    "precision/recall/density/coverage (k = 3) and class accuracy. The default evaluator is the\n"
    "committed one for the data set (models/evaluator-*.safetensors). Reference features are\n"
    "cached per evaluator and reference in --cache-dir.";

static const char *FID_NOTE =
    "fid is the Frechet distance between Gaussians fitted to this evaluator's penultimate "
    "features (not Inception-v3's); compare it only with numbers from the same evaluator";

/* A subset of at most max_ref images of d, chosen by a fixed-seed shuffle and kept in
 * data-set order; d itself when it is small enough. */
static Dataset *limit_reference(Dataset *d, int max_ref, Dataset *store) {
    if (max_ref <= 0 || d->n <= max_ref) return d;
    int *idx = xcalloc((size_t)d->n, sizeof *idx);
    for (int i = 0; i < d->n; i++) idx[i] = i;
    Rng r = rng_stream(0, RNG_EVAL, 0);
    rng_shuffle(&r, idx, d->n);
    char *keep = xcalloc((size_t)d->n, 1);
    for (int i = 0; i < max_ref; i++) keep[idx[i]] = 1;
    int m = 0;
    for (int i = 0; i < d->n; i++)
        if (keep[i]) idx[m++] = i;
    *store = dataset_subset(d, idx, m);
    size_t n = strlen(d->source) + 32;
    free(store->source);
    store->source = xmalloc(n);
    snprintf(store->source, n, "%s[max-ref %d]", d->source, max_ref);
    free(idx);
    free(keep);
    return store;
}

static void add_number_or_null(cJSON *o, const char *key, double v) {
    if (isfinite(v)) cJSON_AddNumberToObject(o, key, v);
    else cJSON_AddNullToObject(o, key);
}

static void write_json(const char *path, const QualityMetrics *q, const EvaluatorInfo *info, const char *ref_src,
                       const char *samples, const RefFeatures *rf, int feature_dim, double seconds) {
    cJSON *o = cJSON_CreateObject();
    add_number_or_null(o, "fid", q->fid);
    add_number_or_null(o, "is_mean", q->is_mean);
    add_number_or_null(o, "is_std", q->is_std);
    add_number_or_null(o, "precision", q->precision);
    add_number_or_null(o, "recall", q->recall);
    add_number_or_null(o, "density", q->density);
    add_number_or_null(o, "coverage", q->coverage);
    add_number_or_null(o, "class_accuracy", q->class_accuracy);
    cJSON_AddNumberToObject(o, "n_samples", q->n_samples);
    cJSON_AddNumberToObject(o, "n_ref", q->n_ref);
    cJSON_AddStringToObject(o, "evaluator", info->id);
    cJSON_AddStringToObject(o, "evaluator_hash", info->hash);
    cJSON_AddStringToObject(o, "evaluator_file", info->path);
    add_number_or_null(o, "evaluator_test_accuracy", info->test_accuracy);
    cJSON_AddStringToObject(o, "ref", ref_src);
    cJSON_AddStringToObject(o, "samples", samples);
    cJSON_AddNumberToObject(o, "feature_dim", feature_dim);
    cJSON_AddNumberToObject(o, "prdc_k", METRICS_PRDC_K);
    cJSON_AddNumberToObject(o, "is_splits", METRICS_IS_SPLITS);
    cJSON_AddStringToObject(o, "ref_cache", rf->cache);
    cJSON_AddStringToObject(o, "fid_note", FID_NOTE);
    cJSON_AddStringToObject(o, "device", "cpu");
    cJSON_AddNumberToObject(o, "seconds", round(seconds * 1000) / 1000);
    cJSON_AddStringToObject(o, "d2c_version", D2C_VERSION);
    char *text = cJSON_Print(o);
    cJSON_Delete(o);
    AtomicFile af;
    d2c_die_on_error(atomic_open(&af, path));
    fputs(text, af.f);
    fputc('\n', af.f);
    d2c_die_on_error(atomic_commit(&af));
    free(text);
}

int cmd_eval(int argc, char **argv) {
    const char *samples = NULL, *ref_src = NULL, *out = NULL, *eval_path = NULL, *device = "cpu";
    const char *cache_opt = NULL;
    int threads = 2, max_ref = 10000, batch = 256, no_cache = 0, quiet = 0;
    Option opts[] = {
        {"samples", OPT_STRING, &samples, 1, 0, "samples file: images F32 (N,C,H,W), labels I64 (N) (required)", 0},
        {"ref", OPT_STRING, &ref_src, 1, 0, "reference data source, e.g. fashion-mnist:test (required)", 0},
        {"out", OPT_STRING, &out, 1, 0, "METRICS JSON to write (required)", 0},
        {"evaluator", OPT_STRING, &eval_path, 1, 0, "evaluator file (default: the committed one for the data)", 0},
        {"max-ref", OPT_INT, &max_ref, 0, 1e9, "use at most N reference images, a fixed random subset (default 10000, 0 = all)", 0},
        {"cache-dir", OPT_STRING, &cache_opt, 1, 0, "reference-feature cache (default $XDG_CACHE_HOME/d2c or ~/.cache/d2c)", 0},
        {"no-cache", OPT_FLAG, &no_cache, 1, 0, "neither read nor write the reference cache", 0},
        {"batch", OPT_INT, &batch, 1, 4096, "images per evaluator call (default 256)", 0},
        {"threads", OPT_INT, &threads, 1, 256, "CPU threads (default 2)", 0},
        {"device", OPT_STRING, &device, 1, 0, "cpu or cuda (default cpu)", 0},
        {"quiet", OPT_FLAG, &quiet, 1, 0, "no progress output and no table", 0},
        {NULL, 0, NULL, 0, 0, NULL, 0},
    };
    D2C_TRY(parse_options("eval", USAGE, opts, argc, argv, 2));
    D2C_TRY(require_option("eval", opts, "samples"));
    D2C_TRY(require_option("eval", opts, "ref"));
    D2C_TRY(require_option("eval", opts, "out"));
    D2C_TRY(check_device("eval", device));
    apply_threads(threads);
    d2c_die_on_error(check_writable(out));
    double t0 = now_seconds();

    /* the samples: checked before any long work */
    StFile *sf;
    d2c_die_on_error(st_open(&sf, samples));
    const StTensor *it = st_find(sf, "images");
    if (!it) die_input("%s: no 'images' tensor (expected F32 (N, C, H, W))", samples);
    if (it->ndim != 4) die_input("%s: 'images' has %d dimensions, expected 4 (N, C, H, W)", samples, it->ndim);
    const int n = (int)it->shape[0], C = (int)it->shape[1], H = (int)it->shape[2], W = (int)it->shape[3];
    if (n < 1) die_input("%s: holds no images", samples);
    const float *images;
    d2c_die_on_error(st_require_f32(sf, "images", 4, it->shape, &images));
    for (size_t i = 0, m = (size_t)n * C * H * W; i < m; i++)
        if (!isfinite(images[i])) die_input("%s: 'images' holds a non-finite value at flat index %zu", samples, i);
    const int64_t *labels = NULL;
    if (st_find(sf, "labels")) {
        int64_t shp[1] = {n};
        d2c_die_on_error(st_require_i64(sf, "labels", 1, shp, &labels));
    }

    Dataset ref_full, ref_small = {0};
    d2c_die_on_error(dataset_load(&ref_full, ref_src));
    Dataset *ref = limit_reference(&ref_full, max_ref, &ref_small);
    char *default_eval = eval_path ? NULL : evaluator_default_path(ref_src, ref->c, ref->h, ref->w);
    Evaluator net;
    EvaluatorInfo info;
    evaluator_load(&net, &info, eval_path ? eval_path : default_eval, batch);
    const EvalArch *a = &net.lay.arch;
    const int K = a->num_classes, D = net.lay.feature_dim;
    if (ref->c != a->in_channels || ref->h != a->height || ref->w != a->width)
        die_input("--ref %s: images are %dx%dx%d (CxHxW) but the evaluator %s takes %dx%dx%d", ref_src, ref->c, ref->h,
                  ref->w, info.path, a->in_channels, a->height, a->width);
    if (C != a->in_channels)
        die_input("%s: images have %d channel(s) but the evaluator %s takes %d", samples, C, info.path, a->in_channels);
    if (H != a->height || W != a->width)
        die_input("%s: images are %dx%d but the evaluator %s takes %dx%d", samples, H, W, info.path, a->height, a->width);
    if (n < METRICS_IS_SPLITS || n <= METRICS_PRDC_K)
        die_input("%s: %d images; the metrics need at least %d", samples, n, METRICS_IS_SPLITS);
    if (ref->n <= METRICS_PRDC_K) die_input("--ref %s: %d images; the metrics need at least %d", ref_src, ref->n, METRICS_PRDC_K + 1);
    if (labels)
        for (int i = 0; i < n; i++)
            if (labels[i] < 0 || labels[i] >= K)
                die_input("%s: label %lld of image %d is outside the evaluator's classes 0..%d", samples,
                          (long long)labels[i], i, K - 1);

    char *cache_dir = no_cache ? NULL : cache_opt ? xstrdup(cache_opt) : ref_cache_default_dir();
    RefFeatures rf;
    ref_features_get(&rf, &net, &info, ref, cache_dir, quiet ? NULL : "eval reference");
    double t_ref = now_seconds() - t0;
    float *feats = xmalloc_floats((size_t)n * D), *probs = xmalloc_floats((size_t)n * K);
    evaluator_apply(&net, images, n, feats, probs, quiet ? NULL : "eval samples");

    /* The Inception Score cuts the samples into consecutive splits; a fixed shuffle first
     * keeps a class-sorted samples file from scoring each class on its own. Every other
     * metric ignores the order. */
    int *perm = xcalloc((size_t)n, sizeof *perm);
    for (int i = 0; i < n; i++) perm[i] = i;
    Rng shuffle = rng_stream(0, RNG_EVAL, 1);
    rng_shuffle(&shuffle, perm, n);
    float *probs_mixed = xmalloc_floats((size_t)n * K);
    int64_t *labels_mixed = xcalloc((size_t)n, sizeof *labels_mixed); /* zeros without labels */
    for (int i = 0; i < n; i++) {
        memcpy(probs_mixed + (size_t)i * K, probs + (size_t)perm[i] * K, sizeof(float) * K);
        if (labels) labels_mixed[i] = labels[perm[i]];
    }
    QualityInputs in = {.real_feats = rf.feats, .n_ref = rf.n, .real_stats = &rf.stats, .fake_feats = feats,
                        .fake_probs = probs_mixed, .fake_labels = labels_mixed, .n_samples = n,
                        .d = D, .n_classes = K};
    QualityMetrics q = quality_metrics_compute(&in);
    if (!labels) q.class_accuracy = NAN;
    double seconds = now_seconds() - t0;
    write_json(out, &q, &info, ref_src, samples, &rf, D, seconds);

    if (!quiet) {
        printf("d2c eval: %d samples of %s vs %d reference images of %s\n", n, samples, rf.n, ref->source);
        printf("evaluator %s (%s)\n", info.id, info.path);
        printf("  %-15s %10.4f   (Frechet distance on the evaluator's %d-d features, not Inception)\n", "FID", q.fid, D);
        printf("  %-15s %10.4f +- %.4f (%d splits)\n", "IS", q.is_mean, q.is_std, METRICS_IS_SPLITS);
        printf("  %-15s %10.4f\n  %-15s %10.4f\n", "precision", q.precision, "recall", q.recall);
        printf("  %-15s %10.4f\n  %-15s %10.4f\n", "density", q.density, "coverage", q.coverage);
        if (labels) printf("  %-15s %10.4f\n", "class accuracy", q.class_accuracy);
        else printf("  %-15s %10s   (the samples file has no labels)\n", "class accuracy", "-");
        printf("reference features: cache %s, %.1f s; total %.1f s -> %s\n", rf.cache, t_ref, seconds, out);
    }
    free(perm);
    free(probs_mixed);
    free(labels_mixed);
    free(feats);
    free(probs);
    free(cache_dir);
    free(default_eval);
    ref_features_free(&rf);
    evaluator_destroy(&net);
    if (ref == &ref_small) dataset_free(&ref_small);
    dataset_free(&ref_full);
    st_close(sf);
    return 0;
}

/* Several evaluators measuring the same images against one reference (suite.h), the
 * consensus across them, and the calibration anchor of an evaluator file. */
#include "eval/suite.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "core/util.h"

SuiteOptions suite_default_options(void) {
    SuiteOptions o = {.cache_dir = NULL, .batch = 256, .quiet = 0, .kid = kid_default_options()};
    return o;
}

void suite_close(EvaluatorSuite *s) {
    for (int i = 0; i < s->n; i++) {
        if (s->nets && s->nets[i].params) evaluator_destroy(&s->nets[i]);
        if (s->refs) ref_features_free(&s->refs[i]);
    }
    free(s->nets);
    free(s->infos);
    free(s->refs);
    memset(s, 0, sizeof *s);
}

int suite_open(EvaluatorSuite *s, const EvaluatorSet *set, const Dataset *ref, const SuiteOptions *o) {
    memset(s, 0, sizeof *s);
    snprintf(s->name, sizeof s->name, "%s", set->name);
    snprintf(s->ref_source, sizeof s->ref_source, "%s", ref->source);
    s->n = set->n;
    s->default_index = set->default_index;
    s->n_ref = ref->n;
    s->nets = xcalloc((size_t)set->n, sizeof *s->nets);
    s->infos = xcalloc((size_t)set->n, sizeof *s->infos);
    s->refs = xcalloc((size_t)set->n, sizeof *s->refs);
    int st = D2C_OK;
    if (ref->n <= METRICS_PRDC_K) {
        st = d2c_error(D2C_ERR_INPUT, "--ref %s: %d images; the metrics need at least %d", ref->source, ref->n,
                       METRICS_PRDC_K + 1);
        goto fail;
    }
    for (int i = 0; i < set->n; i++) {
        D2C_TRY_GOTO(st, evaluator_load(&s->nets[i], o->engine, &s->infos[i], set->paths[i], o->batch), fail);
        const EvalArch *a = &s->nets[i].lay.arch;
        if (ref->c != a->in_channels || ref->h != a->height || ref->w != a->width) {
            st = d2c_error(D2C_ERR_INPUT, "--ref %s: images are %dx%dx%d (CxHxW) but the evaluator %s takes %dx%dx%d",
                           ref->source, ref->c, ref->h, ref->w, set->paths[i], a->in_channels, a->height, a->width);
            goto fail;
        }
        char label[160];
        snprintf(label, sizeof label, "reference under %.100s", s->infos[i].id);
        D2C_TRY_GOTO(st, ref_features_get(&s->refs[i], &s->nets[i], &s->infos[i], ref, o->cache_dir,
                                          o->quiet ? NULL : label), fail);
        RefFeatures *rf = &s->refs[i]; /* radii once, for every sample set measured against it */
        rf->radii = xmalloc((size_t)rf->n * sizeof(double));
        D2C_TRY_GOTO(st, knn_radii(rf->feats, rf->n, rf->d, METRICS_PRDC_K, rf->radii), fail);
    }
    return D2C_OK;
fail:
    suite_close(s);
    return st;
}

int suite_measure(EvaluatorSuite *s, const float *images, const int64_t *labels, int n, const SuiteOptions *o,
                  const char *label, EvaluatorResult *out) {
    if (n < METRICS_IS_SPLITS || n <= METRICS_PRDC_K)
        return d2c_error(D2C_ERR_INPUT, "%d images; the metrics need at least %d", n, METRICS_IS_SPLITS);
    /* The Inception Score cuts the samples into consecutive splits; a fixed shuffle first
     * keeps a class-sorted samples file from scoring each class on its own. Every other
     * metric ignores the order. */
    int *perm = xcalloc((size_t)n, sizeof *perm);
    for (int i = 0; i < n; i++) perm[i] = i;
    Rng shuffle = rng_stream(0, RNG_EVAL, 1);
    rng_shuffle(&shuffle, perm, n);
    int64_t *labels_mixed = labels ? xcalloc((size_t)n, sizeof *labels_mixed) : NULL;
    for (int i = 0; labels && i < n; i++) labels_mixed[i] = labels[perm[i]];
    int st = D2C_OK;
    for (int e = 0; e < s->n && st == D2C_OK; e++) {
        Evaluator *net = &s->nets[e];
        const EvalArch *a = &net->lay.arch;
        const int K = a->num_classes, D = net->lay.feature_dim;
        if (labels)
            for (int i = 0; i < n; i++)
                if (labels[i] < 0 || labels[i] >= K) {
                    st = d2c_error(D2C_ERR_INPUT, "label %lld of image %d is outside the evaluator's classes 0..%d",
                                   (long long)labels[i], i, K - 1);
                    break;
                }
        if (st != D2C_OK) break;
        float *feats = xmalloc_floats((size_t)n * D), *probs = xmalloc_floats((size_t)n * K);
        float *probs_mixed = xmalloc_floats((size_t)n * K);
        char line[192];
        snprintf(line, sizeof line, "%.60s under %.100s", label ? label : "", s->infos[e].id);
        evaluator_apply(net, images, n, feats, probs, label && !o->quiet ? line : NULL);
        for (int i = 0; i < n; i++) memcpy(probs_mixed + (size_t)i * K, probs + (size_t)perm[i] * K, sizeof(float) * K);
        QualityInputs in = {.real_feats = s->refs[e].feats, .n_ref = s->refs[e].n, .real_stats = &s->refs[e].stats,
                            .fake_feats = feats, .fake_probs = probs_mixed, .fake_labels = labels_mixed,
                            .n_samples = n, .d = D, .n_classes = K, .kid = &o->kid, .real_radii = s->refs[e].radii};
        st = quality_metrics_compute(&in, &out[e].q);
        out[e].fid_ratio = isfinite(s->infos[e].anchor_fid) && s->infos[e].anchor_fid > 0
                               ? out[e].q.fid / s->infos[e].anchor_fid : NAN;
        if (st != D2C_OK) d2c_error_context(st, "%s: ", s->infos[e].id);
        free(feats);
        free(probs);
        free(probs_mixed);
    }
    free(perm);
    free(labels_mixed);
    return st;
}

double suite_consensus(const EvaluatorResult *r, int n, int *n_used) {
    double log_sum = 0;
    int used = 0;
    for (int i = 0; i < n; i++)
        if (isfinite(r[i].fid_ratio) && r[i].fid_ratio > 0) {
            log_sum += log(r[i].fid_ratio);
            used++;
        }
    if (n_used) *n_used = used;
    return used ? exp(log_sum / used) : NAN;
}

/* ---------------------------------------------------------------- shared helpers */

Dataset *eval_limit_dataset(Dataset *d, int max_n, Dataset *store) {
    if (max_n <= 0 || d->n <= max_n) return d;
    int *idx = xcalloc((size_t)d->n, sizeof *idx);
    for (int i = 0; i < d->n; i++) idx[i] = i;
    Rng r = rng_stream(0, RNG_EVAL, 0);
    rng_shuffle(&r, idx, d->n);
    char *keep = xcalloc((size_t)d->n, 1);
    for (int i = 0; i < max_n; i++) keep[idx[i]] = 1;
    int m = 0;
    for (int i = 0; i < d->n; i++)
        if (keep[i]) idx[m++] = i;
    *store = dataset_subset(d, idx, m);
    size_t len = strlen(d->source) + 32;
    free(store->source);
    store->source = xmalloc(len);
    snprintf(store->source, len, "%s[max-ref %d]", d->source, max_n);
    free(idx);
    free(keep);
    return store;
}

void eval_add_noise(float *images, size_t count, float sigma, uint64_t seed, uint64_t stream) {
    Rng r = rng_stream(seed, RNG_EVAL, stream);
    for (size_t i = 0; i < count; i++) {
        float v = images[i] + sigma * rng_normal(&r);
        images[i] = v < -1.0f ? -1.0f : v > 1.0f ? 1.0f : v;
    }
}

/* ---------------------------------------------------------------- calibration */

enum { ANCHOR_IMAGES = 10000, ANCHOR_STREAM = 1 << 21 };
#define ANCHOR_SIGMA 0.1f

int evaluator_calibrate(const char *path, const char *data, const SuiteOptions *o, double *fid, double *kid) {
    *fid = *kid = NAN;
    char base[1024], src[1100];
    snprintf(base, sizeof base, "%s", data);
    size_t len = strlen(base);
    if (len > 6 && strcmp(base + len - 6, ":train") == 0) base[len - 6] = 0;
    if (len > 5 && strcmp(base + len - 5, ":test") == 0) base[len - 5] = 0;
    snprintf(src, sizeof src, "%s:train", base);
    Dataset train, test, small = {0};
    D2C_TRY(dataset_load(&train, src));
    snprintf(src, sizeof src, "%s:test", base);
    int st = dataset_load(&test, src);
    if (st != D2C_OK) {
        dataset_free(&train);
        return st;
    }
    Dataset *anchor = eval_limit_dataset(&train, ANCHOR_IMAGES, &small);
    size_t count = (size_t)anchor->n * anchor->c * anchor->h * anchor->w;
    float *noisy = xmalloc_floats(count);
    memcpy(noisy, anchor->images, count * sizeof(float));
    eval_add_noise(noisy, count, ANCHOR_SIGMA, 0, ANCHOR_STREAM);
    EvaluatorSet set = {.n = 1, .default_index = 0};
    snprintf(set.name, sizeof set.name, "calibrate");
    char *p = xstrdup(path);
    set.paths = &p;
    EvaluatorSuite suite;
    EvaluatorResult r;
    st = suite_open(&suite, &set, &test, o);
    if (st == D2C_OK) {
        st = suite_measure(&suite, noisy, NULL, anchor->n, o, o->quiet ? NULL : "anchor", &r);
        suite_close(&suite);
    }
    if (st == D2C_OK) {
        char f[64], k[64], desc[1400];
        snprintf(f, sizeof f, "%.6g", r.q.fid);
        snprintf(k, sizeof k, "%.6g", r.q.kid);
        snprintf(desc, sizeof desc, "FID/KID of %d images of %s:train (fixed subset) + N(0, %.2f^2) noise clipped to "
                 "[-1, 1], against the %d images of %s:test", anchor->n, base, (double)ANCHOR_SIGMA, test.n, base);
        const char *keys[] = {"anchor_fid", "anchor_kid", "anchor"}, *vals[] = {f, k, desc};
        st = evaluator_set_metadata(path, 3, keys, vals);
        *fid = r.q.fid;
        *kid = r.q.kid;
    }
    free(p);
    free(noisy);
    if (anchor == &small) dataset_free(&small);
    dataset_free(&train);
    dataset_free(&test);
    return st;
}

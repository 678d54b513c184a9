/* Behaviour of the metrics on real Fashion-MNIST through a trained evaluator (the
 * committed one): 2000 images per set, so it runs in seconds.
 *   - FID between a test subset and a disjoint train subset is small;
 *   - FID rises monotonically with the strength of Gaussian noise added to the samples;
 *   - FID rises and precision falls as samples are replaced by noise images (precision
 *     not for spatial-v1, whose feature space puts noise inside the real manifold);
 *   - coverage, IS and recall fall as samples collapse onto fewer classes (recall not for
 *     the autoencoder, whose collapsed sets' k-NN balls stay wide);
 *   - the evaluator classifies the real samples well (class accuracy; for the
 *     autoencoder, its linear probe).
 * Every evaluator given is checked the same way.
 *
 * Usage: test_evaluator_data EVALUATOR.safetensors [EVALUATOR.safetensors ...] */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "core/util.h"
#include "eval/evaluator.h"
#include "eval/metrics.h"
#include "io/dataset.h"
#include "testing.h"
#include "engine/backend.h"

enum { NSET = 2000 };

typedef struct {
    float *feats;   /* (NSET, D) */
    float *probs;   /* (NSET, K) */
    int64_t *labels; /* (NSET) */
} Set;

static Evaluator g_net;
static int g_D, g_K;
static size_t g_img;

static Set set_from_images(const float *images, const int64_t *labels) {
    Set s = {xmalloc_floats((size_t)NSET * g_D), xmalloc_floats((size_t)NSET * g_K), xcalloc(NSET, sizeof(int64_t))};
    evaluator_apply(&g_net, images, NSET, s.feats, s.probs, NULL);
    memcpy(s.labels, labels, NSET * sizeof(int64_t));
    return s;
}

static void set_free(Set *s) {
    free(s->feats);
    free(s->probs);
    free(s->labels);
}

static QualityMetrics measure(const Set *real, const Set *fake) {
    QualityInputs in = {.real_feats = real->feats, .n_ref = NSET, .fake_feats = fake->feats,
                        .fake_probs = fake->probs, .fake_labels = fake->labels, .n_samples = NSET,
                        .d = g_D, .n_classes = g_K};
    QualityMetrics q;
    CHECK(quality_metrics_compute(&in, &q) == D2C_OK);
    return q;
}

/* NSET train images, NSET/m from each of the classes 0..m-1. */
static Set collapsed_set(const Dataset *train, const ClassIndex *ci, int m) {
    int idx[NSET], fits = 1;
    for (int i = 0; i < NSET; i++) {
        int k = i % m, j = i / m;
        if (j >= class_index_count(ci, k)) fits = 0, j = 0;
        idx[i] = ci->index[ci->start[k] + j];
    }
    CHECK(fits);
    Dataset sub = dataset_subset(train, idx, NSET);
    Set s = set_from_images(sub.images, sub.labels);
    dataset_free(&sub);
    return s;
}

static void check_evaluator(const char *path) {
    double t0 = now_seconds();
    EvaluatorInfo info;
    CHECK(evaluator_load(&g_net, NULL, &info, path, 256) == D2C_OK);
    g_D = g_net.lay.feature_dim;
    g_K = g_net.lay.arch.num_classes;
    printf("evaluator %s (%s)\n", info.id, info.path);
    Dataset test, train;
    test_require_ok(dataset_load(&test, "fashion-mnist:test"));
    test_require_ok(dataset_load(&train, "fashion-mnist:train"));
    g_img = (size_t)test.c * test.h * test.w;
    ClassIndex ci = class_index_build(&train);

    Set real = set_from_images(test.images, test.labels); /* the first NSET test images */
    Set fake10 = collapsed_set(&train, &ci, 10);           /* disjoint: the train split */

    /* FID(test subset, train subset) small, and the samples classified correctly */
    QualityMetrics q_real = measure(&real, &fake10);
    printf("test vs train subsets: FID %.3f IS %.3f precision %.3f recall %.3f class acc %.3f\n", q_real.fid,
           q_real.is_mean, q_real.precision, q_real.recall, q_real.class_accuracy);
    CHECK(q_real.class_accuracy > (info.kind == EVAL_KIND_AE ? 0.7 : 0.88));
    CHECK(q_real.precision > 0.6 && q_real.recall > 0.6);

    /* FID rises monotonically with added Gaussian noise (clipped to [-1, 1]) */
    const float sigmas[] = {0.05f, 0.1f, 0.2f, 0.4f, 0.8f};
    float *noisy = xmalloc_floats((size_t)NSET * g_img);
    int idx10[NSET];
    for (int i = 0; i < NSET; i++) idx10[i] = ci.index[ci.start[i % 10] + i / 10];
    Dataset base = dataset_subset(&train, idx10, NSET);
    double prev = q_real.fid, fid_big = 0;
    for (int s = 0; s < 5; s++) {
        Rng r = rng_stream(7, RNG_EVAL, (uint64_t)s);
        for (size_t i = 0; i < (size_t)NSET * g_img; i++) {
            float v = base.images[i] + sigmas[s] * rng_normal(&r);
            noisy[i] = v < -1.0f ? -1.0f : v > 1.0f ? 1.0f : v;
        }
        Set sn = set_from_images(noisy, base.labels);
        QualityMetrics q = measure(&real, &sn);
        printf("noise sigma %.2f: FID %.3f precision %.3f recall %.3f\n", sigmas[s], q.fid, q.precision, q.recall);
        CHECK(q.fid > prev);
        prev = fid_big = q.fid;
        set_free(&sn);
    }
    CHECK(q_real.fid < 0.05 * fid_big);

    /* FID rises and precision falls as samples are replaced by noise images. Measured
     * limitation, kept visible: spatial-v1 maps uniform-noise images inside the real
     * manifold (its precision rises with the noise fraction, to 0.92 for pure noise), so
     * for that kind only FID and density-free checks apply (docs/EVALUATION.md). */
    const int precision_reliable = info.kind != EVAL_KIND_SPATIAL;
    Rng r = rng_stream(8, RNG_EVAL, 0);
    for (size_t i = 0; i < (size_t)NSET * g_img; i++) noisy[i] = 2.0f * rng_uniform(&r) - 1.0f;
    Set pure = set_from_images(noisy, base.labels);
    Set mixed = set_from_images(base.images, base.labels);
    double prev_p = 2.0, prev_fid = -1;
    const double fracs[] = {0.0, 0.25, 0.5, 0.75, 1.0};
    for (int f = 0; f < 5; f++) {
        int m = (int)(fracs[f] * NSET); /* features are per image: swap rows */
        memcpy(mixed.feats, pure.feats, sizeof(float) * (size_t)m * g_D);
        memcpy(mixed.probs, pure.probs, sizeof(float) * (size_t)m * g_K);
        QualityMetrics q = measure(&real, &mixed);
        printf("noise fraction %.2f: precision %.3f density %.3f FID %.3f%s\n", fracs[f], q.precision, q.density, q.fid,
               precision_reliable ? "" : " (precision not checked for this kind)");
        CHECK(q.fid > prev_fid);
        if (precision_reliable) CHECK(q.precision < prev_p);
        prev_p = q.precision;
        prev_fid = q.fid;
    }
    if (precision_reliable) CHECK(prev_p < 0.25 * q_real.precision); /* all noise: few samples look real */

    /* coverage and IS fall as samples collapse onto fewer classes; so does recall, except
     * in the autoencoder's feature space, where the collapsed sets' k-NN balls are wide
     * enough to hold most real images (measured: recall 0.79 / 0.55 / 0.59 / 0.55 for
     * 10 / 5 / 2 / 1 classes): a measured limitation of recall there, read coverage. */
    const int recall_reliable = info.kind != EVAL_KIND_AE;
    const int modes[] = {10, 5, 2, 1};
    double prev_r = 2.0, prev_c = 2.0, prev_is = 1e9;
    for (int i = 0; i < 4; i++) {
        Set s = i == 0 ? fake10 : collapsed_set(&train, &ci, modes[i]);
        QualityMetrics q = measure(&real, &s);
        printf("%2d classes: recall %.3f coverage %.3f IS %.3f precision %.3f\n", modes[i], q.recall, q.coverage,
               q.is_mean, q.precision);
        if (recall_reliable) CHECK(q.recall < prev_r);
        CHECK(q.coverage < prev_c);
        CHECK(q.is_mean < prev_is);
        prev_r = q.recall;
        prev_c = q.coverage;
        prev_is = q.is_mean;
        if (i) set_free(&s);
    }
    if (recall_reliable) CHECK(prev_r < 0.5 * q_real.recall); /* one class of ten: most real images uncovered */
    CHECK(prev_c < 0.5 * q_real.coverage);
    printf("%.1f s\n", now_seconds() - t0);

    free(noisy);
    dataset_free(&base);
    set_free(&pure);
    set_free(&mixed);
    set_free(&real);
    set_free(&fake10);
    class_index_free(&ci);
    dataset_free(&test);
    dataset_free(&train);
    evaluator_destroy(&g_net);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s EVALUATOR.safetensors [EVALUATOR.safetensors ...]\n", argv[0]);
        return 2;
    }
    engine_set_num_threads(2);
    for (int i = 1; i < argc; i++) check_evaluator(argv[i]);
    return test_finish();
}

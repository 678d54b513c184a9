/* d2c_evaluator and d2c_fid (d2c.h): a thin handle over eval/evaluator.h's network and
 * eval/metrics.h's Frechet distance. */
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "core/util.h"
#include "eval/evaluator.h"
#include "eval/metrics.h"

#define EVAL_DEFAULT_BATCH 256
#define EVAL_MAX_IMAGES 10000000
#define FID_MAX_DIM 8192 /* the covariances are (D, D) doubles */

struct d2c_evaluator {
    Evaluator net;
    EvaluatorInfo info;
};

int d2c_evaluator_load(d2c_evaluator **out, const char *path, int batch) {
    const char *fn = "d2c_evaluator_load";
    API_NOT_NULL(fn, out, "out");
    *out = NULL;
    API_NOT_NULL(fn, path, "path");
    if (batch == 0) batch = EVAL_DEFAULT_BATCH;
    D2C_TRY(api_check_count(fn, "batch", batch, 4096));
    d2c_evaluator *e = d2c_try_malloc(sizeof *e);
    if (!e) return D2C_ERR_FAIL;
    memset(e, 0, sizeof *e);
    int st = evaluator_load(&e->net, NULL, &e->info, path, batch);
    if (st != D2C_OK) {
        free(e);
        return st;
    }
    *out = e;
    return D2C_OK;
}

void d2c_evaluator_free(d2c_evaluator *e) {
    if (!e) return;
    evaluator_destroy(&e->net);
    free(e);
}

int d2c_evaluator_shape(const d2c_evaluator *e, int *c, int *h, int *w) {
    API_NOT_NULL("d2c_evaluator_shape", e, "the evaluator handle");
    if (c) *c = e->net.lay.arch.in_channels;
    if (h) *h = e->net.lay.arch.height;
    if (w) *w = e->net.lay.arch.width;
    return D2C_OK;
}

int d2c_evaluator_feature_dim(const d2c_evaluator *e, int *d) {
    API_NOT_NULL("d2c_evaluator_feature_dim", e, "the evaluator handle");
    API_NOT_NULL("d2c_evaluator_feature_dim", d, "d");
    *d = e->net.lay.feature_dim;
    return D2C_OK;
}

int d2c_evaluator_num_classes(const d2c_evaluator *e, int *k) {
    API_NOT_NULL("d2c_evaluator_num_classes", e, "the evaluator handle");
    API_NOT_NULL("d2c_evaluator_num_classes", k, "k");
    *k = e->net.lay.arch.num_classes;
    return D2C_OK;
}

int d2c_evaluator_id(const d2c_evaluator *e, const char **id) {
    API_NOT_NULL("d2c_evaluator_id", e, "the evaluator handle");
    API_NOT_NULL("d2c_evaluator_id", id, "id");
    *id = e->info.id;
    return D2C_OK;
}

int d2c_evaluator_apply(d2c_evaluator *e, const float *images, int n, int c, int h, int w, float *features,
                        float *probs) {
    const char *fn = "d2c_evaluator_apply";
    API_NOT_NULL(fn, e, "the evaluator handle");
    API_NOT_NULL(fn, images, "images");
    if (!features && !probs) return d2c_error(D2C_ERR_INPUT, "%s: features and probs are both NULL", fn);
    D2C_TRY(api_check_count(fn, "the image count n", n, EVAL_MAX_IMAGES));
    const EvalArch *a = &e->net.lay.arch;
    D2C_TRY(api_check_shape(fn, c, h, w, a->in_channels, a->height, a->width));
    evaluator_apply(&e->net, images, n, features, probs, NULL);
    return D2C_OK;
}

int d2c_fid(const float *a, int na, const float *b, int nb, int d, double *fid) {
    const char *fn = "d2c_fid";
    API_NOT_NULL(fn, fid, "fid");
    *fid = 0;
    API_NOT_NULL(fn, a, "a");
    API_NOT_NULL(fn, b, "b");
    if (na < 2 || nb < 2)
        return d2c_error(D2C_ERR_INPUT, "%s: a covariance needs at least 2 points per set, got %d and %d", fn, na, nb);
    D2C_TRY(api_check_count(fn, "the feature dimension d", d, FID_MAX_DIM));
    FeatureStats sa = {0}, sb = {0};
    int st = feature_stats_compute(&sa, a, na, d);
    if (st == D2C_OK) st = feature_stats_compute(&sb, b, nb, d);
    if (st == D2C_OK) st = fid_from_stats(&sa, &sb, fid);
    feature_stats_free(&sa);
    feature_stats_free(&sb);
    return st;
}

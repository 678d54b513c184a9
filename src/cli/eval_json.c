/* JSON pieces shared by `d2c eval` and `d2c evaluator ladder`: one evaluator's result
 * object, and numbers that are null when undefined. */
#include "cli/eval_json.h"

#include <math.h>

void json_number_or_null(cJSON *o, const char *key, double v) {
    if (isfinite(v)) cJSON_AddNumberToObject(o, key, v);
    else cJSON_AddNullToObject(o, key);
}

cJSON *eval_result_json(const EvaluatorInfo *info, const Evaluator *net, const EvaluatorResult *r, int is_default,
                        const char *ref_cache) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "evaluator", info->id);
    cJSON_AddStringToObject(o, "evaluator_file", info->path);
    cJSON_AddStringToObject(o, "kind", eval_kind_name(info->kind));
    cJSON_AddNumberToObject(o, "feature_dim", net->lay.feature_dim);
    cJSON_AddBoolToObject(o, "default", is_default);
    json_number_or_null(o, "fid", r->q.fid);
    json_number_or_null(o, "kid", r->q.kid);
    json_number_or_null(o, "kid_std", r->q.kid_std);
    json_number_or_null(o, "precision", r->q.precision);
    json_number_or_null(o, "recall", r->q.recall);
    json_number_or_null(o, "density", r->q.density);
    json_number_or_null(o, "coverage", r->q.coverage);
    json_number_or_null(o, "is_mean", r->q.is_mean);
    json_number_or_null(o, "is_std", r->q.is_std);
    json_number_or_null(o, "class_accuracy", r->q.class_accuracy);
    if (info->kind == EVAL_KIND_AE)
        cJSON_AddStringToObject(o, "probabilities", "linear probe on the autoencoder's detached bottleneck");
    json_number_or_null(o, "anchor_fid", info->anchor_fid);
    json_number_or_null(o, "fid_ratio", r->fid_ratio);
    if (ref_cache) cJSON_AddStringToObject(o, "ref_cache", ref_cache);
    return o;
}

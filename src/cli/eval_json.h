/* JSON pieces shared by the evaluation commands (eval_json.c). */
#ifndef D2C_CLI_EVAL_JSON_H
#define D2C_CLI_EVAL_JSON_H

#include <cjson/cJSON.h>

#include "eval/suite.h"

/* o[key] = v, or null when v is not finite. */
void json_number_or_null(cJSON *o, const char *key, double v);
/* One evaluator's result: evaluator, evaluator_file, kind, feature_dim, default, fid,
 * kid, kid_std, precision, recall, density, coverage, is_mean, is_std, class_accuracy,
 * anchor_fid, fid_ratio (and ref_cache when given). */
cJSON *eval_result_json(const EvaluatorInfo *info, const Evaluator *net, const EvaluatorResult *r, int is_default,
                        const char *ref_cache);

#endif

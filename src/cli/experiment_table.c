/* `d2c experiment`'s evaluation parts: the METRICS keys a cell carries, and whether the
 * evaluators agree on the orderings the table reports. For every learned method and
 * budget the table compares the method with the random subset at that budget by the mean
 * over seeds of each evaluator's FID (lower is better), of the consensus (lower) and of
 * CAS (higher). Each such cell gets "vs_random" with the per-evaluator verdicts,
 * "evaluators_agree" (no two evaluators' FIDs give opposite verdicts) and
 * "all_measures_agree" (nor the consensus or CAS); when the evaluators disagree, a
 * "note" says so, and the printed table marks the row DISAGREE. */
#include "cli/experiment_table.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/util.h"

void experiment_copy_metrics(cJSON *cell, const cJSON *metrics) {
    const char *copy[] = {"fid", "kid", "kid_std", "is_mean", "is_std", "precision", "recall", "density", "coverage",
                          "class_accuracy", "cas", "consensus", "evaluator", "n_samples", "primary_metric",
                          "per_evaluator", "consensus_detail"};
    for (size_t k = 0; k < sizeof copy / sizeof copy[0]; k++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(metrics, copy[k]);
        if (v) cJSON_AddItemToObject(cell, copy[k], cJSON_Duplicate(v, 1));
    }
}

static const char *cell_str(const cJSON *c, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(c, key);
    return cJSON_IsString(v) ? v->valuestring : "";
}

static double cell_num(const cJSON *c, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(c, key);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

/* FID of evaluator id in the cell's per_evaluator list (NaN when absent). */
static double evaluator_fid(const cJSON *c, const char *id) {
    const cJSON *e;
    cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(c, "per_evaluator"))
        if (strcmp(cell_str(e, "evaluator"), id) == 0) return cell_num(e, "fid");
    return NAN;
}

/* Mean over the cells of (method, budget) of a value; NaN when any is missing. */
typedef double (*CellValue)(const cJSON *c, const char *arg);
static double value_key(const cJSON *c, const char *key) { return cell_num(c, key); }

static double mean_over_seeds(const cJSON *cells, const char *method, double budget, CellValue f, const char *arg) {
    double sum = 0;
    int n = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, cells) {
        if (strcmp(cell_str(c, "method"), method) != 0 || fabs(cell_num(c, "budget") - budget) > 1e-12) continue;
        double v = f(c, arg);
        if (!isfinite(v)) return NAN;
        sum += v;
        n++;
    }
    return n ? sum / n : NAN;
}

/* "better", "worse" or "tie" for the method against random; lower_is_better picks the sense. */
static const char *verdict(double method, double random, int lower_is_better) {
    if (!isfinite(method) || !isfinite(random)) return "undefined";
    if (method == random) return "tie";
    return (method < random) == lower_is_better ? "better" : "worse";
}

void experiment_annotate_agreement(cJSON *cells) {
    int rows = 0;
    const cJSON *c;
    printf("%-10s %-8s %-34s %10s %10s %8s\n", "method", "budget", "evaluator / measure", "method", "random", "verdict");
    cJSON_ArrayForEach(c, cells) {
        const char *method = cell_str(c, "method");
        double budget = cell_num(c, "budget");
        if (strcmp(method, "random") == 0 || strcmp(method, "full") == 0) continue;
        /* the first cell (lowest seed) of each (method, budget) prints the row */
        const cJSON *first = NULL, *d;
        cJSON_ArrayForEach(d, cells)
            if (strcmp(cell_str(d, "method"), method) == 0 && fabs(cell_num(d, "budget") - budget) < 1e-12) {
                first = d;
                break;
            }
        if (isnan(mean_over_seeds(cells, "random", budget, value_key, "fid"))) continue; /* no random cell here */
        cJSON *vs = cJSON_CreateObject();
        cJSON *per = cJSON_AddArrayToObject(vs, "per_evaluator");
        int better = 0, worse = 0;
        const cJSON *e;
        cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(c, "per_evaluator")) {
            const char *id = cell_str(e, "evaluator");
            double m = mean_over_seeds(cells, method, budget, evaluator_fid, id);
            double r = mean_over_seeds(cells, "random", budget, evaluator_fid, id);
            const char *v = verdict(m, r, 1);
            better += strcmp(v, "better") == 0;
            worse += strcmp(v, "worse") == 0;
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "evaluator", id);
            cJSON_AddNumberToObject(o, "mean_fid", m);
            cJSON_AddNumberToObject(o, "random_mean_fid", r);
            cJSON_AddStringToObject(o, "verdict", v);
            cJSON_AddItemToArray(per, o);
            if (c == first) printf("%-10s %-8g %-34s %10.4f %10.4f %8s\n", method, budget, id, m, r, v);
        }
        const char *measures[] = {"consensus", "cas"};
        for (int k = 0; k < 2; k++) {
            double m = mean_over_seeds(cells, method, budget, value_key, measures[k]);
            double r = mean_over_seeds(cells, "random", budget, value_key, measures[k]);
            char key[32];
            snprintf(key, sizeof key, "%s_verdict", measures[k]);
            const char *v = verdict(m, r, k == 0);
            cJSON_AddStringToObject(vs, key, v);
            better += strcmp(v, "better") == 0 ? 1 << 8 : 0; /* counted apart from the evaluators */
            worse += strcmp(v, "worse") == 0 ? 1 << 8 : 0;
            if (c == first) printf("%-10s %-8g %-34s %10.4f %10.4f %8s\n", method, budget, measures[k], m, r, verdict(m, r, k == 0));
        }
        int eb = better & 0xff, ew = worse & 0xff; /* evaluators alone */
        int agree = !(eb && ew);
        cJSON_AddBoolToObject(vs, "evaluators_agree", agree);
        cJSON_AddBoolToObject(vs, "all_measures_agree", !(better && worse));
        cJSON_AddStringToObject(vs, "compared_by", "mean over seeds of each evaluator's fid (lower is better), of "
                                                  "consensus (lower) and of cas (higher), method vs random at this budget");
        if (!agree) {
            char note[160];
            snprintf(note, sizeof note, "the evaluators disagree: %d rank %s above random, %d below", eb, method, ew);
            cJSON_AddStringToObject(vs, "note", note);
            if (c == first) printf("%-10s %-8g DISAGREE: %s\n", method, budget, note);
        }
        cJSON_DeleteItemFromObjectCaseSensitive((cJSON *)c, "vs_random");
        cJSON_AddItemToObject((cJSON *)c, "vs_random", vs);
        rows += c == first;
    }
    if (!rows) printf("(no learned method with a random cell at the same budget)\n");
}

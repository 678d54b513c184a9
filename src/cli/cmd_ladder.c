/* `d2c evaluator ladder`: the sanity ladder (eval/ladder.h) measured by every evaluator
 * of a set: per evaluator and set FID, KID, precision, recall, density, coverage; pass or
 * fail of every required ordering (on FID and on KID); Spearman's rank correlation of
 * FID (and of KID) between every pair of evaluators over the ladder's sets, over extra
 * --samples files (model samples) and over both, with each evaluator's mean correlation
 * with the others. Exit status 0 even when an ordering fails: the JSON says which. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "cli/eval_cli.h"
#include "cli/eval_json.h"
#include "core/util.h"
#include "d2c.h"
#include "eval/ladder.h"
#include "eval/suite.h"

static const char *USAGE =
    "usage: d2c evaluator ladder --data SRC --out LADDER.json [--n 10000] [--n-ref 10000]\n"
    "                            [--evaluator F1,F2,...] [--samples S1,S2,...] [options]\n"
    "Measures the sanity ladder (real test images; + noise sigma 0.05/0.1/0.2; blurred; memorised\n"
    "subsets of 0.6n/0.06n/0.006n images repeated to n; half the classes only) against n-ref\n"
    "training images with every evaluator of SRC's set, checks the required orderings, and reports\n"
    "the rank correlation between evaluators over the ladder and over extra samples files.";

enum { OVER_LADDER, OVER_SAMPLES, OVER_ALL };
static const char *OVER_NAMES[] = {"ladder", "samples", "all"};

/* metric 0 FID, 1 KID of result r */
static double metric_of(const EvaluatorResult *r, int metric) { return metric ? r->q.kid : r->q.fid; }

/* Spearman matrix (E, E) of metric over the sets selected by `over`; returns the number
 * of sets used. */
static int spearman_matrix(const Ladder *l, const EvaluatorResult *res, int E, int metric, int over, double *mat) {
    double *x = xmalloc(sizeof(double) * (size_t)l->n_sets), *y = xmalloc(sizeof(double) * (size_t)l->n_sets);
    int m = 0;
    for (int a = 0; a < E; a++)
        for (int b = 0; b < E; b++) {
            m = 0;
            for (int s = 0; s < l->n_sets; s++) {
                int use = over == OVER_ALL || (over == OVER_SAMPLES) == l->sets[s].is_samples;
                if (!use) continue;
                x[m] = metric_of(&res[(size_t)s * E + a], metric);
                y[m] = metric_of(&res[(size_t)s * E + b], metric);
                m++;
            }
            mat[a * E + b] = spearman(x, y, m);
        }
    free(x);
    free(y);
    return m;
}

static cJSON *spearman_json(const Ladder *l, const EvaluatorSuite *s, const EvaluatorResult *res, int metric,
                            int over, double *mean_out) {
    int E = s->n;
    double *mat = xmalloc(sizeof(double) * (size_t)E * E);
    int m = spearman_matrix(l, res, E, metric, over, mat);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "metric", metric ? "kid" : "fid");
    cJSON_AddStringToObject(o, "over", OVER_NAMES[over]);
    cJSON_AddNumberToObject(o, "n_sets", m);
    cJSON *rows = cJSON_AddArrayToObject(o, "matrix");
    cJSON *means = cJSON_AddArrayToObject(o, "mean_with_others");
    for (int a = 0; a < E; a++) {
        cJSON *row = cJSON_CreateArray();
        double sum = 0;
        int cnt = 0;
        for (int b = 0; b < E; b++) {
            double v = mat[a * E + b];
            cJSON_AddItemToArray(row, isfinite(v) ? cJSON_CreateNumber(v) : cJSON_CreateNull());
            if (b != a && isfinite(v)) sum += v, cnt++;
        }
        cJSON_AddItemToArray(rows, row);
        double mean = cnt ? sum / cnt : NAN;
        if (mean_out) mean_out[a] = mean;
        cJSON_AddItemToArray(means, isfinite(mean) ? cJSON_CreateNumber(mean) : cJSON_CreateNull());
    }
    free(mat);
    return o;
}

int cmd_evaluator_ladder(int argc, char **argv) {
    const char *data = "fashion-mnist", *out = NULL, *eval_list = NULL, *samples_list = NULL, *cache_opt = NULL;
    const char *device = "cpu";
    int n = 10000, n_ref = 10000, threads = 2, batch = 256, no_cache = 0, quiet = 0;
    Option opts[] = {
        {"data", OPT_STRING, &data, 1, 0, "data source with train and test splits (default fashion-mnist)", 0},
        {"out", OPT_STRING, &out, 1, 0, "ladder JSON to write (required)", 0},
        {"n", OPT_INT, &n, 100, 1e7, "images per set (default 10000)", 0},
        {"n-ref", OPT_INT, &n_ref, 100, 1e7, "reference training images (default 10000)", 0},
        {"evaluator", OPT_STRING, &eval_list, 1, 0, "evaluator files, comma-separated (default: the committed set)", 0},
        {"samples", OPT_STRING, &samples_list, 1, 0, "extra samples files (model samples), comma-separated", 0},
        {"cache-dir", OPT_STRING, &cache_opt, 1, 0, "reference-feature cache (default as d2c eval)", 0},
        {"no-cache", OPT_FLAG, &no_cache, 1, 0, "neither read nor write the reference cache", 0},
        {"batch", OPT_INT, &batch, 1, 4096, "images per evaluator call (default 256)", 0},
        {"threads", OPT_INT, &threads, 1, 256, "CPU threads (default 2)", 0},
        {"device", OPT_STRING, &device, 1, 0, "cpu or cuda (default cpu)", 0},
        {"quiet", OPT_FLAG, &quiet, 1, 0, "no progress output and no table", 0},
        {NULL, 0, NULL, 0, 0, NULL, 0},
    };
    D2C_TRY(parse_options("evaluator ladder", USAGE, opts, argc, argv, 3));
    D2C_TRY(require_option("evaluator ladder", opts, "out"));
    Engine *eng;
    D2C_TRY(open_device("evaluator ladder", device, &eng));
    apply_threads(threads);
    D2C_TRY(check_writable(out));
    double t0 = now_seconds();
    /* everything below is released at `done`, on success and on every error */
    int st = D2C_OK;
    Ladder l = {0};
    EvaluatorSet set = {0};
    EvaluatorSuite s = {0};
    EvaluatorResult *res = NULL;
    double *mean_all = NULL;
    char *cache_dir = NULL, *buf = NULL;
    cJSON *o = NULL;
    D2C_TRY_GOTO(st, ladder_build(&l, data, n, n_ref), done);
    if (samples_list) {
        buf = xstrdup(samples_list);
        for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
            if (*tok) D2C_TRY_GOTO(st, ladder_add_samples(&l, tok), done);
    }
    D2C_TRY_GOTO(st, eval_list ? evaluator_set_from_list(&set, eval_list)
                               : evaluator_set_for_ref(&set, data, l.test.c, l.test.h, l.test.w), done);
    SuiteOptions so = suite_default_options();
    cache_dir = no_cache ? NULL : cache_opt ? xstrdup(cache_opt) : ref_cache_default_dir();
    so.cache_dir = cache_dir;
    so.batch = batch;
    so.quiet = quiet;
    so.engine = eng;
    D2C_TRY_GOTO(st, suite_open(&s, &set, l.ref, &so), done);
    const int E = s.n;
    res = xcalloc((size_t)l.n_sets * E, sizeof *res); /* (sets, E) */
    for (int i = 0; i < l.n_sets; i++) {
        st = suite_measure(&s, l.sets[i].images, l.sets[i].labels, l.sets[i].n, &so, quiet ? NULL : l.sets[i].name,
                           res + (size_t)i * E);
        if (st != D2C_OK) {
            d2c_error_context(st, "ladder set %s: ", l.sets[i].name);
            goto done;
        }
    }

    o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "data", data);
    cJSON_AddStringToObject(o, "ref", l.ref->source);
    cJSON_AddNumberToObject(o, "n", n);
    cJSON_AddNumberToObject(o, "n_ref", l.ref->n);
    cJSON *ev = cJSON_AddArrayToObject(o, "evaluators");
    for (int e = 0; e < E; e++) cJSON_AddItemToArray(ev, cJSON_CreateString(s.infos[e].id));
    cJSON *sets = cJSON_AddArrayToObject(o, "sets");
    for (int i = 0; i < l.n_sets; i++) {
        cJSON *so_ = cJSON_CreateObject();
        cJSON_AddStringToObject(so_, "name", l.sets[i].name);
        cJSON_AddStringToObject(so_, "type", l.sets[i].is_samples ? "samples" : "ladder");
        cJSON_AddNumberToObject(so_, "n", l.sets[i].n);
        cJSON *per = cJSON_AddArrayToObject(so_, "per_evaluator");
        for (int e = 0; e < E; e++)
            cJSON_AddItemToArray(per, eval_result_json(&s.infos[e], &s.nets[e], &res[(size_t)i * E + e],
                                                       e == s.default_index, NULL));
        json_number_or_null(so_, "consensus", suite_consensus(res + (size_t)i * E, E, NULL));
        cJSON_AddItemToArray(sets, so_);
    }
    cJSON *ords = cJSON_AddArrayToObject(o, "orderings");
    int all_pass = 1;
    for (int e = 0; e < E; e++)
        for (int k = 0; k < LADDER_ORDERS; k++) {
            const EvaluatorResult *lo = &res[(size_t)LADDER_ORDER[k].lower * E + e];
            const EvaluatorResult *hi = &res[(size_t)LADDER_ORDER[k].higher * E + e];
            int fid_ok = lo->q.fid < hi->q.fid, kid_ok = lo->q.kid < hi->q.kid;
            all_pass &= fid_ok && kid_ok;
            cJSON *oo = cJSON_CreateObject();
            cJSON_AddStringToObject(oo, "evaluator", s.infos[e].id);
            cJSON_AddStringToObject(oo, "lower", l.sets[LADDER_ORDER[k].lower].name);
            cJSON_AddStringToObject(oo, "higher", l.sets[LADDER_ORDER[k].higher].name);
            cJSON_AddBoolToObject(oo, "fid_ok", fid_ok);
            cJSON_AddBoolToObject(oo, "kid_ok", kid_ok);
            cJSON_AddItemToArray(ords, oo);
        }
    cJSON_AddBoolToObject(o, "all_orderings_pass", all_pass);
    cJSON *sp = cJSON_AddArrayToObject(o, "spearman");
    mean_all = xcalloc((size_t)E, sizeof(double));
    int n_samples = l.n_sets - LADDER_SETS;
    for (int metric = 0; metric < 2; metric++)
        for (int over = 0; over < 3; over++) {
            if (over != OVER_LADDER && n_samples < 1) continue;
            /* the default-choice number: FID over all sets (the ladder alone when there are no samples) */
            int headline = metric == 0 && over == (n_samples > 0 ? OVER_ALL : OVER_LADDER);
            cJSON_AddItemToArray(sp, spearman_json(&l, &s, res, metric, over, headline ? mean_all : NULL));
        }
    int best = 0;
    for (int e = 1; e < E; e++)
        if (mean_all[e] > mean_all[best]) best = e;
    cJSON_AddStringToObject(o, "most_consistent", E > 1 ? s.infos[best].id : s.infos[0].id);
    cJSON_AddStringToObject(o, "most_consistent_rule", "highest mean Spearman correlation of FID with the other evaluators over all sets");
    cJSON_AddNumberToObject(o, "seconds", round((now_seconds() - t0) * 10) / 10);
    cJSON_AddStringToObject(o, "d2c_version", D2C_VERSION);
    char *text = cJSON_Print(o);
    AtomicFile af;
    st = atomic_open(&af, out);
    if (st == D2C_OK) {
        fputs(text, af.f);
        fputc('\n', af.f);
        st = atomic_commit(&af);
    }
    free(text);
    if (st != D2C_OK) goto done;

    if (!quiet) {
        printf("d2c evaluator ladder: %d sets of %d images vs %d reference images of %s\n", l.n_sets, n, l.ref->n, l.ref->source);
        for (int e = 0; e < E; e++) {
            printf("%s%s\n  %-40s %10s %10s %7s %7s\n", s.infos[e].id, e == s.default_index ? " (default)" : "", "set",
                   "FID", "KID", "prec", "recall");
            for (int i = 0; i < l.n_sets; i++) {
                const QualityMetrics *q = &res[(size_t)i * E + e].q;
                printf("  %-40.40s %10.4f %10.5f %7.4f %7.4f\n", l.sets[i].name, q->fid, q->kid, q->precision, q->recall);
            }
            for (int k = 0; k < LADDER_ORDERS; k++) {
                const EvaluatorResult *lo = &res[(size_t)LADDER_ORDER[k].lower * E + e];
                const EvaluatorResult *hi = &res[(size_t)LADDER_ORDER[k].higher * E + e];
                int ok = lo->q.fid < hi->q.fid && lo->q.kid < hi->q.kid;
                if (!ok) printf("  FAIL %s < %s (FID %s, KID %s)\n", l.sets[LADDER_ORDER[k].lower].name,
                                l.sets[LADDER_ORDER[k].higher].name, lo->q.fid < hi->q.fid ? "ok" : "wrong",
                                lo->q.kid < hi->q.kid ? "ok" : "wrong");
            }
        }
        printf("orderings: %s; mean Spearman (FID, all sets) with the others:", all_pass ? "all pass" : "SOME FAIL");
        for (int e = 0; e < E; e++) printf(" %s %.3f", s.infos[e].id, mean_all[e]);
        printf("\n-> %s (%.1f s)\n", out, now_seconds() - t0);
    }
done:
    cJSON_Delete(o);
    free(mean_all);
    free(res);
    free(cache_dir);
    free(buf);
    suite_close(&s);
    evaluator_set_free(&set);
    ladder_free(&l);
    return st;
}

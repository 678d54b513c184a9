/* `d2c eval`: quality of generated samples against a reference data set, measured with
 * every committed evaluator of the data set (or the --evaluator list): per evaluator FID
 * (a Frechet distance on that evaluator's features, not Inception's), KID, Inception
 * Score, precision/recall/density/coverage (k = 3) and class accuracy; the consensus
 * across evaluators (eval/suite.h); the classification accuracy score (a classifier
 * trained on the samples alone, tested on the real test split). Prints a table and
 * writes the METRICS JSON of INTERFACE.md, whose top-level metrics are the default
 * evaluator's. Reference features are cached (see eval/refstats.h). */
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
#include "eval/suite.h"
#include "eval/train.h"
#include "io/dataset.h"
#include "io/safetensors.h"

static const char *USAGE =
    "usage: d2c eval --samples SAMPLES.safetensors --ref SRC[:train|:test] --out METRICS.json [options]\n"
    "Measures samples (images F32 (N,C,H,W) in [-1,1], labels I64 (N)) against the reference\n"
    "images of SRC with every committed evaluator of the data set (models/evaluators.json) or the\n"
    "--evaluator list: FID and KID on each evaluator's features (not Inception's), Inception\n"
    "Score, precision/recall/density/coverage (k = 3), class accuracy; the consensus across\n"
    "evaluators (geometric mean of FID / the evaluator's sigma-0.1-noise anchor; lower is better);\n"
    "and the classification accuracy score (CAS) of a classifier trained on the samples alone.\n"
    "Top-level metrics are the default evaluator's. Below 10,000 samples FID is biased: read KID.";

static const char *FID_NOTE =
    "fid is the Frechet distance between Gaussians fitted to the evaluator's features (not "
    "Inception-v3's); compare it only with numbers from the same evaluator and the same number of samples";
static const char *SMALL_N_NOTE =
    "fewer than 10000 samples: FID is biased upwards at small n (by an amount that depends on n and the "
    "evaluator), so compare FID only at equal n; KID is unbiased and is the primary number here";
static const char *CONSENSUS_DEF =
    "geometric mean over the evaluators with an anchor of fid / anchor_fid, where anchor_fid is the FID that "
    "evaluator gives 10000 real training images + N(0, 0.1^2) noise against the test split; 1.0 = as far from "
    "the data as sigma-0.1 noise, lower is better";

enum { HEADLINE_SAMPLES = 10000 };

typedef struct {
    double cas;
    const char *note; /* why cas is null */
    char test_src[1100];
    int n_test;
    double seconds;
} CasRun;

/* CAS of the samples on the test split of ref_src's data set (or cas_test). Status. */
static int run_cas(CasRun *c, const float *images, const int64_t *labels, int n, int C, int H, int W, int K,
                    const char *ref_src, const char *cas_test, const Dataset *ref_full, const CasOptions *o) {
    memset(c, 0, sizeof *c);
    c->cas = NAN;
    if (!labels) {
        c->note = "the samples file has no labels";
        return D2C_OK;
    }
    char *src = cas_test ? xstrdup(cas_test) : eval_test_source(ref_src);
    if (!src) {
        c->note = "the reference has no test split (pass --cas-test SRC)";
        return D2C_OK;
    }
    snprintf(c->test_src, sizeof c->test_src, "%s", src);
    Dataset loaded = {0};
    const Dataset *test = ref_full;
    int st = D2C_OK;
    if (strcmp(src, ref_full->source) != 0 && strcmp(src, ref_src) != 0) {
        if ((st = dataset_load(&loaded, src)) != D2C_OK) goto done;
        test = &loaded;
    }
    if (test->c != C || test->h != H || test->w != W) {
        st = d2c_error(D2C_ERR_INPUT, "--cas-test %s: images are %dx%dx%d, the samples %dx%dx%d", src, test->c, test->h,
                       test->w, C, H, W);
        goto done;
    }
    double t0 = now_seconds();
    st = cas_score(images, labels, n, C, H, W, K, test->images, test->labels, test->n, o, &c->cas);
    c->seconds = now_seconds() - t0;
    c->n_test = test->n;
done:
    if (test == &loaded) dataset_free(&loaded);
    free(src);
    return st;
}

static cJSON *metrics_json(const EvaluatorSuite *s, const EvaluatorResult *r, const CasRun *cas, const CasOptions *co,
                           const char *ref_src, const char *samples, int n, double seconds) {
    const int d = s->default_index;
    const EvaluatorInfo *info = &s->infos[d];
    const QualityMetrics *q = &r[d].q;
    cJSON *o = cJSON_CreateObject();
    json_number_or_null(o, "fid", q->fid);
    json_number_or_null(o, "kid", q->kid);
    json_number_or_null(o, "kid_std", q->kid_std);
    json_number_or_null(o, "is_mean", q->is_mean);
    json_number_or_null(o, "is_std", q->is_std);
    json_number_or_null(o, "precision", q->precision);
    json_number_or_null(o, "recall", q->recall);
    json_number_or_null(o, "density", q->density);
    json_number_or_null(o, "coverage", q->coverage);
    json_number_or_null(o, "class_accuracy", q->class_accuracy);
    json_number_or_null(o, "cas", cas->cas);
    int used = 0;
    double consensus = suite_consensus(r, s->n, &used);
    json_number_or_null(o, "consensus", consensus);
    cJSON_AddNumberToObject(o, "n_samples", n);
    cJSON_AddNumberToObject(o, "n_ref", s->n_ref);
    cJSON_AddStringToObject(o, "evaluator", info->id);
    cJSON_AddStringToObject(o, "evaluator_hash", info->hash);
    cJSON_AddStringToObject(o, "evaluator_file", info->path);
    cJSON_AddStringToObject(o, "evaluator_kind", eval_kind_name(info->kind));
    json_number_or_null(o, "evaluator_test_accuracy", info->test_accuracy);
    cJSON_AddStringToObject(o, "evaluator_set", s->name);
    cJSON_AddStringToObject(o, "primary_metric", n >= HEADLINE_SAMPLES ? "fid" : "kid");
    if (n < HEADLINE_SAMPLES) cJSON_AddStringToObject(o, "small_n_note", SMALL_N_NOTE);
    cJSON *per = cJSON_AddArrayToObject(o, "per_evaluator");
    for (int e = 0; e < s->n; e++)
        cJSON_AddItemToArray(per, eval_result_json(&s->infos[e], &s->nets[e], &r[e], e == d, s->refs[e].cache));
    cJSON *cd = cJSON_AddObjectToObject(o, "consensus_detail");
    cJSON_AddStringToObject(cd, "definition", CONSENSUS_DEF);
    cJSON_AddNumberToObject(cd, "evaluators_used", used);
    cJSON *parts = cJSON_AddArrayToObject(cd, "per_evaluator");
    for (int e = 0; e < s->n; e++) {
        cJSON *p = cJSON_CreateObject();
        cJSON_AddStringToObject(p, "evaluator", s->infos[e].id);
        json_number_or_null(p, "fid", r[e].q.fid);
        json_number_or_null(p, "anchor_fid", s->infos[e].anchor_fid);
        json_number_or_null(p, "ratio", r[e].fid_ratio);
        cJSON_AddItemToArray(parts, p);
    }
    cJSON *cj = cJSON_AddObjectToObject(o, "cas_detail");
    if (cas->note) cJSON_AddStringToObject(cj, "note", cas->note);
    else {
        cJSON_AddStringToObject(cj, "test", cas->test_src);
        cJSON_AddNumberToObject(cj, "n_test", cas->n_test);
        cJSON_AddNumberToObject(cj, "seconds", round(cas->seconds * 10) / 10);
    }
    cJSON_AddNumberToObject(cj, "steps", (double)co->steps);
    cJSON_AddNumberToObject(cj, "batch", co->batch);
    cJSON_AddNumberToObject(cj, "seed", co->seed);
    cJSON_AddNumberToObject(cj, "lr", co->lr);
    cJSON_AddStringToObject(cj, "arch", "convnet-v1 with channels 16,32,32,48,64 (cas_arch)");
    cJSON_AddStringToObject(o, "ref", ref_src);
    cJSON_AddStringToObject(o, "samples", samples);
    cJSON_AddNumberToObject(o, "feature_dim", s->nets[d].lay.feature_dim);
    cJSON_AddNumberToObject(o, "prdc_k", METRICS_PRDC_K);
    cJSON_AddNumberToObject(o, "is_splits", METRICS_IS_SPLITS);
    cJSON_AddNumberToObject(o, "kid_subsets", KID_SUBSETS);
    cJSON_AddNumberToObject(o, "kid_subset_size", D2C_MIN(KID_SUBSET_SIZE, D2C_MIN(n, s->n_ref)));
    cJSON_AddStringToObject(o, "ref_cache", s->refs[d].cache);
    cJSON_AddStringToObject(o, "fid_note", FID_NOTE);
    cJSON_AddStringToObject(o, "device", co->engine ? co->engine->name : "cpu");
    cJSON_AddNumberToObject(o, "seconds", round(seconds * 1000) / 1000);
    cJSON_AddStringToObject(o, "d2c_version", D2C_VERSION);
    return o;
}

static int write_json_file(const char *path, const cJSON *o) {
    char *text = cJSON_Print(o);
    AtomicFile af;
    int st = atomic_open(&af, path);
    if (st == D2C_OK) {
        fputs(text, af.f);
        fputc('\n', af.f);
        st = atomic_commit(&af);
    }
    free(text);
    return st;
}

static void print_table(const EvaluatorSuite *s, const EvaluatorResult *r, const CasRun *cas, int n,
                        const char *samples, const char *out, double seconds) {
    printf("d2c eval: %d samples of %s vs %d reference images of %s\n", n, samples, s->n_ref, s->ref_source);
    printf("  %-34s %9s %9s %8s %9s %7s %7s %8s %7s\n", "evaluator", "FID", "KID", "KID std", "precision", "recall",
           "density", "coverage", "IS");
    for (int e = 0; e < s->n; e++) {
        const QualityMetrics *q = &r[e].q;
        printf("%c %-34s %9.4f %9.5f %8.5f %9.4f %7.4f %7.4f %8.4f %7.3f\n", e == s->default_index ? '*' : ' ',
               s->infos[e].id, q->fid, q->kid, q->kid_std, q->precision, q->recall, q->density, q->coverage,
               q->is_mean);
    }
    int used;
    double c = suite_consensus(r, s->n, &used);
    printf("  consensus %.4f (geometric mean of FID / sigma-0.1 anchor over %d evaluators; lower is better)\n", c, used);
    if (isfinite(cas->cas)) printf("  CAS %.4f (test accuracy of a classifier trained on the samples alone)\n", cas->cas);
    else printf("  CAS -   (%s)\n", cas->note);
    const QualityMetrics *q = &r[s->default_index].q;
    if (isfinite(q->class_accuracy)) printf("  class accuracy %.4f (default evaluator)\n", q->class_accuracy);
    printf("* default evaluator; total %.1f s -> %s\n", seconds, out);
}

int cmd_eval(int argc, char **argv) {
    const char *samples = NULL, *ref_src = NULL, *out = NULL, *eval_list = NULL, *device = "cpu";
    const char *cache_opt = NULL, *cas_test = NULL;
    int threads = 2, max_ref = 10000, batch = 256, no_cache = 0, quiet = 0, no_cas = 0;
    CasOptions co = cas_default_options();
    int cas_steps = (int)co.steps;
    Option opts[] = {
        {"samples", OPT_STRING, &samples, 1, 0, "samples file: images F32 (N,C,H,W), labels I64 (N) (required)", 0},
        {"ref", OPT_STRING, &ref_src, 1, 0, "reference data source, e.g. fashion-mnist:test (required)", 0},
        {"out", OPT_STRING, &out, 1, 0, "METRICS JSON to write (required)", 0},
        {"evaluator", OPT_STRING, &eval_list, 1, 0, "evaluator file or comma list, the first the default (default: the committed set)", 0},
        {"max-ref", OPT_INT, &max_ref, 0, 1e9, "use at most N reference images, a fixed random subset (default 10000, 0 = all)", 0},
        {"cache-dir", OPT_STRING, &cache_opt, 1, 0, "reference-feature cache (default $XDG_CACHE_HOME/d2c or ~/.cache/d2c)", 0},
        {"no-cache", OPT_FLAG, &no_cache, 1, 0, "neither read nor write the reference cache", 0},
        {"no-cas", OPT_FLAG, &no_cas, 1, 0, "skip the classification accuracy score (cas is null)", 0},
        {"cas-steps", OPT_INT, &cas_steps, 1, 1e7, "CAS classifier training steps (default 600)", 0},
        {"cas-test", OPT_STRING, &cas_test, 1, 0, "real labelled images CAS is tested on (default: the ref's test split)", 0},
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
    D2C_TRY(open_device("eval", device, &co.engine));
    apply_threads(threads);
    D2C_TRY(check_writable(out));
    co.steps = cas_steps;
    co.quiet = quiet;
    double t0 = now_seconds();

    /* everything below is released at `done`, on success and on every error */
    int st = D2C_OK;
    StFile *sf = NULL;
    Dataset ref_full = {0}, ref_small = {0};
    EvaluatorSet set = {0};
    EvaluatorSuite suite = {0};
    EvaluatorResult *r = NULL;
    char *cache_dir = NULL;
    Evaluator net = {0};

    /* the samples: checked before any long work */
    D2C_TRY_GOTO(st, st_open(&sf, samples), done);
    const StTensor *it = st_find(sf, "images");
    if (!it) {
        st = d2c_error(D2C_ERR_INPUT, "%s: no 'images' tensor (expected F32 (N, C, H, W))", samples);
        goto done;
    }
    if (it->ndim != 4) {
        st = d2c_error(D2C_ERR_INPUT, "%s: 'images' has %d dimensions, expected 4 (N, C, H, W)", samples, it->ndim);
        goto done;
    }
    const int n = (int)it->shape[0], C = (int)it->shape[1], H = (int)it->shape[2], W = (int)it->shape[3];
    if (n < 1) {
        st = d2c_error(D2C_ERR_INPUT, "%s: holds no images", samples);
        goto done;
    }
    const float *images;
    D2C_TRY_GOTO(st, st_require_f32(sf, "images", 4, it->shape, &images), done);
    for (size_t i = 0, m = (size_t)n * C * H * W; i < m; i++)
        if (!isfinite(images[i])) {
            st = d2c_error(D2C_ERR_INPUT, "%s: 'images' holds a non-finite value at flat index %zu", samples, i);
            goto done;
        }
    const int64_t *labels = NULL;
    if (st_find(sf, "labels")) {
        int64_t shp[1] = {n};
        D2C_TRY_GOTO(st, st_require_i64(sf, "labels", 1, shp, &labels), done);
    }

    D2C_TRY_GOTO(st, dataset_load(&ref_full, ref_src), done);
    Dataset *ref = eval_limit_dataset(&ref_full, max_ref, &ref_small);
    D2C_TRY_GOTO(st, eval_list ? evaluator_set_from_list(&set, eval_list)
                               : evaluator_set_for_ref(&set, ref_src, ref->c, ref->h, ref->w), done);
    SuiteOptions so = suite_default_options();
    cache_dir = no_cache ? NULL : cache_opt ? xstrdup(cache_opt) : ref_cache_default_dir();
    so.cache_dir = cache_dir;
    so.batch = batch;
    so.quiet = quiet;
    so.engine = co.engine;
    /* cheap checks of the samples against every evaluator before the reference passes */
    for (int e = 0; e < set.n; e++) {
        EvaluatorInfo info;
        D2C_TRY_GOTO(st, evaluator_load(&net, NULL, &info, set.paths[e], 1), done);
        const EvalArch *a = &net.lay.arch;
        if (C != a->in_channels)
            st = d2c_error(D2C_ERR_INPUT, "%s: images have %d channel(s) but the evaluator %s takes %d", samples, C,
                           info.path, a->in_channels);
        else if (H != a->height || W != a->width)
            st = d2c_error(D2C_ERR_INPUT, "%s: images are %dx%d but the evaluator %s takes %dx%d", samples, H, W,
                           info.path, a->height, a->width);
        for (int i = 0; st == D2C_OK && labels && i < n; i++)
            if (labels[i] < 0 || labels[i] >= a->num_classes)
                st = d2c_error(D2C_ERR_INPUT, "%s: label %lld of image %d is outside the evaluator's classes 0..%d",
                               samples, (long long)labels[i], i, a->num_classes - 1);
        evaluator_destroy(&net);
        memset(&net, 0, sizeof net);
        if (st != D2C_OK) goto done;
    }
    if (n < METRICS_IS_SPLITS || n <= METRICS_PRDC_K) {
        st = d2c_error(D2C_ERR_INPUT, "%s: %d images; the metrics need at least %d", samples, n, METRICS_IS_SPLITS);
        goto done;
    }
    if (n < HEADLINE_SAMPLES && !quiet)
        report_line("note", "fewer than 10000 samples: FID is biased at small n; KID is the primary number here");

    D2C_TRY_GOTO(st, suite_open(&suite, &set, ref, &so), done);
    r = xcalloc((size_t)suite.n, sizeof *r);
    st = suite_measure(&suite, images, labels, n, &so, quiet ? NULL : "samples", r);
    if (st != D2C_OK) {
        d2c_error_context(st, "%s: ", samples);
        goto done;
    }
    CasRun cas;
    if (no_cas) {
        memset(&cas, 0, sizeof cas);
        cas.cas = NAN;
        cas.note = "skipped (--no-cas)";
    } else {
        const EvalArch *a = &suite.nets[suite.default_index].lay.arch;
        D2C_TRY_GOTO(st, run_cas(&cas, images, labels, n, C, H, W, a->num_classes, ref_src, cas_test, &ref_full, &co),
                     done);
    }
    double seconds = now_seconds() - t0;
    cJSON *o = metrics_json(&suite, r, &cas, &co, ref_src, samples, n, seconds);
    st = write_json_file(out, o);
    cJSON_Delete(o);
    if (st == D2C_OK && !quiet) print_table(&suite, r, &cas, n, samples, out, seconds);
done:
    free(r);
    free(cache_dir);
    suite_close(&suite);
    evaluator_set_free(&set);
    dataset_free(&ref_small);
    dataset_free(&ref_full);
    st_close(sf);
    return st;
}

/* End-to-end tests of `d2c eval` and `d2c evaluator`, run as a user would:
 *   - bad inputs (empty file, no images, wrong image size, wrong channel count, labels
 *     outside the classes, a tampered evaluator, --device cuda, missing options, bad
 *     ladder and calibrate arguments) exit 2 with one "d2c: error:" line;
 *   - a good run writes every METRICS key (per_evaluator for every committed evaluator,
 *     kid, cas, consensus, the small-n note); the second run hits the reference cache
 *     with the same numbers; a corrupt cache entry is recomputed, not fatal;
 *   - `d2c evaluator train` is bit-identical across thread counts for every kind.
 *
 * Usage: test_evaluator_cli D2C_BINARY EVALUATOR.safetensors */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/util.h"
#include "io/dataset.h"
#include "io/safetensors.h"
#include "testing.h"

static const char *g_d2c;
static char g_tmp[] = "/tmp/d2c_test_eval_cli_XXXXXX";

static char *tmp_path(const char *name) {
    static char buf[8][512];
    static int next;
    char *p = buf[next++ % 8];
    snprintf(p, 512, "%s/%s", g_tmp, name);
    return p;
}

/* Runs "d2c ARGS" with stdout and stderr into files; returns the exit status. */
static int run(const char *args) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "\"%s\" %s >%s/out.txt 2>%s/err.txt </dev/null", g_d2c, args, g_tmp, g_tmp);
    int rc = system(cmd);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return xstrdup("");
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    return xstrdup(buf);
}

/* exit status 2 and a stderr that is one "d2c: error:" line mentioning `needle`. */
static void expect_input_error(const char *what, const char *args, const char *needle) {
    int rc = run(args);
    char *err = slurp(tmp_path("err.txt"));
    int ok = rc == 2 && strncmp(err, "d2c: error:", 11) == 0 && strstr(err, needle) != NULL;
    printf("%-4s %-40s exit %d: %s", ok ? "ok" : "FAIL", what, rc, err[0] ? err : "(no stderr)\n");
    CHECK(ok);
    free(err);
}

static void write_samples(const char *name, int n, int c, int h, int w, const float *images, const int64_t *labels) {
    float *zeros = NULL;
    if (!images && n) images = zeros = xcalloc((size_t)n * c * h * w, sizeof(float));
    int64_t *lab = xcalloc((size_t)(n ? n : 1), sizeof *lab);
    if (labels) memcpy(lab, labels, (size_t)n * sizeof *lab);
    StWriter *wr = st_writer_new();
    int64_t shape[4] = {n, c, h, w}, lshape[1] = {n};
    st_add(wr, "images", ST_F32, 4, shape, images ? (const void *)images : (const void *)lab);
    st_add(wr, "labels", ST_I64, 1, lshape, lab);
    test_require_ok(st_write(wr, tmp_path(name)));
    st_writer_free(wr);
    free(zeros);
    free(lab);
}

static cJSON *read_json(const char *name) {
    char *text = slurp(tmp_path(name));
    cJSON *o = cJSON_Parse(text);
    free(text);
    return o;
}

static double num(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

static const char *str(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : "";
}

static void test_bad_inputs(const char *evaluator) {
    char args[2048];
    FILE *f = fopen(tmp_path("empty.safetensors"), "wb");
    fclose(f);
    char out[512];
    snprintf(out, sizeof out, "%s", tmp_path("m.json"));
#define EVAL_ARGS(samples) \
    snprintf(args, sizeof args, "eval --samples %s --ref fashion-mnist:test --max-ref 500 --no-cache --out %s", \
             tmp_path(samples), out)
    EVAL_ARGS("empty.safetensors");
    expect_input_error("empty samples file", args, "empty.safetensors");
    write_samples("none.safetensors", 0, 1, 28, 28, NULL, NULL);
    EVAL_ARGS("none.safetensors");
    expect_input_error("samples file with no images", args, "no images");
    write_samples("size.safetensors", 20, 1, 32, 32, NULL, NULL);
    EVAL_ARGS("size.safetensors");
    expect_input_error("wrong image size", args, "32x32");
    write_samples("chan.safetensors", 20, 3, 28, 28, NULL, NULL);
    EVAL_ARGS("chan.safetensors");
    expect_input_error("wrong channel count", args, "3 channel");
    int64_t bad[20] = {0};
    bad[7] = 10;
    write_samples("label.safetensors", 20, 1, 28, 28, NULL, bad);
    EVAL_ARGS("label.safetensors");
    expect_input_error("label outside the classes", args, "label 10");
    write_samples("few.safetensors", 5, 1, 28, 28, NULL, NULL);
    EVAL_ARGS("few.safetensors");
    expect_input_error("too few samples", args, "at least");
    snprintf(args, sizeof args, "eval --samples %s --ref fashion-mnist:test --out %s --device cuda",
             tmp_path("chan.safetensors"), out);
    expect_input_error("--device cuda in a CPU build", args, "cuda");
    snprintf(args, sizeof args, "eval --samples %s --out %s", tmp_path("chan.safetensors"), out);
    expect_input_error("missing --ref", args, "--ref");
    snprintf(args, sizeof args, "eval --samples %s --ref fashion-mnist:test --out %s --evaluator %s",
             tmp_path("chan.safetensors"), out, tmp_path("empty.safetensors"));
    expect_input_error("evaluator is not a file of weights", args, "empty.safetensors");

    /* a tampered evaluator: one weight byte changed (the last byte of the data section) */
    size_t len;
    unsigned char *bytes;
    test_require_ok(read_whole_file(evaluator, 0, &bytes, &len));
    bytes[len - 1] ^= 0x01;
    f = fopen(tmp_path("tampered.safetensors"), "wb");
    fwrite(bytes, 1, len, f);
    fclose(f);
    free(bytes);
    snprintf(args, sizeof args, "eval --samples %s --ref fashion-mnist:test --out %s --evaluator %s",
             tmp_path("chan.safetensors"), out, tmp_path("tampered.safetensors"));
    expect_input_error("evaluator whose weights fail the hash", args, "hash");
    write_samples("ok.safetensors", 20, 1, 28, 28, NULL, NULL);
    snprintf(args, sizeof args, "eval --samples %s --ref fashion-mnist:test --out %s --evaluator %s,%s",
             tmp_path("ok.safetensors"), out, evaluator, tmp_path("empty.safetensors"));
    expect_input_error("a bad file in an --evaluator list", args, "empty.safetensors");
    CHECK(access(out, F_OK) != 0); /* no METRICS file after any failure */
    snprintf(args, sizeof args, "evaluator ladder --data fashion-mnist --n 20000 --out %s", out);
    expect_input_error("ladder sets larger than the test split", args, "--n 20000");
    snprintf(args, sizeof args, "evaluator ladder --data fashion-mnist --n 1000 --out %s --samples %s", out,
             tmp_path("size.safetensors"));
    expect_input_error("ladder samples of another image size", args, "32x32");
    CHECK(access(out, F_OK) != 0);
    snprintf(args, sizeof args, "evaluator calibrate %s --data fashion-mnist", tmp_path("chan.safetensors"));
    expect_input_error("calibrating a file that is not an evaluator", args, "not a d2c evaluator");
    snprintf(args, sizeof args, "evaluator train --kind cnn --out %s", out);
    expect_input_error("an unknown evaluator kind", args, "cnn");
}

static void test_good_run_and_cache(void) {
    Dataset d;
    test_require_ok(dataset_load(&d, "fashion-mnist:train"));
    write_samples("real.safetensors", 300, 1, 28, 28, d.images, d.labels);
    dataset_free(&d);
    char args[2048];
    /* default evaluator (found beside the binary), cache in the temporary folder */
    snprintf(args, sizeof args, "eval --samples %s --ref fashion-mnist:test --max-ref 1000 --cache-dir %s --out %s "
             "--cas-steps 100", tmp_path("real.safetensors"), tmp_path("cache"), tmp_path("a.json"));
    int rc = run(args);
    CHECK(rc == 0);
    if (rc) printf("d2c eval failed: %s", slurp(tmp_path("err.txt")));
    char *table = slurp(tmp_path("out.txt"));
    CHECK(strstr(table, "FID") && strstr(table, "KID") && strstr(table, "precision") && strstr(table, "consensus"));
    free(table);
    cJSON *a = read_json("a.json");
    const char *keys[] = {"fid", "kid", "kid_std", "is_mean", "is_std", "precision", "recall", "density", "coverage",
                          "class_accuracy", "cas", "consensus", "consensus_detail", "per_evaluator", "n_samples",
                          "n_ref", "evaluator", "evaluator_hash", "evaluator_file", "ref", "fid_note", "small_n_note"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        int has = cJSON_GetObjectItemCaseSensitive(a, keys[i]) != NULL;
        if (!has) printf("FAIL METRICS lacks '%s'\n", keys[i]);
        CHECK(has);
    }
    CHECK(num(a, "n_samples") == 300 && num(a, "n_ref") == 1000);
    CHECK(num(a, "class_accuracy") > 0.85);
    CHECK(strcmp(str(a, "primary_metric"), "kid") == 0); /* 300 < 10000 samples */
    CHECK(strcmp(str(a, "ref_cache"), "miss") == 0);
    /* every committed Fashion-MNIST evaluator reported; the top level is the default's */
    const cJSON *per = cJSON_GetObjectItemCaseSensitive(a, "per_evaluator"), *e;
    int n_eval = 0, n_default = 0, kinds = 0;
    cJSON_ArrayForEach(e, per) {
        n_eval++;
        const char *keys_e[] = {"evaluator", "fid", "kid", "kid_std", "precision", "recall"};
        for (int i = 0; i < 6; i++) CHECK(cJSON_GetObjectItemCaseSensitive(e, keys_e[i]) != NULL);
        if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(e, "default"))) {
            n_default++;
            CHECK(strcmp(str(e, "evaluator"), str(a, "evaluator")) == 0 && num(e, "fid") == num(a, "fid"));
        }
        const char *k = str(e, "kind");
        kinds |= strcmp(k, "pool") == 0 ? 1 : strcmp(k, "spatial") == 0 ? 2 : strcmp(k, "ae") == 0 ? 4 : 0;
        CHECK(isfinite(num(e, "anchor_fid"))); /* the committed evaluators are calibrated */
    }
    printf("per_evaluator: %d evaluators, kinds mask %d, default %s\n", n_eval, kinds, str(a, "evaluator"));
    CHECK(n_eval >= 3 && n_default == 1 && kinds == 7);
    CHECK(isfinite(num(a, "consensus")) && num(a, "consensus") > 0);
    CHECK(num(a, "cas") > 0.4); /* 300 real images, 100 steps: well above chance (0.1) */

    /* second run: the cached reference, the same numbers */
    snprintf(args, sizeof args, "eval --samples %s --ref fashion-mnist:test --max-ref 1000 --cache-dir %s --out %s "
             "--no-cas", tmp_path("real.safetensors"), tmp_path("cache"), tmp_path("b.json"));
    CHECK(run(args) == 0);
    cJSON *b = read_json("b.json");
    CHECK(strcmp(str(b, "ref_cache"), "hit") == 0);
    CHECK(num(a, "fid") == num(b, "fid") && num(a, "recall") == num(b, "recall") && num(a, "kid") == num(b, "kid"));
    CHECK(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(b, "cas"))); /* --no-cas */

    /* a corrupt entry (one byte flipped) is recomputed with a warning */
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "for f in %s/ref-*.bin; do printf 'X' | dd of=\"$f\" bs=1 seek=100 conv=notrunc 2>/dev/null; done",
             tmp_path("cache"));
    CHECK(system(cmd) == 0);
    snprintf(args, sizeof args, "eval --samples %s --ref fashion-mnist:test --max-ref 1000 --cache-dir %s --out %s "
             "--no-cas", tmp_path("real.safetensors"), tmp_path("cache"), tmp_path("c.json"));
    CHECK(run(args) == 0);
    char *err = slurp(tmp_path("err.txt"));
    CHECK(strstr(err, "recomputing") != NULL);
    free(err);
    cJSON *c = read_json("c.json");
    CHECK(strcmp(str(c, "ref_cache"), "miss") == 0);
    CHECK(num(a, "fid") == num(c, "fid"));
    printf("good run: fid %.3f precision %.3f recall %.3f class acc %.3f; cache miss, hit, corrupt -> miss\n",
           num(a, "fid"), num(a, "precision"), num(a, "recall"), num(a, "class_accuracy"));
    cJSON_Delete(a);
    cJSON_Delete(b);
    cJSON_Delete(c);
}

static void train_twice(const char *what, const char *common) {
    char args[2048];
    snprintf(args, sizeof args, "%s --threads 1 --out %s", common, tmp_path("e1.safetensors"));
    CHECK(run(args) == 0);
    snprintf(args, sizeof args, "%s --threads 2 --out %s", common, tmp_path("e2.safetensors"));
    CHECK(run(args) == 0);
    StFile *f1, *f2;
    test_require_ok(st_open(&f1, tmp_path("e1.safetensors")));
    test_require_ok(st_open(&f2, tmp_path("e2.safetensors")));
    const char *h1 = st_meta(f1, "hash"), *h2 = st_meta(f2, "hash");
    printf("train %s twice (1 and 2 threads): %s %s\n", what, h1 ? h1 : "-", h2 ? h2 : "-");
    CHECK(h1 && h2 && strcmp(h1, h2) == 0);
    st_close(f1);
    st_close(f2);
    snprintf(args, sizeof args, "evaluator info %s", tmp_path("e1.safetensors"));
    CHECK(run(args) == 0);
}

static void test_train_determinism(void) {
    const char *base = "evaluator train --data fashion-mnist --limit 1200 --val 200 --epochs 1 --batch 50 "
                       "--no-test --quiet --seed 4";
    char common[1024];
    snprintf(common, sizeof common, "%s --channels 8,16 --strides 2,2", base);
    train_twice("pool", common);
    snprintf(common, sizeof common, "%s --kind spatial --channels 8,16 --strides 2,2 --hidden 32", base);
    train_twice("spatial", common);
    snprintf(common, sizeof common, "%s --kind ae --channels 8,8 --strides 2,2 --hidden 16 --decoder-channels 8,8,8",
             base);
    train_twice("ae", common);
    char args[2048];
    snprintf(args, sizeof args, "evaluator train --data fashion-mnist:test --out %s", tmp_path("e3.safetensors"));
    expect_input_error("training on the test split", args, "test split");
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s D2C_BINARY EVALUATOR.safetensors\n", argv[0]);
        return 2;
    }
    g_d2c = argv[1];
    CHECK(mkdtemp(g_tmp) != NULL);
    test_bad_inputs(argv[2]);
    test_good_run_and_cache();
    test_train_determinism();
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s", g_tmp);
    if (system(cmd) != 0) printf("could not remove %s\n", g_tmp);
    return test_finish();
}

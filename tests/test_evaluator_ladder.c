/* The sanity ladder at a CI size, through `d2c evaluator ladder` with every committed
 * Fashion-MNIST evaluator: each must order the sets correctly on FID and on KID (real <
 * noise 0.05 < 0.1 < 0.2, real < blur, memorised 600 < 60 < 6, real < half the
 * classes), and the rank correlations are reported. Then the classification accuracy
 * score: deterministic for a seed (two runs, the same value to the bit), and far higher
 * for real training images than for noise images.
 *
 * Usage: test_evaluator_ladder D2C_BINARY */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/rng.h"
#include "core/util.h"
#include "eval/train.h"
#include "io/dataset.h"
#include "testing.h"
#include "engine/backend.h"

static char g_tmp[] = "/tmp/d2c_test_ladder_XXXXXX";

static void test_ladder(const char *d2c) {
    char cmd[2048], out[512];
    snprintf(out, sizeof out, "%s/ladder.json", g_tmp);
    snprintf(cmd, sizeof cmd, "\"%s\" evaluator ladder --data fashion-mnist --n 1000 --n-ref 2000 --cache-dir %s/cache "
             "--out %s --quiet", d2c, g_tmp, out);
    int rc = system(cmd);
    CHECK(WIFEXITED(rc) && WEXITSTATUS(rc) == 0);
    size_t len = 0;
    unsigned char *text = NULL;
    if (access(out, F_OK) == 0) CHECK(read_whole_file(out, 0, &text, &len) == D2C_OK);
    cJSON *o = text ? cJSON_Parse((const char *)text) : NULL;
    free(text);
    CHECK(o != NULL);
    if (!o) return;
    const cJSON *ev = cJSON_GetObjectItemCaseSensitive(o, "evaluators"), *sets = cJSON_GetObjectItemCaseSensitive(o, "sets");
    int E = cJSON_GetArraySize(ev);
    printf("%d evaluators, %d sets\n", E, cJSON_GetArraySize(sets));
    CHECK(E >= 3 && cJSON_GetArraySize(sets) == 9);
    const cJSON *s, *p;
    cJSON_ArrayForEach(s, sets) {
        printf("  %-22s", cJSON_GetObjectItemCaseSensitive(s, "name")->valuestring);
        cJSON_ArrayForEach(p, cJSON_GetObjectItemCaseSensitive(s, "per_evaluator"))
            printf(" FID %8.4f KID %8.5f |", cJSON_GetObjectItemCaseSensitive(p, "fid")->valuedouble,
                   cJSON_GetObjectItemCaseSensitive(p, "kid")->valuedouble);
        printf("\n");
    }
    const cJSON *ord;
    int n_ord = 0;
    cJSON_ArrayForEach(ord, cJSON_GetObjectItemCaseSensitive(o, "orderings")) {
        int ok = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(ord, "fid_ok")) &&
                 cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(ord, "kid_ok"));
        char what[256];
        snprintf(what, sizeof what, "%s: %s < %s", cJSON_GetObjectItemCaseSensitive(ord, "evaluator")->valuestring,
                 cJSON_GetObjectItemCaseSensitive(ord, "lower")->valuestring,
                 cJSON_GetObjectItemCaseSensitive(ord, "higher")->valuestring);
        printf("%-4s %s\n", ok ? "ok" : "FAIL", what);
        test_check(ok, __FILE__, __LINE__, what);
        n_ord++;
    }
    CHECK(n_ord == 7 * E);
    CHECK(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "all_orderings_pass")));
    const cJSON *sp = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(o, "spearman"), 0), *m;
    CHECK(sp && cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(sp, "matrix")) == E);
    cJSON_ArrayForEach(m, cJSON_GetObjectItemCaseSensitive(sp, "mean_with_others")) {
        printf("mean Spearman of FID with the others over the ladder: %.3f\n", m->valuedouble);
        CHECK(cJSON_IsNumber(m) && m->valuedouble > 0.5); /* the evaluators broadly agree on the ladder */
    }
    cJSON_Delete(o);
}

static void test_cas(void) {
    Dataset train, test;
    test_require_ok(dataset_load(&train, "fashion-mnist:train"));
    test_require_ok(dataset_load(&test, "fashion-mnist:test"));
    enum { N = 2000, N_TEST = 2000 };
    const size_t img = (size_t)train.c * train.h * train.w;
    CasOptions o = cas_default_options();
    o.steps = 200;
    o.quiet = 1;
    double a = NAN, b = NAN, noise = NAN;
    double t0 = now_seconds();
    CHECK(cas_score(train.images, train.labels, N, 1, 28, 28, 10, test.images, test.labels, N_TEST, &o, &a) == D2C_OK);
    double t1 = now_seconds();
    CHECK(cas_score(train.images, train.labels, N, 1, 28, 28, 10, test.images, test.labels, N_TEST, &o, &b) == D2C_OK);
    float *noisy = xmalloc_floats((size_t)N * img);
    Rng r = rng_stream(5, RNG_EVAL, 0);
    for (size_t i = 0; i < (size_t)N * img; i++) noisy[i] = 2.0f * rng_uniform(&r) - 1.0f;
    CHECK(cas_score(noisy, train.labels, N, 1, 28, 28, 10, test.images, test.labels, N_TEST, &o, &noise) == D2C_OK);
    printf("CAS of %d real training images: %.4f and again %.4f (%.1f s); of uniform noise: %.4f\n", N, a, b, t1 - t0,
           noise);
    CHECK(a == b);          /* deterministic for a seed */
    CHECK(a > 0.7);         /* a real training set teaches the classes */
    CHECK(noise < 0.25);    /* noise with labels teaches nothing (chance 0.1) */
    CHECK(a > noise + 0.5);
    /* bad input is a status, not an exit */
    int64_t bad[4] = {0, 1, 2, 11};
    CHECK(cas_score(train.images, bad, 4, 1, 28, 28, 10, test.images, test.labels, 10, &o, &a) == D2C_ERR_INPUT);
    free(noisy);
    dataset_free(&train);
    dataset_free(&test);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s D2C_BINARY\n", argv[0]);
        return 2;
    }
    engine_set_num_threads(2);
    CHECK(mkdtemp(g_tmp) != NULL);
    test_ladder(argv[1]);
    test_cas();
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s", g_tmp);
    if (system(cmd) != 0) printf("could not remove %s\n", g_tmp);
    return test_finish();
}

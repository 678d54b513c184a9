/* The classification accuracy score (CAS; Ravuri & Vinyals 2019): a small classifier is
 * trained on the generated samples alone, with their labels, and tested on the real test
 * split. A model whose samples carry the class information of the data scores close to
 * a classifier trained on real images; noise or wrong-class samples score near chance.
 *
 * The schedule is a fixed number of optimisation steps (not epochs), so the classifier
 * gets the same training whatever the number of samples: CAS then compares what the
 * samples hold, with a fixed budget. It still depends on the number of samples (fewer
 * samples carry less information), so compare CAS at equal sample counts.
 *
 * Shape letters: N samples, C H W image, K classes. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/util.h"
#include "eval/train.h"

CasOptions cas_default_options(void) {
    CasOptions o = {.steps = 600, .batch = 64, .seed = 0, .lr = 2e-3, .warmup = 60};
    return o;
}

EvalArch cas_arch(int C, int H, int W, int K) {
    EvalArch a = eval_arch_default(EVAL_KIND_POOL, C, H, W, K);
    static const int CH[] = {16, 32, 32, 48, 64};
    for (int l = 0; l < 5; l++) a.channels[l] = CH[l];
    return a;
}

int cas_score(const float *images, const int64_t *labels, int n, int C, int H, int W, int K,
              const float *test_images, const int64_t *test_labels, int n_test, const CasOptions *o,
              double *cas) {
    *cas = NAN;
    if (n < 2) return d2c_error(D2C_ERR_INPUT, "CAS: %d samples are too few to train a classifier", n);
    if (n_test < 1) return d2c_error(D2C_ERR_INPUT, "CAS: no test images");
    for (int i = 0; i < n; i++)
        if (labels[i] < 0 || labels[i] >= K)
            return d2c_error(D2C_ERR_INPUT, "CAS: label %lld of sample %d is outside 0..%d", (long long)labels[i], i, K - 1);
    for (int i = 0; i < n_test; i++)
        if (test_labels[i] < 0 || test_labels[i] >= K)
            return d2c_error(D2C_ERR_INPUT, "CAS: test label %lld is outside 0..%d", (long long)test_labels[i], K - 1);
    EvalArch arch = cas_arch(C, H, W, K);
    Evaluator net;
    int batch = D2C_MIN(o->batch, n);
    D2C_TRY(evaluator_create(&net, o->engine, &arch, D2C_MAX(batch, 256)));
    evaluator_init_weights(&net, (uint64_t)o->seed);
    EvalFitOptions fo = {.steps = o->steps, .batch = batch, .seed = o->seed, .lr = o->lr, .warmup = o->warmup,
                         .crop_pad = 0, .flip = 1, .label = o->quiet ? NULL : "cas"};
    EvalFitReport rep;
    int st = evaluator_fit(&net, images, labels, NULL, n, &fo, &rep);
    if (st == D2C_OK) *cas = evaluator_accuracy(&net, test_images, test_labels, n_test);
    evaluator_destroy(&net);
    return st == D2C_OK ? D2C_OK : d2c_error_context(st, "CAS: ");
}

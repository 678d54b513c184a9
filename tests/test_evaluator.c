/* Tests of the evaluator network (src/eval/evaluator*.c) that need no data: softmax
 * cross-entropy and the whole network's backward against central finite differences,
 * the architecture JSON, determinism across thread counts, and the file round trip with
 * its content hash. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/rng.h"
#include "core/util.h"
#include "eval/evaluator.h"
#include "testing.h"

/* Cross-entropy of logits (B, K) against labels, in double (the FD reference). */
static double xent_ref(const float *logits, const int64_t *labels, int B, int K) {
    double loss = 0;
    for (int b = 0; b < B; b++) {
        const float *z = logits + (size_t)b * K;
        double m = z[0], s = 0;
        for (int k = 1; k < K; k++) m = fmax(m, z[k]);
        for (int k = 0; k < K; k++) s += exp(z[k] - m);
        loss += m + log(s) - z[labels[b]];
    }
    return loss / B;
}

static void test_softmax_xent(void) {
    enum { B = 5, K = 7 };
    float logits[B * K], probs[B * K], dlogits[B * K], fd[B * K];
    int64_t labels[B] = {0, 3, 6, 2, 3};
    Rng r = rng_stream(1, RNG_EVAL, 0);
    for (int i = 0; i < B * K; i++) logits[i] = 3.0f * rng_normal(&r);
    logits[K + 1] = 40.0f; /* a confident row: the max subtraction must keep it finite */
    float loss = softmax_xent_forward(probs, logits, labels, B, K);
    CHECK(fabs(loss - xent_ref(logits, labels, B, K)) < 1e-5 * fabs(loss) + 1e-6);
    for (int b = 0; b < B; b++) {
        double s = 0;
        for (int k = 0; k < K; k++) s += probs[b * K + k];
        CHECK(fabs(s - 1.0) < 1e-5);
    }
    /* backward accumulates: start from 1 and subtract it back */
    for (int i = 0; i < B * K; i++) dlogits[i] = 1.0f;
    softmax_xent_backward(dlogits, probs, labels, B, K, 0.5f);
    for (int i = 0; i < B * K; i++) dlogits[i] = (dlogits[i] - 1.0f) * 2.0f;
    const float h = 1e-2f;
    for (int i = 0; i < B * K; i++) {
        float keep = logits[i];
        logits[i] = keep + h;
        double up = xent_ref(logits, labels, B, K);
        logits[i] = keep - h;
        double down = xent_ref(logits, labels, B, K);
        logits[i] = keep;
        fd[i] = (float)((up - down) / (2.0 * h));
    }
    check_close("softmax_xent backward vs finite differences", dlogits, fd, B * K, 1e-3);
}

/* A tiny network: 2-channel 8x8 images, stages (4, s1) (8, s2) (8, s2), 2 groups, 3 classes. */
static EvalArch tiny_arch(void) {
    EvalArch a = {.in_channels = 2, .height = 8, .width = 8, .num_stages = 3, .groups = 2, .num_classes = 3};
    int ch[] = {4, 8, 8}, st[] = {1, 2, 2};
    for (int l = 0; l < 3; l++) a.channels[l] = ch[l], a.strides[l] = st[l];
    return a;
}

static double net_loss(Evaluator *net, const float *x, const int64_t *y, int B) {
    evaluator_forward(net, x, B);
    return xent_ref(net->logits, y, B, net->lay.arch.num_classes);
}

static void test_network_gradients(void) {
    enum { B = 3 };
    EvalArch a = tiny_arch();
    Evaluator net;
    evaluator_create(&net, &a, B);
    eval_init_params(&net.lay, net.params, 5);
    /* non-trivial norm affines, so their gradients are tested away from 1/0 */
    Rng r = rng_stream(2, RNG_EVAL, 0);
    for (int l = 0; l < a.num_stages; l++)
        for (int c = 0; c < a.channels[l]; c++) {
            net.params[net.lay.norm[l].w + c] = 1.0f + 0.3f * rng_normal(&r);
            net.params[net.lay.norm[l].b + c] = 0.3f * rng_normal(&r);
        }
    size_t nx = (size_t)B * a.in_channels * a.height * a.width;
    float *x = xmalloc_floats(nx), *dx = xmalloc_floats(nx), *fdx = xmalloc_floats(nx);
    rng_fill_normal(&r, x, nx);
    int64_t y[B] = {2, 0, 1};
    int K = a.num_classes;
    float dlogits[B * 3] = {0};

    evaluator_forward(&net, x, B);
    softmax_xent_forward(net.probs, net.logits, y, B, K);
    softmax_xent_backward(dlogits, net.probs, y, B, K, 1.0f);
    vec_zero(net.grads, net.lay.n_params);
    vec_zero(dx, nx);
    evaluator_backward(&net, dlogits, dx);

    size_t P = net.lay.n_params;
    float *fd = xmalloc_floats(P);
    const float h = 1e-2f;
    for (size_t i = 0; i < P; i++) {
        float keep = net.params[i];
        net.params[i] = keep + h;
        double up = net_loss(&net, x, y, B);
        net.params[i] = keep - h;
        double down = net_loss(&net, x, y, B);
        net.params[i] = keep;
        fd[i] = (float)((up - down) / (2.0 * h));
    }
    for (int t = 0; t < net.lay.n_tensors; t++) {
        const EvalTensor *ts = &net.lay.tensors[t];
        char name[96];
        snprintf(name, sizeof name, "evaluator d%s vs finite differences", ts->name);
        check_close(name, net.grads + ts->offset, fd + ts->offset, ts->count, 1e-2);
    }
    for (size_t i = 0; i < nx; i++) {
        float keep = x[i];
        x[i] = keep + h;
        double up = net_loss(&net, x, y, B);
        x[i] = keep - h;
        double down = net_loss(&net, x, y, B);
        x[i] = keep;
        fdx[i] = (float)((up - down) / (2.0 * h));
    }
    check_close("evaluator dx vs finite differences", dx, fdx, nx, 1e-2);
    free(x);
    free(dx);
    free(fdx);
    free(fd);
    evaluator_destroy(&net);
}

static void test_arch_json(void) {
    EvalArch a = eval_arch_default(3, 32, 32, 10), b;
    char why[256], *s = eval_arch_to_json(&a);
    CHECK(eval_arch_from_json(s, &b, why, sizeof why) == 0);
    CHECK(memcmp(&a, &b, sizeof a) == 0);
    free(s);
    CHECK(eval_arch_from_json("{\"name\":\"convnet-v1\"}", &b, why, sizeof why) == -1);
    CHECK(eval_arch_from_json("[1,2]", &b, why, sizeof why) == -1);
    a.channels[1] = 12; /* not divisible by 8 groups */
    CHECK(eval_arch_validate(&a, why, sizeof why) == -1);
    EvalLayout lay;
    eval_layout_build(&lay, &(EvalArch){.in_channels = 1, .height = 28, .width = 28, .num_stages = 4,
                                        .channels = {32, 64, 64, 128}, .strides = {1, 2, 1, 2}, .groups = 8,
                                        .num_classes = 10});
    CHECK(lay.feature_dim == 128 && lay.h[3] == 7 && lay.w[3] == 7);
    CHECK(lay.n_params == (size_t)(32 * 9 + 32 + 64) + (64 * 32 * 9 + 64 + 128) + (64 * 64 * 9 + 64 + 128) +
                              (128 * 64 * 9 + 128 + 256) + (10 * 128 + 10));
}

/* Same features for 1 and 2 threads, and for one batch of 7 or batches of 3. */
static void test_determinism(void) {
    EvalArch a = eval_arch_default(1, 28, 28, 10);
    Evaluator big, small;
    evaluator_create(&big, &a, 7);
    evaluator_create(&small, &a, 3);
    eval_init_params(&big.lay, big.params, 9);
    memcpy(small.params, big.params, big.lay.n_params * sizeof(float));
    size_t nx = (size_t)7 * 28 * 28;
    float *x = xmalloc_floats(nx);
    Rng r = rng_stream(3, RNG_EVAL, 0);
    rng_fill_normal(&r, x, nx);
    int D = big.lay.feature_dim;
    float *f1 = xmalloc_floats((size_t)7 * D), *f2 = xmalloc_floats((size_t)7 * D), *f3 = xmalloc_floats((size_t)7 * D);
    set_num_threads(1);
    evaluator_apply(&big, x, 7, f1, NULL, NULL);
    set_num_threads(2);
    evaluator_apply(&big, x, 7, f2, NULL, NULL);
    evaluator_apply(&small, x, 7, f3, NULL, NULL);
    CHECK(memcmp(f1, f2, sizeof(float) * 7 * D) == 0);
    check_close("features: batches of 3 vs one batch of 7", f3, f2, (size_t)7 * D, 1e-5);
    free(x);
    free(f1);
    free(f2);
    free(f3);
    evaluator_destroy(&big);
    evaluator_destroy(&small);
}

static void test_save_load(void) {
    EvalArch a = tiny_arch();
    Evaluator net, back;
    evaluator_create(&net, &a, 4);
    eval_init_params(&net.lay, net.params, 11);
    char path[] = "/tmp/d2c_test_evaluator_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    close(fd);
    EvaluatorMeta meta = {.tag = "tiny", .dataset = "fashion-mnist:train", .command = "test", .seed = 11,
                          .val_accuracy = NAN, .test_accuracy = 0.5};
    EvaluatorInfo saved, loaded;
    evaluator_save(&net, path, &meta, &saved);
    evaluator_load(&back, &loaded, path, 4);
    CHECK(back.lay.n_params == net.lay.n_params);
    CHECK(memcmp(back.params, net.params, net.lay.n_params * sizeof(float)) == 0);
    CHECK(strcmp(saved.hash, loaded.hash) == 0 && strlen(loaded.hash) == 16);
    CHECK(strcmp(saved.id, loaded.id) == 0);
    CHECK(strncmp(loaded.id, "tiny-convnet-v1:", 16) == 0);
    CHECK(fabs(loaded.test_accuracy - 0.5) < 1e-9);
    /* the hash is FNV-1a 64 of the weights: known value for known bytes, sensitive to one bit */
    CHECK(fnv1a64(FNV64_INIT, "a", 1) == 0xaf63dc4c8601ec8cULL);
    uint64_t h0 = evaluator_hash(&net.lay, net.params);
    net.params[5] = nextafterf(net.params[5], 1.0f);
    CHECK(evaluator_hash(&net.lay, net.params) != h0);
    remove(path);
    evaluator_destroy(&net);
    evaluator_destroy(&back);
}

int main(void) {
    set_num_threads(2);
    test_softmax_xent();
    test_network_gradients();
    test_arch_json();
    test_determinism();
    test_save_load();
    return test_finish();
}

/* Training the evaluator networks: the optimisation loop on images in memory
 * (evaluator_fit) and `d2c evaluator train` around it (evaluator_train): a held-out
 * validation split (the last images of every class of the training split: every choice
 * is made on it) and the test split measured once, at the end, only to report.
 * Determinism and augmentation as described in train.h.
 *
 * Shape letters: B batch, C H W image, K classes. */
#include <cjson/cJSON.h>
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/progress.h"
#include "core/rng.h"
#include "core/util.h"
#include "eval/train.h"
#include "io/dataset.h"
#include "model/adam.h"

/* dst (C, H, W) = src shifted by (dy, dx) in [-pad, pad], maybe mirrored; pixels from
 * outside the image are black (-1). Always draws three numbers, so the stream stays
 * aligned whatever pad and flip are. */
static void augment(float *dst, const float *src, int C, int H, int W, int pad, int flip, Rng *r) {
    int dy = (int)rng_below(r, 2 * (uint32_t)pad + 1) - pad;
    int dx = (int)rng_below(r, 2 * (uint32_t)pad + 1) - pad;
    int mirror = (rng_u32(r) & 1) && flip;
    for (int c = 0; c < C; c++)
        for (int y = 0; y < H; y++) {
            int sy = y + dy;
            float *out = dst + ((size_t)c * H + y) * W;
            if (sy < 0 || sy >= H) {
                for (int x = 0; x < W; x++) out[x] = -1.0f;
                continue;
            }
            const float *in = src + ((size_t)c * H + sy) * W;
            for (int x = 0; x < W; x++) {
                int sx = (mirror ? W - 1 - x : x) + dx;
                out[x] = sx >= 0 && sx < W ? in[sx] : -1.0f;
            }
        }
}

static double lr_at(const EvalFitOptions *o, long step, long total) {
    if (step < o->warmup) return o->lr * (step + 1) / o->warmup;
    double t = (double)(step - o->warmup) / (double)D2C_MAX(1, total - o->warmup);
    return o->lr * 0.5 * (1.0 + cos(D2C_PI * t));
}

static long count_correct(const float *probs, const int64_t *labels, int B, int K) {
    long correct = 0;
    for (int b = 0; b < B; b++) {
        const float *p = probs + (size_t)b * K;
        int best = 0;
        for (int k = 1; k < K; k++)
            if (p[k] > p[best]) best = k;
        correct += best == labels[b];
    }
    return correct;
}

int evaluator_fit(Evaluator *net, const float *images, const int64_t *labels, const int *idx, int n,
                  const EvalFitOptions *o, EvalFitReport *rep) {
    const EvalArch *a = &net->lay.arch;
    const int C = a->in_channels, H = a->height, W = a->width, K = a->num_classes, B = o->batch;
    const size_t img = (size_t)C * H * W;
    const int ae = a->kind == EVAL_KIND_AE;
    if (B < 1 || B > net->max_batch) return d2c_error(D2C_ERR_INPUT, "evaluator fit: batch %d is not in 1..%d", B, net->max_batch);
    if (n < B) return d2c_error(D2C_ERR_INPUT, "evaluator fit: %d training images are fewer than one batch (%d)", n, B);
    const long steps_per_epoch = n / B;
    const long total = o->steps > 0 ? o->steps : steps_per_epoch * o->epochs;
    const int epochs = (int)((total + steps_per_epoch - 1) / steps_per_epoch);
    const int by_steps = o->steps > 0;
    memset(rep, 0, sizeof *rep);
    rep->val_accuracy = rep->val_mse = NAN;

    Engine *eng = net->eng;
    Adam opt;
    adam_create(&opt, eng, net->lay.n_params, (float)o->lr);
    float *xb = xmalloc_floats((size_t)B * img);    /* (B, C, H, W) host batch */
    float *drecon = ae ? engine_xalloc_floats(eng, (size_t)B * img) : NULL;
    int64_t *yb = xcalloc((size_t)B, sizeof *yb);    /* (B) */
    /* the cross-entropy runs on the host over (B, K) values: logits down, dlogits up */
    float *logits = xmalloc_floats((size_t)B * K), *probs = xmalloc_floats((size_t)B * K);
    float *dlogits = xmalloc_floats((size_t)B * K);
    float *dlogits_dev = engine_xalloc_floats(eng, (size_t)B * K);
    int *perm = xcalloc((size_t)n, sizeof *perm);
    int st = D2C_OK;
    Progress prog;
    char label[96];
    double t0 = now_seconds();
    long step = 0;
    for (int e = 0; e < epochs && st == D2C_OK; e++) {
        for (int i = 0; i < n; i++) perm[i] = idx ? idx[i] : i;
        Rng shuffle = rng_stream((uint64_t)o->seed, RNG_BATCH, (uint64_t)e);
        rng_shuffle(&shuffle, perm, n);
        double loss_sum = 0;
        long correct = 0, steps_done = 0;
        const long this_epoch = D2C_MIN(steps_per_epoch, total - step);
        if (o->label && (!by_steps || e == 0)) { /* one line per epoch, or one for a fixed number of steps */
            if (by_steps) snprintf(label, sizeof label, "%s", o->label);
            else snprintf(label, sizeof label, "%s epoch %d/%d", o->label, e + 1, epochs);
            progress_begin(&prog, label, 0, by_steps ? total : this_epoch);
        }
        for (long s = 0; s < this_epoch; s++, step++) {
            Rng aug = rng_stream((uint64_t)o->seed, RNG_AUGMENT, (uint64_t)step);
            for (int b = 0; b < B; b++) {
                int i = perm[s * B + b];
                augment(xb + (size_t)b * img, images + (size_t)i * img, C, H, W, o->crop_pad, o->flip, &aug);
                yb[b] = labels[i];
            }
            const float *xd = evaluator_stage(net, xb, B);
            evaluator_forward(net, xd, B);
            engine_download_floats(eng, logits, net->logits, (size_t)B * K);
            float xent = softmax_xent_forward(probs, logits, yb, B, K);
            float loss = xent;
            if (ae) {
                evaluator_reconstruct(net);
                loss = eng->ops->mse_forward(eng, net->recon, xd, (size_t)B * img);
                engine_zero_floats(eng, drecon, (size_t)B * img);
                eng->ops->mse_backward(eng, drecon, net->recon, xd, (size_t)B * img, 1.0f);
            }
            if (!isfinite(loss) || !isfinite(xent)) {
                st = d2c_error(D2C_ERR_FAIL, "evaluator train: the loss became %g at step %ld; lower --lr", loss, step);
                break;
            }
            correct += count_correct(probs, yb, B, K);
            loss_sum += loss;
            steps_done++;
            memset(dlogits, 0, sizeof(float) * (size_t)B * K);
            softmax_xent_backward(dlogits, probs, yb, B, K, 1.0f);
            engine_upload_floats(eng, dlogits_dev, dlogits, (size_t)B * K);
            engine_zero_floats(eng, net->grads, net->lay.n_params);
            evaluator_backward(net, dlogits_dev, drecon, NULL);
            opt.lr = (float)lr_at(o, step, total);
            adam_step(&opt, net->params, net->grads);
            if (o->label) {
                char status[96];
                snprintf(status, sizeof status, "%s %.4f lr %.2e %.0f img/s", ae ? "mse" : "loss", loss, opt.lr,
                         (double)(step + 1) * B / (now_seconds() - t0));
                progress_update(&prog, by_steps ? step + 1 : s + 1, status);
            }
        }
        if (o->label && (!by_steps || e == epochs - 1 || st != D2C_OK)) progress_end(&prog);
        if (st != D2C_OK) break;
        rep->train_loss = loss_sum / D2C_MAX(1, steps_done);
        if (o->n_val > 0) {
            rep->val_accuracy = evaluator_accuracy(net, o->val_images, o->val_labels, o->n_val);
            if (ae) rep->val_mse = evaluator_recon_mse(net, o->val_images, o->n_val);
        }
        if (o->label && !by_steps) {
            char extra[64] = "";
            if (ae) snprintf(extra, sizeof extra, " val mse %.5f", rep->val_mse);
            fprintf(stderr, "%s: epoch %d/%d %s %.5f train acc %.4f val acc %.4f%s (%.0f s)\n", o->label, e + 1, epochs,
                    ae ? "mse" : "loss", rep->train_loss, (double)correct / D2C_MAX(1, steps_done * B),
                    rep->val_accuracy, extra, now_seconds() - t0);
        }
    }
    rep->steps = step;
    rep->seconds = now_seconds() - t0;
    free(xb);
    engine_free(eng, drecon);
    free(yb);
    free(logits);
    free(probs);
    free(dlogits);
    engine_free(eng, dlogits_dev);
    free(perm);
    adam_destroy(&opt);
    return st;
}

/* ---------------------------------------------------------------- d2c evaluator train */

EvalTrainOptions eval_train_default_options(void) {
    EvalTrainOptions o = {0};
    o.data = "fashion-mnist";
    o.kind = EVAL_KIND_POOL;
    o.epochs = 12;
    o.batch = 128;
    o.lr = 2e-3;
    o.val = DATASET_HOLDOUT;
    o.crop_pad = 0;
    o.flip = 1;
    o.test = 1;
    return o;
}

/* "fashion-mnist" -> "fmnist", "folder:/a/cifar10" -> "cifar10", "x/pool.safetensors" -> "pool". */
static void default_tag(const char *src, char *tag, size_t n) {
    char base[256];
    snprintf(base, sizeof base, "%s", src);
    size_t len = strlen(base);
    if (len > 6 && strcmp(base + len - 6, ":train") == 0) base[len - 6] = 0;
    if (strcmp(base, "fashion-mnist") == 0) {
        snprintf(tag, n, "fmnist");
        return;
    }
    if (strncmp(base, "mnist:", 6) == 0) {
        snprintf(tag, n, "mnist");
        return;
    }
    char *p = strchr(base, ':') ? strchr(base, ':') + 1 : base;
    len = strlen(p);
    while (len > 1 && p[len - 1] == '/') p[--len] = 0;
    if (len > 12 && strcmp(p + len - 12, ".safetensors") == 0) p[len - 12] = 0;
    char *slash = strrchr(p, '/');
    if (slash) p = slash + 1;
    size_t j = 0;
    for (; *p && j + 1 < n; p++)
        if (isalnum((unsigned char)*p) || *p == '-' || *p == '_') tag[j++] = (char)tolower((unsigned char)*p);
    tag[j] = 0;
    if (!j) snprintf(tag, n, "custom");
}

char *eval_test_source(const char *src) {
    char base[1024];
    snprintf(base, sizeof base, "%s", src);
    size_t len = strlen(base);
    if (len > 6 && strcmp(base + len - 6, ":train") == 0) base[len - 6] = 0;
    else if (len > 5 && strcmp(base + len - 5, ":test") == 0) base[len - 5] = 0;
    int ok = strcmp(base, "fashion-mnist") == 0 || strncmp(base, "mnist:", 6) == 0;
    if (strncmp(base, "folder:", 7) == 0) {
        char dir[1100];
        struct stat st;
        snprintf(dir, sizeof dir, "%s/test", base + 7);
        ok = stat(dir, &st) == 0 && S_ISDIR(st.st_mode);
    }
    if (!ok) return NULL;
    char *t = xmalloc(strlen(base) + 6);
    sprintf(t, "%s:test", base);
    return t;
}

static char *class_names_json(const Dataset *d) {
    cJSON *a = cJSON_CreateArray();
    for (int k = 0; k < d->num_classes; k++)
        cJSON_AddItemToArray(a, cJSON_CreateString(d->class_names && d->class_names[k] ? d->class_names[k] : ""));
    char *s = cJSON_PrintUnformatted(a);
    cJSON_Delete(a);
    return s;
}

static int train_arch(const EvalTrainOptions *o, const Dataset *d, EvalArch *arch) {
    *arch = eval_arch_default(o->kind, d->c, d->h, d->w, d->num_classes);
    if (o->num_stages > 0) {
        arch->num_stages = o->num_stages;
        int down = 0;
        for (int l = 0; l < o->num_stages; l++) {
            arch->channels[l] = o->channels[l], arch->strides[l] = o->strides[l];
            down += o->strides[l] == 2;
        }
        if (o->kind == EVAL_KIND_AE && o->num_dec == 0) { /* keep the default decoder's shape per upsampling */
            arch->num_up = down;
            for (int u = 0; u <= down; u++) arch->dec_channels[u] = 16;
        }
    }
    if (o->hidden > 0) arch->hidden = o->hidden;
    if (o->num_dec > 0) {
        arch->num_up = o->num_dec - 1;
        for (int u = 0; u < o->num_dec; u++) arch->dec_channels[u] = o->dec_channels[u];
    }
    int st = eval_arch_validate(arch);
    return st == D2C_OK ? D2C_OK : d2c_error_context(st, "evaluator train: ");
}

int evaluator_train(const EvalTrainOptions *o, EvaluatorInfo *info) {
    size_t dlen = strlen(o->data);
    if (dlen > 5 && strcmp(o->data + dlen - 5, ":test") == 0)
        return d2c_error(D2C_ERR_INPUT, "evaluator train: --data %s: train on the training split; the test split is "
                                        "only for the final report", o->data);
    D2C_TRY(check_writable(o->out)); /* before hours of training */
    Dataset d;
    D2C_TRY(dataset_load(&d, o->data));
    const int C = d.c, H = d.h, W = d.w;
    int *train_idx = xcalloc((size_t)d.n, sizeof *train_idx), n_train = 0;
    int *val_idx = xcalloc((size_t)d.n, sizeof *val_idx), n_val = 0;
    int use_total = o->limit > 0 && o->limit < d.n ? o->limit : d.n;
    Dataset val = {0};
    Evaluator net = {0};
    EvalArch arch;
    char *names = NULL, *test_src = NULL;
    int st = D2C_OK;
    if (o->val < 0 || o->val > use_total / 2) {
        st = d2c_error(D2C_ERR_INPUT, "evaluator train: --val %d must leave at least half of the %d images for training",
                       o->val, use_total);
        goto done;
    }
    dataset_holdout_split(&d, o->limit, o->val, train_idx, &n_train, val_idx, &n_val);
    if (n_val > 0) val = dataset_subset(&d, val_idx, n_val);
    D2C_TRY_GOTO(st, train_arch(o, &d, &arch), done);
    D2C_TRY_GOTO(st, evaluator_create(&net, o->engine, &arch, D2C_MAX(o->batch, 256)), done);
    evaluator_init_weights(&net, (uint64_t)o->seed);
    if (!o->quiet)
        fprintf(stderr, "evaluator train: %s %s, %d train + %d validation images %dx%dx%d, %d classes, %zu params, "
                "%d epochs of %d\n", eval_kind_arch_name(arch.kind), d.source, n_train, n_val, C, H, W, d.num_classes,
                net.lay.n_params, o->epochs, o->batch);
    EvalFitOptions fo = {.epochs = o->epochs, .batch = o->batch, .seed = o->seed, .lr = o->lr, .warmup = 200,
                         .crop_pad = o->crop_pad, .flip = o->flip, .label = o->quiet ? NULL : "evaluator",
                         .val_images = val.images, .val_labels = val.labels, .n_val = n_val};
    EvalFitReport rep;
    D2C_TRY_GOTO(st, evaluator_fit(&net, d.images, d.labels, train_idx, n_train, &fo, &rep), done);

    /* the test split, measured once, after every choice is made */
    double test_acc = NAN, test_mse = NAN;
    test_src = o->test ? eval_test_source(o->data) : NULL;
    if (test_src) {
        Dataset t;
        D2C_TRY_GOTO(st, dataset_load(&t, test_src), done);
        if (t.c != C || t.h != H || t.w != W) {
            st = d2c_error(D2C_ERR_INPUT, "evaluator train: %s holds %dx%dx%d images, the training split %dx%dx%d",
                           test_src, t.c, t.h, t.w, C, H, W);
            dataset_free(&t);
            goto done;
        }
        test_acc = evaluator_accuracy(&net, t.images, t.labels, t.n);
        test_mse = evaluator_recon_mse(&net, t.images, t.n);
        if (!o->quiet) {
            fprintf(stderr, "evaluator train: test accuracy %.4f on %d images of %s", test_acc, t.n, t.source);
            if (!isnan(test_mse)) fprintf(stderr, ", reconstruction mse %.5f", test_mse);
            fputc('\n', stderr);
        }
        dataset_free(&t);
    }
    char tag[64];
    if (o->tag) snprintf(tag, sizeof tag, "%s", o->tag);
    else default_tag(o->data, tag, sizeof tag);
    names = class_names_json(&d);
    EvaluatorMeta meta = {.tag = tag, .dataset = d.source, .command = o->command, .class_names = names,
                          .seed = o->seed, .epochs = o->epochs, .train_images = n_train,
                          .val_accuracy = rep.val_accuracy, .test_accuracy = test_acc, .val_mse = rep.val_mse,
                          .test_mse = test_mse, .train_seconds = rep.seconds};
    EvaluatorInfo local;
    D2C_TRY_GOTO(st, evaluator_save(&net, o->out, &meta, info ? info : &local), done);
    if (!o->quiet)
        fprintf(stderr, "evaluator train: %s -> %s (%.0f s)\n", info ? info->id : local.id, o->out, rep.seconds);
done:
    free(names);
    free(test_src);
    free(train_idx);
    free(val_idx);
    dataset_free(&val);
    if (net.params) evaluator_destroy(&net);
    dataset_free(&d);
    return st;
}

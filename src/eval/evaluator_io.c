/* Evaluator files: saving the weights with their metadata and content hash, loading and
 * verifying them, rewriting their metadata (calibration), and the models folder.
 *
 * File: safetensors, one F32 tensor per EvalLayout tensor, metadata "format" =
 * "d2c-evaluator-1", "arch" (JSON with "kind"; absent kind = pool, files written before
 * kinds existed), "kind", "id", "hash" (16 hex digits of FNV-1a 64 over the float32
 * weights in tensor order), "dataset", "image_size", "channels", "num_classes",
 * "feature_dim", "class_names", "seed", "epochs", "train_images", "val_accuracy",
 * "test_accuracy", "val_mse", "test_mse" (ae), "train_seconds", "command",
 * "d2c_version", and after `d2c evaluator calibrate` "anchor_fid", "anchor_kid",
 * "anchor". Every failure is a status (core/status.h). */
#define _XOPEN_SOURCE 700 /* realpath */
#include "eval/evaluator.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/util.h"
#include "d2c.h"
#include "io/safetensors.h"
#include "io/st_checksum.h"

#define EVAL_FORMAT "d2c-evaluator-1"

static void set_meta_num(StWriter *w, const char *key, double v, const char *fmt) {
    if (isnan(v)) return;
    char s[64];
    snprintf(s, sizeof s, fmt, v);
    st_set_meta(w, key, s);
}

int evaluator_save(const Evaluator *net, const char *path, const EvaluatorMeta *m, EvaluatorInfo *info) {
    const EvalLayout *lay = &net->lay;
    const EvalArch *a = &lay->arch;
    float *params = xmalloc_floats(lay->n_params); /* the weights on the host */
    evaluator_download_params(net, params);
    StWriter *w = st_writer_new();
    for (int i = 0; i < lay->n_tensors; i++) {
        const EvalTensor *t = &lay->tensors[i];
        st_add(w, t->name, ST_F32, t->ndim, t->shape, params + t->offset);
    }
    char *arch = eval_arch_to_json(a);
    st_set_meta(w, "format", EVAL_FORMAT);
    st_set_meta(w, "arch", arch);
    st_set_meta(w, "kind", eval_kind_name(a->kind));
    free(arch);
    char hash[17], id[96], s[64];
    snprintf(hash, sizeof hash, "%016llx", (unsigned long long)evaluator_hash(lay, params));
    snprintf(id, sizeof id, "%s-%s:%s", m->tag && *m->tag ? m->tag : "custom", eval_kind_arch_name(a->kind), hash);
    st_set_meta(w, "id", id);
    st_set_meta(w, "hash", hash);
    st_set_meta(w, "hash_algorithm", "fnv1a64 of the float32 little-endian weights in tensor order");
    snprintf(s, sizeof s, "%dx%d", a->height, a->width);
    st_set_meta(w, "image_size", s);
    set_meta_num(w, "channels", a->in_channels, "%.0f");
    set_meta_num(w, "num_classes", a->num_classes, "%.0f");
    set_meta_num(w, "feature_dim", lay->feature_dim, "%.0f");
    if (m->dataset) st_set_meta(w, "dataset", m->dataset);
    if (m->class_names) st_set_meta(w, "class_names", m->class_names);
    if (m->command) st_set_meta(w, "command", m->command);
    set_meta_num(w, "seed", m->seed, "%.0f");
    set_meta_num(w, "epochs", m->epochs, "%.0f");
    set_meta_num(w, "train_images", m->train_images, "%.0f");
    set_meta_num(w, "val_accuracy", m->val_accuracy, "%.4f");
    set_meta_num(w, "test_accuracy", m->test_accuracy, "%.4f");
    set_meta_num(w, "val_mse", m->val_mse, "%.6f");
    set_meta_num(w, "test_mse", m->test_mse, "%.6f");
    set_meta_num(w, "train_seconds", m->train_seconds, "%.0f");
    st_set_meta(w, "d2c_version", D2C_VERSION);
    int st = st_write(w, path);
    st_writer_free(w);
    free(params);
    if (st != D2C_OK) return st;
    if (info) {
        memset(info, 0, sizeof *info);
        snprintf(info->path, sizeof info->path, "%s", path);
        snprintf(info->id, sizeof info->id, "%s", id);
        snprintf(info->hash, sizeof info->hash, "%s", hash);
        snprintf(info->dataset, sizeof info->dataset, "%s", m->dataset ? m->dataset : "");
        info->kind = a->kind;
        info->test_accuracy = m->test_accuracy;
        info->test_mse = m->test_mse;
        info->anchor_fid = info->anchor_kid = NAN;
    }
    return D2C_OK;
}

static double meta_number(const StFile *f, const char *key) {
    const char *v = st_meta(f, key);
    double x;
    return v && parse_double(v, &x) == 0 ? x : NAN;
}

int evaluator_load(Evaluator *net, Engine *eng, EvaluatorInfo *info, const char *path, int max_batch) {
    memset(net, 0, sizeof *net);
    float *params = NULL; /* the weights on the host */
    StFile *f;
    D2C_TRY(st_open(&f, path));
    int st = D2C_ERR_INPUT;
    const char *format = st_meta(f, "format"), *arch_json = st_meta(f, "arch");
    if (!format || strcmp(format, EVAL_FORMAT) != 0 || !arch_json) {
        d2c_error(st, "%s: not a d2c evaluator (metadata 'format' is not '%s'); train one with d2c evaluator train",
                  path, EVAL_FORMAT);
        goto fail;
    }
    EvalArch a;
    if (eval_arch_from_json(arch_json, &a) != D2C_OK) {
        d2c_error_context(st, "%s: bad evaluator arch: ", path);
        goto fail;
    }
    if ((st = evaluator_create(net, eng, &a, max_batch)) != D2C_OK) goto fail;
    st = D2C_ERR_INPUT;
    const EvalLayout *lay = &net->lay;
    params = xmalloc_floats(lay->n_params);
    for (int i = 0; i < lay->n_tensors; i++) {
        const EvalTensor *t = &lay->tensors[i];
        const StTensor *ft = st_find(f, t->name);
        if (!ft) {
            d2c_error(st, "%s: evaluator tensor '%s' is missing", path, t->name);
            goto fail;
        }
        int same = ft->dtype == ST_F32 && ft->ndim == t->ndim;
        for (int j = 0; same && j < t->ndim; j++) same = ft->shape[j] == t->shape[j];
        if (!same) {
            d2c_error(st, "%s: evaluator tensor '%s' does not have the F32 shape its arch gives", path, t->name);
            goto fail;
        }
        memcpy(params + t->offset, st_data(f, ft), t->count * sizeof(float));
    }
    char hash[17];
    snprintf(hash, sizeof hash, "%016llx", (unsigned long long)evaluator_hash(lay, params));
    const char *want = st_meta(f, "hash");
    if (!want) {
        d2c_error(st, "%s: evaluator has no 'hash' metadata", path);
        goto fail;
    }
    if (strcmp(want, hash) != 0) {
        d2c_error(st, "%s: the weights hash to %s but the file records %s (edited or corrupt file)", path, hash, want);
        goto fail;
    }
    memset(info, 0, sizeof *info);
    snprintf(info->path, sizeof info->path, "%s", path);
    snprintf(info->hash, sizeof info->hash, "%s", hash);
    const char *id = st_meta(f, "id");
    if (id && strlen(id) > 16 && strlen(id) < sizeof info->id && strcmp(id + strlen(id) - 16, hash) == 0)
        snprintf(info->id, sizeof info->id, "%s", id);
    else
        snprintf(info->id, sizeof info->id, "custom-%s:%s", eval_kind_arch_name(a.kind), hash);
    const char *ds = st_meta(f, "dataset");
    snprintf(info->dataset, sizeof info->dataset, "%s", ds ? ds : "");
    info->kind = a.kind;
    info->test_accuracy = meta_number(f, "test_accuracy");
    info->test_mse = meta_number(f, "test_mse");
    info->anchor_fid = meta_number(f, "anchor_fid");
    info->anchor_kid = meta_number(f, "anchor_kid");
    evaluator_upload_params(net, params);
    free(params);
    st_close(f);
    return D2C_OK;
fail:
    free(params);
    st_close(f);
    if (net->params) evaluator_destroy(net);
    return st;
}

int evaluator_set_metadata(const char *path, int n, const char *const *keys, const char *const *values) {
    Evaluator net;
    EvaluatorInfo info;
    D2C_TRY(evaluator_load(&net, NULL, &info, path, 1)); /* a valid evaluator whose weights match their hash */
    evaluator_destroy(&net);
    StFile *f;
    D2C_TRY(st_open(&f, path));
    StWriter *w = st_writer_new();
    for (int i = 0; i < st_count(f); i++) {
        const StTensor *t = st_tensor(f, i);
        st_add(w, t->name, t->dtype, t->ndim, t->shape, st_data(f, t));
    }
    for (int i = 0; i < st_meta_count(f); i++) {
        const char *v, *k = st_meta_at(f, i, &v);
        if (strcmp(k, ST_CHECKSUM_KEY) != 0) st_set_meta(w, k, v); /* the writer computes it afresh */
    }
    for (int i = 0; i < n; i++) st_set_meta(w, keys[i], values[i]);
    int st = st_write(w, path);
    st_writer_free(w);
    st_close(f);
    return st;
}

/* ---------------------------------------------------------------- the models folder */

static int is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

int evaluator_models_dir(char **dir) {
    *dir = NULL;
    const char *env = getenv("D2C_MODELS_DIR");
    if (env && *env) {
        if (!is_dir(env)) return d2c_error(D2C_ERR_INPUT, "D2C_MODELS_DIR=%s: no such folder", env);
        *dir = xstrdup(env);
        return D2C_OK;
    }
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = 0;
        char *slash = strrchr(exe, '/');
        if (slash) *slash = 0;
        const char *rel[] = {"models", "../models", "../share/d2c/models"};
        for (int i = 0; i < 3; i++) {
            size_t len = strlen(exe) + strlen(rel[i]) + 2;
            char *p = xmalloc(len);
            snprintf(p, len, "%s/%s", exe, rel[i]);
            char *real = is_dir(p) ? realpath(p, NULL) : NULL;
            free(p);
            if (real) {
                *dir = real;
                return D2C_OK;
            }
        }
    }
#ifdef D2C_SOURCE_DIR
    if (is_dir(D2C_SOURCE_DIR "/models")) *dir = xstrdup(D2C_SOURCE_DIR "/models");
#endif
    return D2C_OK;
}

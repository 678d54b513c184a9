/* Evaluator files: saving the weights with their metadata and content hash, loading and
 * verifying them, and finding the committed evaluator for a reference data set.
 *
 * File: safetensors, one F32 tensor per EvalLayout tensor (conv{l}.*, norm{l}.*, fc.*),
 * metadata "format" = "d2c-evaluator-1", "arch" (JSON), "id", "hash" (16 hex digits of
 * FNV-1a 64 over the float32 weights in tensor order), "dataset", "image_size", "channels",
 * "num_classes", "class_names", "seed", "epochs", "train_images", "val_accuracy",
 * "test_accuracy", "train_seconds", "command", "d2c_version". */
#define _XOPEN_SOURCE 700 /* realpath */
#include "eval/evaluator.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/util.h"
#include "d2c.h"
#include "io/safetensors.h"

#define EVAL_FORMAT "d2c-evaluator-1"

static void set_meta_num(StWriter *w, const char *key, double v, const char *fmt) {
    if (isnan(v)) return;
    char s[64];
    snprintf(s, sizeof s, fmt, v);
    st_set_meta(w, key, s);
}

void evaluator_save(const Evaluator *net, const char *path, const EvaluatorMeta *m,
                    EvaluatorInfo *info) {
    const EvalLayout *lay = &net->lay;
    const EvalArch *a = &lay->arch;
    StWriter *w = st_writer_new();
    for (int i = 0; i < lay->n_tensors; i++) {
        const EvalTensor *t = &lay->tensors[i];
        st_add(w, t->name, ST_F32, t->ndim, t->shape, net->params + t->offset);
    }
    char *arch = eval_arch_to_json(a);
    st_set_meta(w, "format", EVAL_FORMAT);
    st_set_meta(w, "arch", arch);
    free(arch);
    char hash[17], id[96], s[64];
    snprintf(hash, sizeof hash, "%016llx", (unsigned long long)evaluator_hash(lay, net->params));
    snprintf(id, sizeof id, "%s-%s:%s", m->tag && *m->tag ? m->tag : "custom", EVAL_ARCH_NAME, hash);
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
    set_meta_num(w, "train_seconds", m->train_seconds, "%.0f");
    st_set_meta(w, "d2c_version", D2C_VERSION);
    d2c_die_on_error(st_write(w, path));
    st_writer_free(w);
    if (info) {
        memset(info, 0, sizeof *info);
        snprintf(info->path, sizeof info->path, "%s", path);
        snprintf(info->id, sizeof info->id, "%s", id);
        snprintf(info->hash, sizeof info->hash, "%s", hash);
        snprintf(info->dataset, sizeof info->dataset, "%s", m->dataset ? m->dataset : "");
        info->test_accuracy = m->test_accuracy;
    }
}

void evaluator_load(Evaluator *net, EvaluatorInfo *info, const char *path, int max_batch) {
    StFile *f;
    d2c_die_on_error(st_open(&f, path));
    const char *format = st_meta(f, "format"), *arch_json = st_meta(f, "arch");
    if (!format || strcmp(format, EVAL_FORMAT) != 0 || !arch_json)
        die_input("%s: not a d2c evaluator (metadata 'format' is not '%s'); train one with "
                  "d2c evaluator train", path, EVAL_FORMAT);
    EvalArch a;
    char why[256];
    if (eval_arch_from_json(arch_json, &a, why, sizeof why)) die_input("%s: bad evaluator arch: %s", path, why);
    evaluator_create(net, &a, max_batch);
    const EvalLayout *lay = &net->lay;
    for (int i = 0; i < lay->n_tensors; i++) {
        const EvalTensor *t = &lay->tensors[i];
        if (!st_find(f, t->name)) die_input("%s: evaluator tensor '%s' is missing", path, t->name);
        const float *src;
        d2c_die_on_error(st_require_f32(f, t->name, t->ndim, t->shape, &src));
        memcpy(net->params + t->offset, src, t->count * sizeof(float));
    }
    char hash[17];
    snprintf(hash, sizeof hash, "%016llx", (unsigned long long)evaluator_hash(lay, net->params));
    const char *want = st_meta(f, "hash");
    if (!want) die_input("%s: evaluator has no 'hash' metadata", path);
    if (strcmp(want, hash) != 0)
        die_input("%s: the weights hash to %s but the file records %s (edited or corrupt file)", path, hash, want);
    memset(info, 0, sizeof *info);
    snprintf(info->path, sizeof info->path, "%s", path);
    snprintf(info->hash, sizeof info->hash, "%s", hash);
    const char *id = st_meta(f, "id");
    if (id && strlen(id) > 16 && strcmp(id + strlen(id) - 16, hash) == 0) snprintf(info->id, sizeof info->id, "%s", id);
    else snprintf(info->id, sizeof info->id, "custom-%s:%s", EVAL_ARCH_NAME, hash);
    const char *ds = st_meta(f, "dataset");
    snprintf(info->dataset, sizeof info->dataset, "%s", ds ? ds : "");
    const char *acc = st_meta(f, "test_accuracy");
    info->test_accuracy = acc ? atof(acc) : NAN;
    st_close(f);
}

/* ---------------------------------------------------------------- finding the committed files */

static int is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static int is_file(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static char *join(const char *a, const char *b) {
    size_t n = strlen(a) + strlen(b) + 2;
    char *s = xmalloc(n);
    snprintf(s, n, "%s/%s", a, b);
    return s;
}

char *evaluator_models_dir(void) {
    const char *env = getenv("D2C_MODELS_DIR");
    if (env && *env) {
        if (!is_dir(env)) die_input("D2C_MODELS_DIR=%s: no such folder", env);
        return xstrdup(env);
    }
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = 0;
        char *slash = strrchr(exe, '/');
        if (slash) *slash = 0;
        const char *rel[] = {"models", "../models", "../share/d2c/models"};
        for (int i = 0; i < 3; i++) {
            char *p = join(exe, rel[i]), *real = is_dir(p) ? realpath(p, NULL) : NULL;
            free(p);
            if (real) return real;
        }
    }
#ifdef D2C_SOURCE_DIR
    if (is_dir(D2C_SOURCE_DIR "/models")) return xstrdup(D2C_SOURCE_DIR "/models");
#endif
    return NULL;
}

/* ref_src without a ":train" / ":test" suffix, as a new string. */
static char *source_base(const char *src) {
    char *s = xstrdup(src);
    size_t n = strlen(s);
    if (n > 6 && strcmp(s + n - 6, ":train") == 0) s[n - 6] = 0;
    else if (n > 5 && strcmp(s + n - 5, ":test") == 0) s[n - 5] = 0;
    return s;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

char *evaluator_default_path(const char *ref_src, int C, int H, int W) {
    char *dir = evaluator_models_dir();
    if (!dir)
        die_input("eval: no models folder with committed evaluators found (set D2C_MODELS_DIR); "
                  "pass --evaluator FILE");
    char *base = source_base(ref_src);
    char *named = xmalloc(strlen(dir) + strlen(base) + 40);
    sprintf(named, "%s/evaluator-%s.safetensors", dir, base);
    if (strchr(base, '/') == NULL && strchr(base, ':') == NULL && is_file(named)) {
        free(dir);
        free(base);
        return named;
    }
    free(named);
    /* otherwise: the evaluators taking (C, H, W) images, preferring one trained on ref_src */
    DIR *d = opendir(dir);
    if (!d) die_input("%s: cannot list the models folder", dir);
    char **names = NULL;
    int count = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t n = strlen(e->d_name);
        if (strncmp(e->d_name, "evaluator-", 10) != 0 || n < 12 || strcmp(e->d_name + n - 12, ".safetensors")) continue;
        names = xrealloc(names, sizeof *names * (count + 1));
        names[count++] = xstrdup(e->d_name);
    }
    closedir(d);
    qsort(names, (size_t)count, sizeof *names, cmp_str);
    char *pick = NULL;
    int matches = 0, by_source = 0;
    for (int i = 0; i < count; i++) {
        char *p = join(dir, names[i]);
        StFile *f;
        d2c_die_on_error(st_open(&f, p));
        EvalArch a;
        char why[256];
        const char *arch = st_meta(f, "arch"), *ds = st_meta(f, "dataset");
        int fits = arch && !eval_arch_from_json(arch, &a, why, sizeof why) && a.in_channels == C && a.height == H && a.width == W;
        int same = 0;
        if (fits && ds) {
            char *dbase = source_base(ds);
            same = strcmp(dbase, base) == 0;
            free(dbase);
        }
        st_close(f);
        if (fits && (!pick || (same && !by_source))) {
            free(pick);
            pick = p;
            by_source = same;
        } else {
            free(p);
        }
        matches += fits;
    }
    for (int i = 0; i < count; i++) free(names[i]);
    free(names);
    if (!pick)
        die_input("eval: no committed evaluator in %s takes %dx%dx%d images like '%s'; train one "
                  "(d2c evaluator train) and pass --evaluator FILE", dir, C, H, W, ref_src);
    if (!by_source)
        warn_msg("eval: no evaluator was trained on '%s'; using %s, which takes %dx%dx%d images%s", ref_src, pick,
                 C, H, W, matches > 1 ? " (first of several; pass --evaluator to choose)" : "");
    free(dir);
    free(base);
    return pick;
}

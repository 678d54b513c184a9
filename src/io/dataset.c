/* Data set loading: the SRC grammar, the IDX and safetensors loaders, subsets and
 * per-class index lists. The image-folder loader is in dataset_folder.c. */
#include "io/dataset.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/util.h"
#include "io/idx.h"
#include "io/safetensors.h"

#define FASHION_MNIST_DIR "/usr/share/datasets/fashion-mnist"

static const char *const FASHION_MNIST_CLASSES[10] = {
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
};

static int is_file(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

static int is_dir(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

static char *str_concat(const char *a, const char *b, const char *c) {
    size_t n = strlen(a) + strlen(b) + strlen(c) + 1;
    char *s = xmalloc(n);
    snprintf(s, n, "%s%s%s", a, b, c);
    return s;
}

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

static char **numbered_class_names(int k) {
    char **names = xcalloc((size_t)k, sizeof(char *));
    for (int i = 0; i < k; i++) {
        char buf[16];
        snprintf(buf, sizeof buf, "%d", i);
        names[i] = xstrdup(buf);
    }
    return names;
}

/* u8 -> [-1, 1]; exact in float for every byte value. */
static void bytes_to_unit_range(const uint8_t *in, float *out, size_t count) {
#pragma omp parallel for schedule(static) if (count > (1 << 20))
    for (size_t i = 0; i < count; i++) out[i] = (float)in[i] / 127.5f - 1.0f;
}

/* ---------------------------------------------------------------------------------- */
/* The label rule                                                                     */

/* Checks labels[0..n) against the rule and sets *num_classes: K = known when > 0 (the
 * source's own count or its num_classes metadata, described by `known_from`), else
 * max label + 1. `where` names the file holding the labels. */
static int check_labels(const int64_t *labels, int64_t n, int known, const char *known_from, const char *where,
                        int *num_classes) {
    int64_t max_label = 0;
    for (int64_t i = 0; i < n; i++) {
        if (labels[i] < 0)
            return d2c_error(D2C_ERR_INPUT, "%s: label %lld of image %lld is negative; labels are class indices 0..K-1",
                             where, (long long)labels[i], (long long)i);
        if (known > 0 && labels[i] >= known)
            return d2c_error(D2C_ERR_INPUT, "%s: label %lld of image %lld is outside the %d classes 0..%d (%s)", where,
                             (long long)labels[i], (long long)i, known, known - 1, known_from);
        if (labels[i] > max_label) max_label = labels[i];
    }
    if (known > 0) {
        *num_classes = known;
        return D2C_OK;
    }
    if (max_label >= D2C_MAX_CLASSES)
        return d2c_error(D2C_ERR_INPUT,
                         "%s: label %lld would make %lld classes; d2c takes at most %d (labels must lie in 0..K-1)", where,
                         (long long)max_label, (long long)max_label + 1, D2C_MAX_CLASSES);
    *num_classes = (int)max_label + 1;
    return D2C_OK;
}

int dataset_require_all_classes(const Dataset *d) {
    int *count = xcalloc((size_t)d->num_classes, sizeof(int));
    for (int i = 0; i < d->n; i++) count[d->labels[i]]++;
    int empty = 0;
    char list[256] = "";
    size_t len = 0;
    for (int k = 0; k < d->num_classes; k++) {
        if (count[k]) continue;
        int end = k; /* a run k..end of empty classes */
        while (end + 1 < d->num_classes && !count[end + 1]) end++;
        empty += end - k + 1;
        if (len < sizeof list - 24) {
            if (end == k) len += (size_t)snprintf(list + len, sizeof list - len, "%s%d", len ? ", " : "", k);
            else len += (size_t)snprintf(list + len, sizeof list - len, "%s%d-%d", len ? ", " : "", k, end);
        } else if (len < sizeof list - 4) {
            len += (size_t)snprintf(list + len, sizeof list - len, ", ...");
        }
        k = end;
    }
    free(count);
    if (!empty) return D2C_OK;
    return d2c_error(D2C_ERR_INPUT,
                     "%s: %d of its %d classes have no images (class%s %s); every class 0..%d needs images "
                     "(labels must be 0..K-1 with K the number of classes)",
                     d->source, empty, d->num_classes, empty == 1 ? "" : "es", list, d->num_classes - 1);
}

/* ---------------------------------------------------------------------------------- */
/* IDX                                                                                */

int dataset_load_idx(Dataset *out, const char *images_path, const char *labels_path, int num_classes,
                     const char *source) {
    memset(out, 0, sizeof *out);
    IdxArray images, labels = {0};
    D2C_TRY(idx_read_u8(&images, images_path, 3));
    int st = idx_read_u8(&labels, labels_path, 1);
    if (st) goto done;
    if (images.dims[0] != labels.dims[0]) {
        st = d2c_error(D2C_ERR_INPUT, "%s: %lld labels for the %lld images of %s", labels_path, (long long)labels.dims[0],
                       (long long)images.dims[0], images_path);
        goto done;
    }
    if (images.dims[0] == 0) {
        st = d2c_error(D2C_ERR_INPUT, "%s: holds no images", images_path);
        goto done;
    }
    if (images.dims[0] > INT32_MAX || images.dims[1] > 65535 || images.dims[2] > 65535 || images.dims[1] < 1 ||
        images.dims[2] < 1) {
        st = d2c_error(D2C_ERR_INPUT, "%s: %lld images of %lld x %lld pixels is not a data set d2c handles", images_path,
                       (long long)images.dims[0], (long long)images.dims[1], (long long)images.dims[2]);
        goto done;
    }
    Dataset d = {0};
    d.n = (int)images.dims[0];
    d.c = 1;
    d.h = (int)images.dims[1];
    d.w = (int)images.dims[2];
    d.labels = xmalloc((size_t)d.n * sizeof(int64_t));
    for (int i = 0; i < d.n; i++) d.labels[i] = labels.data[i];
    st = check_labels(d.labels, d.n, num_classes, "the data set's class count", labels_path, &d.num_classes);
    if (st) {
        free(d.labels);
        goto done;
    }
    d.images = xmalloc_floats(images.size);
    bytes_to_unit_range(images.data, d.images, images.size);
    d.class_names = numbered_class_names(d.num_classes);
    d.source = xstrdup(source);
    *out = d;
done:
    idx_free(&images);
    idx_free(&labels);
    return st;
}

/* The first of PREFIX + kind + "-idx<rank>-ubyte" (or the ".idx<rank>-ubyte" spelling),
 * gzip or raw, that exists; NULL if none. kind is "images" or "labels". */
static char *find_idx_file(const char *prefix, const char *kind, int rank) {
    static const char *const exts[2] = {".gz", ""};
    static const char seps[2] = {'-', '.'};
    size_t cap = strlen(prefix) + 64;
    char *path = xmalloc(cap);
    for (int e = 0; e < 2; e++)
        for (int s = 0; s < 2; s++) {
            snprintf(path, cap, "%s%s%cidx%d-ubyte%s", prefix, kind, seps[s], rank, exts[e]);
            if (is_file(path)) return path;
        }
    free(path);
    return NULL;
}

/* MNIST-named files: DIR/train-images-idx3-ubyte... or PREFIX + "train-images-idx3-ubyte"... */
static int load_mnist_named(Dataset *d, const char *where, const char *split, int num_classes, const char *source) {
    const char *stem = strcmp(split, "test") == 0 ? "t10k-" : "train-";
    char *prefix = is_dir(where) ? str_concat(where, ends_with(where, "/") ? "" : "/", stem)
                                 : str_concat(where, stem, "");
    char *images = find_idx_file(prefix, "images", 3);
    char *labels = find_idx_file(prefix, "labels", 1);
    int st;
    if (!images || !labels)
        st = d2c_error(D2C_ERR_INPUT, "%s: no %s%s-ubyte[.gz] there (data source '%s')", where, stem,
                       images ? "labels-idx1" : "images-idx3", source);
    else
        st = dataset_load_idx(d, images, labels, num_classes, source);
    free(images);
    free(labels);
    free(prefix);
    return st;
}

static int load_idx_prefix(Dataset *d, const char *prefix, const char *source) {
    char *stem = str_concat(prefix, "-", "");
    char *images = find_idx_file(stem, "images", 3);
    char *labels = find_idx_file(stem, "labels", 1);
    int st;
    if (!images || !labels)
        st = d2c_error(D2C_ERR_INPUT, "%s-%s-ubyte[.gz]: no such file (data source '%s')", prefix,
                       images ? "labels-idx1" : "images-idx3", source);
    else
        st = dataset_load_idx(d, images, labels, 0, source);
    free(images);
    free(labels);
    free(stem);
    return st;
}

/* ---------------------------------------------------------------------------------- */
/* safetensors                                                                        */

static int class_names_from_meta(const StFile *f, int num_classes, char ***out) {
    const char *json = st_meta(f, "class_names");
    if (!json) {
        *out = numbered_class_names(num_classes);
        return D2C_OK;
    }
    cJSON *list = cJSON_Parse(json);
    if (!cJSON_IsArray(list) || cJSON_GetArraySize(list) != num_classes) {
        cJSON_Delete(list);
        return d2c_error(D2C_ERR_INPUT, "%s: metadata class_names is not a JSON list of %d names", st_path(f), num_classes);
    }
    char **names = xcalloc((size_t)num_classes, sizeof(char *));
    for (int k = 0; k < num_classes; k++) {
        const cJSON *item = cJSON_GetArrayItem(list, k);
        if (!cJSON_IsString(item)) {
            for (int j = 0; j < k; j++) free(names[j]);
            free(names);
            cJSON_Delete(list);
            return d2c_error(D2C_ERR_INPUT, "%s: metadata class_names holds a non-string", st_path(f));
        }
        names[k] = xstrdup(item->valuestring);
    }
    cJSON_Delete(list);
    *out = names;
    return D2C_OK;
}

static int load_safetensors(Dataset *out, const StFile *f, const char *source) {
    const char *path = st_path(f);
    const float *images;
    D2C_TRY(st_require_f32(f, "images", 4, NULL, &images));
    const StTensor *t = st_find(f, "images");
    const int64_t n = t->shape[0];
    const int64_t label_shape[1] = {n};
    const int64_t *labels;
    D2C_TRY(st_require_i64(f, "labels", 1, label_shape, &labels));
    if (n == 0) return d2c_error(D2C_ERR_INPUT, "%s: holds no images", path);
    if (n > INT32_MAX || t->shape[1] < 1 || t->shape[1] > 4096 || t->shape[2] < 1 || t->shape[2] > 65535 ||
        t->shape[3] < 1 || t->shape[3] > 65535)
        return d2c_error(D2C_ERR_INPUT, "%s: images of shape (%lld, %lld, %lld, %lld) are not a data set d2c handles",
                         path, (long long)n, (long long)t->shape[1], (long long)t->shape[2], (long long)t->shape[3]);
    const size_t count = (size_t)t->numel;
    for (size_t i = 0; i < count; i++)
        if (!isfinite(images[i]))
            return d2c_error(D2C_ERR_INPUT, "%s: images hold a non-finite value (at element %zu)", path, i);

    long known = 0;
    const char *meta_k = st_meta(f, "num_classes");
    if (meta_k && (parse_long(meta_k, &known) != 0 || known < 1 || known > D2C_MAX_CLASSES))
        return d2c_error(D2C_ERR_INPUT, "%s: metadata num_classes '%.40s' is not a class count 1..%d", path, meta_k,
                         D2C_MAX_CLASSES);
    Dataset d = {0};
    D2C_TRY(check_labels(labels, n, (int)known, "its num_classes metadata", path, &d.num_classes));
    D2C_TRY(class_names_from_meta(f, d.num_classes, &d.class_names));
    d.n = (int)n;
    d.c = (int)t->shape[1];
    d.h = (int)t->shape[2];
    d.w = (int)t->shape[3];
    d.images = xmalloc_floats(count);
    memcpy(d.images, images, count * sizeof(float));
    d.labels = xmalloc((size_t)n * sizeof(int64_t));
    memcpy(d.labels, labels, (size_t)n * sizeof(int64_t));
    d.source = xstrdup(source);
    *out = d;
    return D2C_OK;
}

int dataset_load_safetensors(Dataset *out, const char *path, const char *source) {
    memset(out, 0, sizeof *out);
    StFile *f;
    D2C_TRY(st_open(&f, path));
    int st = load_safetensors(out, f, source);
    st_close(f);
    return st;
}

/* ---------------------------------------------------------------------------------- */
/* SRC strings                                                                        */

static int load_base(Dataset *d, const char *src, const char *base, const char *split, const char *use,
                     const char *source) {
    const char *arg = strchr(base, ':') ? strchr(base, ':') + 1 : "";
    if (strcmp(base, "fashion-mnist") == 0) {
        const char *dir = getenv("D2C_FASHION_MNIST_DIR");
        if (!dir || !*dir) dir = FASHION_MNIST_DIR;
        if (!is_dir(dir))
            return d2c_error(D2C_ERR_INPUT,
                             "%s: no such folder; install Debian's dataset-fashion-mnist (scripts/setup.sh) "
                             "for data source 'fashion-mnist'",
                             dir);
        D2C_TRY(load_mnist_named(d, dir, use, 10, source));
        for (int k = 0; k < 10; k++) {
            free(d->class_names[k]);
            d->class_names[k] = xstrdup(FASHION_MNIST_CLASSES[k]);
        }
        return D2C_OK;
    }
    if (strncmp(base, "mnist:", 6) == 0 && *arg) return load_mnist_named(d, arg, use, 10, source);
    if (strncmp(base, "idx:", 4) == 0 && *arg) {
        if (split && strcmp(split, "test") == 0) return d2c_error(D2C_ERR_INPUT, "%s: an idx: source has no test split", src);
        return load_idx_prefix(d, arg, source);
    }
    if (strncmp(base, "folder:", 7) == 0 && *arg) return dataset_load_folder(d, arg, split, source);
    if (ends_with(base, ".safetensors")) {
        if (split && strcmp(split, "test") == 0)
            return d2c_error(D2C_ERR_INPUT, "%s: a .safetensors source has no test split", src);
        return dataset_load_safetensors(d, base, source);
    }
    return d2c_error(D2C_ERR_INPUT,
                     "unknown data source '%s': expected fashion-mnist, mnist:DIR, idx:PREFIX, folder:DIR "
                     "or a .safetensors file, optionally with :train, :test, :fit or :val",
                     src);
}

int dataset_load(Dataset *out, const char *src) {
    memset(out, 0, sizeof *out);
    /* Split off a ":train" / ":test" / ":fit" / ":val" suffix; fit and val are parts of
     * the training split (dataset_holdout_split). */
    const char *split = NULL, *part = NULL;
    size_t base_len = strlen(src);
    if (ends_with(src, ":train")) split = "train", base_len -= 6;
    else if (ends_with(src, ":test")) split = "test", base_len -= 5;
    else if (ends_with(src, ":fit")) split = "train", part = "fit", base_len -= 4;
    else if (ends_with(src, ":val")) split = "train", part = "val", base_len -= 4;
    char *base = xmalloc(base_len + 1);
    memcpy(base, src, base_len);
    base[base_len] = 0;
    const char *use = split ? split : "train";
    char *source = str_concat(base, ":", part ? part : use);

    Dataset d;
    int st = load_base(&d, src, base, split, use, source);
    if (st == D2C_OK && part) {
        int val = D2C_MIN(DATASET_HOLDOUT, d.n / 10), n_fit = 0, n_val = 0;
        int *fit_idx = xmalloc((size_t)(d.n ? d.n : 1) * sizeof(int));
        int *val_idx = xmalloc((size_t)(d.n ? d.n : 1) * sizeof(int));
        dataset_holdout_split(&d, 0, val, fit_idx, &n_fit, val_idx, &n_val);
        Dataset whole = d;
        d = strcmp(part, "val") == 0 ? dataset_subset(&whole, val_idx, n_val) : dataset_subset(&whole, fit_idx, n_fit);
        free(d.source);
        d.source = xstrdup(source);
        dataset_free(&whole);
        free(fit_idx);
        free(val_idx);
        if (d.n == 0) {
            dataset_free(&d);
            st = d2c_error(D2C_ERR_INPUT, "%s: its :%s part holds no images (too few images to hold some out)", src, part);
        }
    }
    free(base);
    free(source);
    if (st == D2C_OK) *out = d;
    return st;
}

void dataset_holdout_split(const Dataset *d, int limit, int val, int *train, int *n_train, int *valid, int *n_val) {
    ClassIndex ci = class_index_build(d);
    int n = d->n, use_total = limit > 0 && limit < n ? limit : n;
    D2C_CHECK(val >= 0 && val <= use_total / 2);
    *n_train = *n_val = 0;
    for (int k = 0; k < ci.num_classes; k++) {
        int nk = class_index_count(&ci, k);
        int use = (int)((long)use_total * nk / n), v = (int)((long)val * nk / n);
        const int *ix = ci.index + ci.start[k];
        for (int i = 0; i < use - v; i++) train[(*n_train)++] = ix[i];
        for (int i = use - v; i < use; i++) valid[(*n_val)++] = ix[i];
    }
    class_index_free(&ci);
}

void dataset_free(Dataset *d) {
    if (d->class_names)
        for (int k = 0; k < d->num_classes; k++) free(d->class_names[k]);
    free(d->class_names);
    free(d->images);
    free(d->labels);
    free(d->source);
    memset(d, 0, sizeof *d);
}

Dataset dataset_subset(const Dataset *d, const int *idx, int n) {
    D2C_CHECK(n >= 0);
    Dataset s = *d;
    s.n = n;
    size_t image_size = (size_t)d->c * d->h * d->w;
    s.images = xmalloc_floats((size_t)n * image_size);
    s.labels = xmalloc((size_t)(n ? n : 1) * sizeof(int64_t));
    for (int i = 0; i < n; i++) {
        D2C_CHECK(idx[i] >= 0 && idx[i] < d->n);
        memcpy(s.images + (size_t)i * image_size, d->images + (size_t)idx[i] * image_size, image_size * sizeof(float));
        s.labels[i] = d->labels[idx[i]];
    }
    s.class_names = xcalloc((size_t)d->num_classes, sizeof(char *));
    for (int k = 0; k < d->num_classes; k++) s.class_names[k] = xstrdup(d->class_names[k]);
    s.source = xstrdup(d->source);
    return s;
}

ClassIndex class_index_build(const Dataset *d) {
    ClassIndex ci;
    ci.num_classes = d->num_classes;
    ci.start = xcalloc((size_t)d->num_classes + 1, sizeof(int));
    ci.index = xmalloc((size_t)(d->n ? d->n : 1) * sizeof(int));
    for (int i = 0; i < d->n; i++) {
        D2C_CHECK(d->labels[i] >= 0 && d->labels[i] < d->num_classes);
        ci.start[d->labels[i] + 1]++;
    }
    for (int k = 0; k < d->num_classes; k++) ci.start[k + 1] += ci.start[k];
    int *next = xmalloc((size_t)d->num_classes * sizeof(int));
    memcpy(next, ci.start, (size_t)d->num_classes * sizeof(int));
    for (int i = 0; i < d->n; i++) ci.index[next[d->labels[i]]++] = i;
    free(next);
    return ci;
}

void class_index_free(ClassIndex *ci) {
    free(ci->start);
    free(ci->index);
    memset(ci, 0, sizeof *ci);
}

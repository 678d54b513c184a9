/* Image-folder data sets (folder:DIR): DIR[/train|/test]/<class>/<image>.png|.jpg|.jpeg.
 * Classes are the sub-folders in byte order of their names, images within a class in
 * byte order of theirs, so the same folder always loads the same way. Files are
 * decoded in parallel; every image must have the first image's size and channel count,
 * and the first file (in that order) that does not, or does not decode, is reported. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "core/util.h"
#include "io/dataset.h"
#include "io/image.h"

typedef struct {
    char **names;
    int n, cap;
} NameList;

static void names_push(NameList *l, const char *name) {
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 64;
        l->names = xrealloc(l->names, (size_t)l->cap * sizeof(char *));
    }
    l->names[l->n++] = xstrdup(name);
}

static void names_free(NameList *l) {
    for (int i = 0; i < l->n; i++) free(l->names[i]);
    free(l->names);
    memset(l, 0, sizeof *l);
}

static int compare_names(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static char *join_path(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = xmalloc(n);
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

static int is_dir(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

/* Sorted names of dir's sub-folders (want_dirs) or regular files, hidden ones skipped,
 * into *out. An entry that cannot be examined (a symlink loop, a dangling link, no
 * permission) is an error naming it, not silently skipped. */
static int list_dir(const char *dir, int want_dirs, NameList *out) {
    memset(out, 0, sizeof *out);
    DIR *d = opendir(dir);
    if (!d) return d2c_error(D2C_ERR_INPUT, "%s: cannot list folder: %s", dir, strerror(errno));
    NameList l = {0};
    struct dirent *e;
    int st = D2C_OK;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        char *path = join_path(dir, e->d_name);
        struct stat sb;
        if (stat(path, &sb) != 0) {
            st = d2c_error(D2C_ERR_INPUT, "%s: cannot read: %s", path, strerror(errno));
            free(path);
            break;
        }
        free(path);
        if (want_dirs ? S_ISDIR(sb.st_mode) : S_ISREG(sb.st_mode)) names_push(&l, e->d_name);
    }
    closedir(d);
    if (st) {
        names_free(&l);
        return st;
    }
    qsort(l.names, (size_t)l.n, sizeof(char *), compare_names);
    *out = l;
    return D2C_OK;
}

static int has_image_extension(const char *name) {
    const char *dot = strrchr(name, '.');
    return dot && (strcasecmp(dot, ".png") == 0 || strcasecmp(dot, ".jpg") == 0 || strcasecmp(dot, ".jpeg") == 0);
}

/* The folder holding the class sub-folders for this split, into *root. */
static int split_root(const char *dir, const char *split, char **root) {
    char *train = join_path(dir, "train"), *test = join_path(dir, "test");
    int has_splits = is_dir(train) || is_dir(test);
    int want_test = split && strcmp(split, "test") == 0;
    int st = D2C_OK;
    *root = NULL;
    if (has_splits) {
        if (!is_dir(want_test ? test : train))
            st = d2c_error(D2C_ERR_INPUT, "%s: has no %s/ sub-folder", dir, want_test ? "test" : "train");
        else
            *root = xstrdup(want_test ? test : train);
    } else if (want_test) {
        st = d2c_error(D2C_ERR_INPUT, "%s: has no test/ sub-folder, so no test split", dir);
    } else {
        *root = xstrdup(dir);
    }
    free(train);
    free(test);
    return st;
}

/* The image paths of every class folder, in load order, and where each class's end. */
static int list_images(const char *root, const NameList *classes, NameList *paths, int *class_end) {
    int skipped = 0;
    for (int k = 0; k < classes->n; k++) {
        char *class_dir = join_path(root, classes->names[k]);
        NameList files;
        int st = list_dir(class_dir, 0, &files);
        int before = paths->n;
        for (int i = 0; st == D2C_OK && i < files.n; i++) {
            if (!has_image_extension(files.names[i])) {
                skipped++;
                continue;
            }
            if (paths->n == INT32_MAX - 1) {
                st = d2c_error(D2C_ERR_INPUT, "%s: too many images", root);
                break;
            }
            char *path = join_path(class_dir, files.names[i]);
            names_push(paths, path);
            free(path);
        }
        class_end[k] = paths->n;
        if (st == D2C_OK && paths->n == before)
            st = d2c_error(D2C_ERR_INPUT, "%s: class folder holds no .png, .jpg or .jpeg files (every class needs images)",
                           class_dir);
        names_free(&files);
        free(class_dir);
        if (st) return st;
    }
    if (skipped) warn_msg("%s: skipped %d files that are not .png, .jpg or .jpeg", root, skipped);
    return D2C_OK;
}

/* Decodes every image into d (whose size is the first image's), in parallel. */
static int decode_all(Dataset *d, const NameList *paths, const ImageU8 *first) {
    const size_t image_size = (size_t)d->c * d->h * d->w;
    /* The error of the first bad file in load order, so the report does not depend on
     * thread timing (and is recorded on this thread, see core/status.h). */
    int bad = d->n;
    char bad_reason[320] = "";
#pragma omp parallel for schedule(dynamic, 64)
    for (int i = 0; i < d->n; i++) {
        char reason[320];
        ImageU8 img = *first;
        int ok = i == 0 || image_decode_file(paths->names[i], &img, reason, sizeof reason) == 0;
        if (ok && (img.c != d->c || img.h != d->h || img.w != d->w)) {
            snprintf(reason, sizeof reason, "%dx%d with %d channel%s, but %s is %dx%d with %d channel%s", img.w, img.h,
                     img.c, img.c == 1 ? "" : "s", paths->names[0], d->w, d->h, d->c, d->c == 1 ? "" : "s");
            ok = 0;
        }
        if (ok) {
            float *out = d->images + (size_t)i * image_size;
            for (size_t p = 0; p < image_size; p++) out[p] = (float)img.pixels[p] / 127.5f - 1.0f;
        } else {
#pragma omp critical(d2c_folder_error)
            if (i < bad) {
                bad = i;
                memcpy(bad_reason, reason, sizeof reason);
            }
        }
        if (i != 0) image_free(&img);
    }
    if (bad < d->n) return d2c_error(D2C_ERR_INPUT, "%s: %s", paths->names[bad], bad_reason);
    return D2C_OK;
}

int dataset_load_folder(Dataset *out, const char *dir, const char *split, const char *source) {
    memset(out, 0, sizeof *out);
    if (!is_dir(dir)) return d2c_error(D2C_ERR_INPUT, "%s: no such folder", dir);
    char *root;
    D2C_TRY(split_root(dir, split, &root));
    NameList classes = {0}, paths = {0};
    int *class_end = NULL;
    ImageU8 first = {0};
    Dataset d = {0};
    int st;
    D2C_TRY_GOTO(st, list_dir(root, 1, &classes), done);
    if (classes.n == 0) {
        st = d2c_error(D2C_ERR_INPUT, "%s: no class sub-folders (expected one folder of images per class)", root);
        goto done;
    }
    if (classes.n > D2C_MAX_CLASSES) {
        st = d2c_error(D2C_ERR_INPUT, "%s: %d class folders; d2c takes at most %d classes", root, classes.n,
                       D2C_MAX_CLASSES);
        goto done;
    }
    class_end = xmalloc((size_t)classes.n * sizeof(int)); /* (K) paths of class k end here */
    D2C_TRY_GOTO(st, list_images(root, &classes, &paths, class_end), done);
    D2C_TRY_GOTO(st, image_load(&first, paths.names[0]), done);

    d.n = paths.n;
    d.c = first.c;
    d.h = first.h;
    d.w = first.w;
    d.num_classes = classes.n;
    const size_t image_size = (size_t)d.c * d.h * d.w;
    d.images = d2c_try_malloc((size_t)d.n * image_size * sizeof(float));
    if (!d.images) {
        st = d2c_error(D2C_ERR_FAIL, "%s: out of memory for %d images of %dx%dx%d", root, d.n, d.c, d.h, d.w);
        goto done;
    }
    d.labels = xmalloc((size_t)d.n * sizeof(int64_t));
    for (int k = 0, i = 0; k < classes.n; k++)
        for (; i < class_end[k]; i++) d.labels[i] = k;
    D2C_TRY_GOTO(st, decode_all(&d, &paths, &first), done);

    d.class_names = classes.names; /* taken over from the list */
    classes.names = NULL;
    classes.n = 0;
    d.source = xstrdup(source);
    *out = d;
    memset(&d, 0, sizeof d);
done:
    free(d.images);
    free(d.labels);
    image_free(&first);
    free(class_end);
    names_free(&classes);
    names_free(&paths);
    free(root);
    return st;
}

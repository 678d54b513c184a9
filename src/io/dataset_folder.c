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

/* Sorted names of dir's sub-folders (want_dirs) or regular files, hidden ones skipped. */
static NameList list_dir(const char *dir, int want_dirs) {
    DIR *d = opendir(dir);
    if (!d) die_input("%s: cannot list folder: %s", dir, strerror(errno));
    NameList l = {0};
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        char *path = join_path(dir, e->d_name);
        struct stat sb;
        int ok = stat(path, &sb) == 0 && (want_dirs ? S_ISDIR(sb.st_mode) : S_ISREG(sb.st_mode));
        free(path);
        if (ok) names_push(&l, e->d_name);
    }
    closedir(d);
    qsort(l.names, (size_t)l.n, sizeof(char *), compare_names);
    return l;
}

static int has_image_extension(const char *name) {
    const char *dot = strrchr(name, '.');
    return dot && (strcasecmp(dot, ".png") == 0 || strcasecmp(dot, ".jpg") == 0 || strcasecmp(dot, ".jpeg") == 0);
}

/* The folder holding the class sub-folders for this split. */
static char *split_root(const char *dir, const char *split) {
    char *train = join_path(dir, "train"), *test = join_path(dir, "test");
    int has_splits = is_dir(train) || is_dir(test);
    int want_test = split && strcmp(split, "test") == 0;
    char *root;
    if (has_splits) {
        root = xstrdup(want_test ? test : train);
        if (!is_dir(root)) die_input("%s: has no %s/ sub-folder", dir, want_test ? "test" : "train");
    } else {
        if (want_test) die_input("%s: has no test/ sub-folder, so no test split", dir);
        root = xstrdup(dir);
    }
    free(train);
    free(test);
    return root;
}

Dataset dataset_load_folder(const char *dir, const char *split, const char *source) {
    if (!is_dir(dir)) die_input("%s: no such folder", dir);
    char *root = split_root(dir, split);
    NameList classes = list_dir(root, 1);
    if (classes.n == 0) die_input("%s: no class sub-folders (expected one folder of images per class)", root);

    NameList paths = {0};
    int *class_end = xmalloc((size_t)classes.n * sizeof(int)); /* (K) paths of class k end here */
    int skipped = 0;
    for (int k = 0; k < classes.n; k++) {
        char *class_dir = join_path(root, classes.names[k]);
        NameList files = list_dir(class_dir, 0);
        int before = paths.n;
        for (int i = 0; i < files.n; i++) {
            if (!has_image_extension(files.names[i])) {
                skipped++;
                continue;
            }
            if (paths.n == INT32_MAX - 1) die_input("%s: too many images", root);
            char *path = join_path(class_dir, files.names[i]);
            names_push(&paths, path);
            free(path);
        }
        class_end[k] = paths.n;
        if (paths.n == before) die_input("%s: class folder holds no .png, .jpg or .jpeg files", class_dir);
        names_free(&files);
        free(class_dir);
    }
    if (skipped) warn_msg("%s: skipped %d files that are not .png, .jpg or .jpeg", root, skipped);

    ImageU8 first = image_load(paths.names[0]);
    Dataset d = {0};
    d.n = paths.n;
    d.c = first.c;
    d.h = first.h;
    d.w = first.w;
    d.num_classes = classes.n;
    size_t image_size = (size_t)d.c * d.h * d.w;
    d.images = xmalloc_floats((size_t)d.n * image_size);
    d.labels = xmalloc((size_t)d.n * sizeof(int64_t));
    for (int k = 0, i = 0; k < classes.n; k++)
        for (; i < class_end[k]; i++) d.labels[i] = k;
    free(class_end);

    /* The error of the first bad file in load order, so the report does not depend on
     * thread timing. */
    int bad = d.n;
    char bad_reason[320] = "";
#pragma omp parallel for schedule(dynamic, 64)
    for (int i = 0; i < d.n; i++) {
        char reason[320];
        ImageU8 img = first;
        int ok = i == 0 || image_decode_file(paths.names[i], &img, reason, sizeof reason) == 0;
        if (ok && (img.c != d.c || img.h != d.h || img.w != d.w)) {
            snprintf(reason, sizeof reason, "%dx%d with %d channel%s, but %s is %dx%d with %d channel%s", img.w,
                     img.h, img.c, img.c == 1 ? "" : "s", paths.names[0], d.w, d.h, d.c, d.c == 1 ? "" : "s");
            ok = 0;
        }
        if (ok) {
            float *out = d.images + (size_t)i * image_size;
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
    if (bad < d.n) die_input("%s: %s", paths.names[bad], bad_reason);
    image_free(&first);

    d.class_names = classes.names; /* taken over from the list */
    d.source = xstrdup(source);
    names_free(&paths);
    free(root);
    return d;
}

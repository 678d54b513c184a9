/* Labelled image data sets in memory, loaded from the SRC strings of INTERFACE.md:
 *   fashion-mnist          Debian's dataset-fashion-mnist (/usr/share/datasets/fashion-mnist,
 *                          or $D2C_FASHION_MNIST_DIR)
 *   mnist:DIR | mnist:PREFIX   the four MNIST-named IDX files (train-images-idx3-ubyte,
 *                          train-labels-idx1-ubyte, t10k-...; gzip or raw) in DIR, or
 *                          named PREFIX + those names
 *   idx:PREFIX             PREFIX-images-idx3-ubyte[.gz] and PREFIX-labels-idx1-ubyte[.gz]
 *   folder:DIR             one sub-folder per class holding PNG/JPEG files, classes in
 *                          byte order of the folder names; DIR/train and DIR/test, when
 *                          present, are the splits
 *   FILE.safetensors       a pool or samples file: images F32 (N, C, H, W), labels I64 (N);
 *                          metadata "num_classes" and "class_names" (a JSON list) are used
 *                          when present
 * and a ":train" or ":test" suffix choosing the split (default train; ":test" on a source
 * without one is an error). ":val" is the held-out part of the training split (the last
 * min(5000, N / 10) * n_k / N images of every class k, the evaluator's validation split)
 * and ":fit" the rest: condense and train on fit, choose settings on val, and keep test
 * for the final report. Pixels become float32 u8 / 127.5 - 1, in [-1, 1].
 * Any problem is D2C_ERR_INPUT with a message naming the file at fault (core/status.h).
 *
 * Labels and classes, one rule: labels lie in [0, K), where K is the source's own class
 * count (fashion-mnist and mnist: 10; folder: the number of class folders), else a pool
 * or samples file's "num_classes" metadata, else max label + 1 (idx:, a .safetensors
 * file without the metadata); K is at most D2C_MAX_CLASSES (core/util.h). The loaders
 * refuse a label outside [0, K) and a K above the cap. Training and condensation also
 * refuse data where a class in [0, K) holds no image (dataset_require_all_classes), so a
 * stray label (a pool labelled 0, 1, 2, 99; an IDX label 200) is an error, not a model
 * with dozens of classes it never saw.
 * Shape letters: N images, C channels, H rows, W columns, K classes. */
#ifndef D2C_IO_DATASET_H
#define D2C_IO_DATASET_H

#include <stdint.h>

typedef struct {
    int n, c, h, w;
    int num_classes;
    float *images;      /* (N, C, H, W) in [-1, 1], 64-byte aligned */
    int64_t *labels;    /* (N) in [0, K) */
    char **class_names; /* (K) */
    char *source;       /* the SRC it came from, split included, e.g. "fashion-mnist:train" */
} Dataset;

/* Loads src into *d (zeroed on failure). */
int dataset_load(Dataset *d, const char *src);
void dataset_free(Dataset *d);

/* The loaders behind dataset_load, for callers that know the kind of source; source is
 * the string stored in Dataset.source. num_classes 0 means max label + 1. */
int dataset_load_idx(Dataset *d, const char *images_path, const char *labels_path, int num_classes,
                     const char *source);
int dataset_load_folder(Dataset *d, const char *dir, const char *split /* "train", "test" or NULL */,
                        const char *source);
int dataset_load_safetensors(Dataset *d, const char *path, const char *source);

/* D2C_ERR_INPUT naming the source and the empty classes unless every class 0..K-1 holds
 * at least one image (what training and condensation need). */
int dataset_require_all_classes(const Dataset *d);

/* Held-out images per data set for ":val" (and the evaluator's default --val). */
#define DATASET_HOLDOUT 5000

/* The validation split: the last val * n_k / n images of every class k (in data-set
 * order), so it is class-balanced even where the data set is sorted by class (folder:);
 * the training part is the rest. With limit > 0 only the first limit * n_k / n images
 * of each class are used at all. Index lists are ascending within each class; requires
 * 0 <= val <= (limit or n) / 2. */
void dataset_holdout_split(const Dataset *d, int limit, int val, int *train, int *n_train, int *valid, int *n_val);

/* A new data set holding images idx[0..n) of d, in that order (indices may repeat). */
Dataset dataset_subset(const Dataset *d, const int *idx, int n);

/* Image indices grouped by class: class k's are index[start[k] .. start[k + 1]),
 * ascending. */
typedef struct {
    int num_classes;
    int *start; /* (K + 1) */
    int *index; /* (N) */
} ClassIndex;

ClassIndex class_index_build(const Dataset *d);
static inline int class_index_count(const ClassIndex *ci, int k) { return ci->start[k + 1] - ci->start[k]; }
void class_index_free(ClassIndex *ci);

#endif

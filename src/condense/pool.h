/* The synthetic data pool: N = K * ipc images with labels and optional learnable
 * conditioning vectors, its file format (INTERFACE.md POOL), and its figure (a PNG grid of
 * synthetic images beside real images of the same classes, captioned with the ratio).
 * Shapes: K classes, ipc images per class, C H W image, E conditioning width. */
#ifndef D2C_CONDENSE_POOL_H
#define D2C_CONDENSE_POOL_H

#include <stdint.h>

#include "io/dataset.h"

typedef struct {
    int num_classes, ipc, n;   /* n = num_classes * ipc, class-major order */
    int c, h, w;
    float *images;             /* (n, C, H, W) in [-1, 1] */
    int64_t *labels;           /* (n) */
    int cond_dim;              /* E, 0 when there are no conditioning vectors */
    float *cond;               /* (n, E) or NULL */
} Pool;

/* Images per class for a ratio of the real training set (rounded, at least 1). */
int pool_ipc_for_ratio(const Dataset *d, double ratio);
void pool_create(Pool *p, int num_classes, int ipc, int c, int h, int w, int cond_dim);
void pool_free(Pool *p);
/* Copies the images at idx (class-major, ipc per class) from the data set. */
void pool_fill_from(Pool *p, const Dataset *d, const int *idx);

/* Writes the pool atomically with metadata (key/value pairs, NULL-terminated); path is
 * as it was on failure (D2C_ERR_INPUT: cannot be written there, D2C_ERR_FAIL: I/O). */
int pool_save(const Pool *p, const char *path, const char *const *meta);
/* Reads a pool file (images, labels in class-major order, optional cond) into *p;
 * D2C_ERR_INPUT naming the file when it is not a d2c pool. */
int pool_load(Pool *p, const char *path);

/* PNG: for each class a row of up to `cols` synthetic images, then a row of real images
 * of that class; caption text below. */
int pool_write_figure(const Pool *p, const Dataset *real, const char *path, const char *caption);

#endif

/* What the public API's implementation files (the .c files of src/api) share: the
 * handle structs that cross files, argument checks that record D2C_ERR_INPUT naming the
 * function, and the reading of versioned options structs. Not installed; include/d2c.h is
 * the API. */
#ifndef D2C_API_API_H
#define D2C_API_API_H

#include <stddef.h>

#include "core/status.h"
#include "d2c.h"
#include "diffusion/checkpoint.h"
#include "model/unet.h"

/* A model file in memory: its metadata and EMA weights (lay.n_params floats). */
struct d2c_model {
    ModelInfo info;
    UNetLayout *lay;
    float *weights;
    char *config_json;
    char *path;
};

/* Returns D2C_ERR_INPUT "<fn>: <what> is NULL" from the calling function when ptr is NULL. */
#define API_NOT_NULL(fn, ptr, what) \
    do {                            \
        if (!(ptr)) return d2c_error(D2C_ERR_INPUT, "%s: %s is NULL", fn, what); \
    } while (0)

/* Reads a caller's options struct whose first member is its size_t struct_size into dst,
 * which holds the defaults and is cur_size bytes (this library's sizeof): the first
 * struct_size bytes come from src, the rest keep their defaults (a caller built against
 * an older d2c.h). D2C_ERR_INPUT naming `what` when src is NULL or struct_size is below
 * min_size (the first version's size) or above cur_size (a newer d2c.h than this
 * library). */
int api_read_options(void *dst, size_t cur_size, size_t min_size, const void *src, const char *what);

/* D2C_ERR_INPUT "<fn>: <what> must be 1..<max>, got <n>" unless 1 <= n <= max. */
int api_check_count(const char *fn, const char *what, long long n, long long max);

/* The engine of an options' device string (NULL or "cpu": the process-wide CPU engine;
 * "cuda": a new CUDA engine); D2C_ERR_INPUT naming fn otherwise. api_close_engine
 * releases it (the CPU engine is kept). */
int api_open_engine(const char *fn, const char *device, Engine **out);
void api_close_engine(Engine *e);

/* D2C_ERR_INPUT unless (c, h, w) equals the handle's (C, H, W); names fn and both shapes. */
int api_check_shape(const char *fn, int c, int h, int w, int C, int H, int W);

#endif

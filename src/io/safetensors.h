/* safetensors files: the container of every d2c model, pool, samples and noise file.
 *
 * Layout (little-endian): u64 N, then N bytes of JSON header
 *   {"__metadata__": {"k": "v", ...}, "name": {"dtype": "F32", "shape": [..],
 *    "data_offsets": [begin, end]}, ...}
 * padded with spaces, then the data section; offsets are relative to its start.
 *
 * The reader validates a file the way the official implementation does before it
 * allocates anything sized by it: the header length at most 100,000,000 bytes and inside
 * the file, UTF-8 JSON, known dtypes, shapes of non-negative integers whose product
 * (computed without overflow) times the element size equals end - begin, offsets inside
 * the data section and tiling it with no gap, overlap or trailing bytes, unique names,
 * string metadata values. Any problem is D2C_ERR_INPUT with a message naming the file
 * (core/status.h). Tensor data is 8-byte aligned in memory whatever its alignment in
 * the file.
 *
 * The writer keeps pointers to the caller's buffers and writes them in the order added,
 * atomically (temporary file + fsync + rename), with the header padded to a multiple of 8
 * so that the data section starts 8-byte aligned (tensors added in order of decreasing
 * element size all stay aligned in the file).
 *
 * Integrity: every file d2c writes carries "checksum": "crc32:<hex>" in its metadata, a
 * CRC-32 of its tensor bytes, tensor descriptions and other metadata (st_checksum.h), and
 * st_open verifies it: a changed byte is D2C_ERR_INPUT "checksum mismatch" naming the
 * file. Files without the key (older d2c output, PyTorch state_dicts, other tools) are
 * read without that verification; every structural check above still applies. */
#ifndef D2C_IO_SAFETENSORS_H
#define D2C_IO_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#define ST_MAX_DIMS 8

typedef enum { ST_F32, ST_F64, ST_I32, ST_I64, ST_U8 } StDtype;

typedef struct {
    char *name;
    StDtype dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    int64_t numel;  /* product of shape (1 for a scalar) */
    size_t offset;  /* begin within the data section */
    size_t nbytes;  /* numel * element size */
} StTensor;

typedef struct StFile StFile;

/* "F32", "I64", ... and the element size in bytes. */
const char *st_dtype_name(StDtype dtype);
size_t st_dtype_size(StDtype dtype);

/* Opens and validates a file into *f (NULL on failure). D2C_ERR_INPUT naming the file
 * on any problem with it, D2C_ERR_FAIL if its data does not fit in memory. */
int st_open(StFile **f, const char *path);
void st_close(StFile *f);
const char *st_path(const StFile *f);

/* Tensors in file order (sorted by offset). */
int st_count(const StFile *f);
const StTensor *st_tensor(const StFile *f, int i);
/* NULL when absent. */
const StTensor *st_find(const StFile *f, const char *name);
/* The tensor's bytes, aligned for its dtype; valid until st_close. */
const void *st_data(const StFile *f, const StTensor *t);

/* A "__metadata__" value, or NULL when absent. */
const char *st_meta(const StFile *f, const char *key);
int st_meta_count(const StFile *f);
/* The i-th metadata entry; returns its key and sets *value. */
const char *st_meta_at(const StFile *f, int i, const char **value);

/* A tensor that must exist with ndim dimensions of these sizes (shape may be NULL for
 * any sizes, and an entry of -1 means any size): *data points to its values, else
 * D2C_ERR_INPUT names the file and the tensor (and *data is NULL). st_require_f32
 * accepts F32 and converts F64; st_require_i64 accepts I64 and converts I32 and U8.
 * Converted copies belong to f and live until st_close. The tensor's actual shape is
 * st_find(f, name)->shape. */
int st_require_f32(const StFile *f, const char *name, int ndim, const int64_t *shape, const float **data);
int st_require_i64(const StFile *f, const char *name, int ndim, const int64_t *shape, const int64_t **data);

typedef struct StWriter StWriter;

StWriter *st_writer_new(void);
/* Adds a tensor; data is not copied and must stay valid until st_write. Names must be
 * unique and not "__metadata__" (a programming error otherwise: the fatal handler). */
void st_add(StWriter *w, const char *name, StDtype dtype, int ndim, const int64_t *shape,
            const void *data);
/* Sets (or replaces) a metadata entry; key and value are copied. "checksum" is reserved:
 * st_write computes it. */
void st_set_meta(StWriter *w, const char *key, const char *value);
/* Writes the file atomically: D2C_ERR_INPUT if the folder cannot be written,
 * D2C_ERR_FAIL on an I/O failure, and path is then as it was. The writer may be written
 * again or freed afterwards. */
int st_write(StWriter *w, const char *path);
void st_writer_free(StWriter *w);

#endif

/* The checksum d2c writes into the metadata of every safetensors file it makes, and that
 * st_open verifies when a file has one: "checksum": "crc32:<8 lowercase hex digits>", the
 * CRC-32 (zlib's crc32) of, in this order,
 *   1. for each tensor, by name in byte order: its name, NUL, then the text
 *      "<dtype> <d0,d1,...> <begin> <end>" (shape comma-separated, empty for a scalar;
 *      the data offsets), NUL;
 *   2. for each metadata entry but "checksum", by key in byte order: key, NUL, value, NUL;
 *   3. the data section, every byte after the header.
 * So a changed byte of tensor data, a tensor's name, dtype, shape or offsets, or a
 * metadata value is caught, not only a truncated file. Files without the key (older d2c
 * output, files written by PyTorch or other tools) are read without verification.
 * Internal to src/io. */
#ifndef D2C_IO_ST_CHECKSUM_H
#define D2C_IO_ST_CHECKSUM_H

#include <stddef.h>
#include <stdint.h>

#include "io/safetensors.h"

#define ST_CHECKSUM_KEY "checksum"
#define ST_CHECKSUM_PREFIX "crc32:"

typedef struct {
    const char *name;
    StDtype dtype;
    int ndim;
    const int64_t *shape;
    uint64_t begin, end;
} StChecksumTensor;

/* Parts 1 and 2 (tensors and metadata are sorted here; the arrays are not changed);
 * continue with st_checksum_data over the data section. */
uint32_t st_checksum_header(const StChecksumTensor *tensors, int n_tensors, char *const *keys, char *const *values,
                            int n_meta);
uint32_t st_checksum_data(uint32_t crc, const void *data, size_t n);
/* "crc32:%08x" into buf (at least 16 bytes). */
void st_checksum_format(uint32_t crc, char *buf, size_t cap);
/* Parses a "checksum" value; -1 when it is not "crc32:" and 8 hex digits. */
int st_checksum_parse(const char *value, uint32_t *crc);

#endif

/* IDX files (the MNIST family's format): a big-endian header of magic [0, 0, type, ndim]
 * and ndim u32 sizes, then the values. d2c reads unsigned-byte arrays (type 0x08), the
 * images (idx3: n, rows, cols) and labels (idx1: n), gzip-compressed or raw. */
#ifndef D2C_IO_IDX_H
#define D2C_IO_IDX_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    int ndim;
    int64_t dims[3];
    uint8_t *data;  /* (dims[0], ..., dims[ndim-1]) */
    size_t size;    /* product of dims */
} IdxArray;

/* Reads a u8 IDX file with ndim (1..3) dimensions, gzip or raw (told apart by content),
 * into *a. D2C_ERR_INPUT naming the file if it is missing, has another magic, type or
 * rank, or is truncated, corrupt or longer than its header says (checked before the
 * values are allocated); *a is then empty. */
int idx_read_u8(IdxArray *a, const char *path, int ndim);
void idx_free(IdxArray *a);

#endif

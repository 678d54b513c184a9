/* IDX reader. zlib's gz* interface reads gzip-compressed and raw files alike; the header
 * is read first and the size it promises is checked against the file before anything is
 * allocated for the values: a raw file must hold exactly header + values bytes, and a
 * compressed one cannot hold more than deflate's largest expansion (1032:1) of its size.
 * Then exactly that many values are read and the stream must end there, intact. */
#include "io/idx.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#include "core/util.h"

/* Larger than any IDX data set d2c handles (MNIST-family sets are under 100 MB). */
#define IDX_MAX_BYTES ((uint64_t)4 << 30)
/* deflate expands at most 1032:1 (a run of one byte), plus the gzip header */
#define GZIP_MAX_RATIO 1032u

/* zlib's messages start "path: "; ours name the path already. */
static const char *strip_path(const char *msg, const char *path) {
    size_t n = strlen(path);
    return strncmp(msg, path, n) == 0 && strncmp(msg + n, ": ", 2) == 0 ? msg + n + 2 : msg;
}

/* Reads up to n bytes; sets *got. D2C_ERR_INPUT on corrupt gzip data. */
static int gz_read_all(gzFile gz, const char *path, void *buf, size_t n, size_t *got) {
    *got = 0;
    while (*got < n) {
        size_t want = D2C_MIN(n - *got, (size_t)1 << 30);
        int r = gzread(gz, (unsigned char *)buf + *got, (unsigned)want);
        if (r < 0) {
            int code;
            const char *msg = gzerror(gz, &code);
            if (code == Z_BUF_ERROR) return d2c_error(D2C_ERR_INPUT, "%s: truncated: the gzip stream ends early", path);
            return d2c_error(D2C_ERR_INPUT, "%s: corrupt gzip data (%s)", path,
                             code == Z_ERRNO ? strerror(errno) : strip_path(msg, path));
        }
        if (r == 0) break;
        *got += (size_t)r;
    }
    /* a clean end of input is Z_OK; a stream cut short is Z_BUF_ERROR */
    int code;
    const char *msg = gzerror(gz, &code);
    if (code == Z_BUF_ERROR) return d2c_error(D2C_ERR_INPUT, "%s: truncated: the gzip stream ends early", path);
    if (code != Z_OK) return d2c_error(D2C_ERR_INPUT, "%s: corrupt gzip data (%s)", path, strip_path(msg, path));
    return D2C_OK;
}

static int read_idx(gzFile gz, const char *path, uint64_t file_bytes, int ndim, IdxArray *a) {
    uint8_t head[4 + 4 * 3];
    size_t got;
    D2C_TRY(gz_read_all(gz, path, head, 4, &got));
    if (got < 4 || head[0] != 0 || head[1] != 0)
        return d2c_error(D2C_ERR_INPUT, "%s: not an IDX file (bad magic number)", path);
    if (head[2] != 0x08)
        return d2c_error(D2C_ERR_INPUT, "%s: IDX element type 0x%02x; d2c reads unsigned bytes (0x08)", path, head[2]);
    if (head[3] != ndim)
        return d2c_error(D2C_ERR_INPUT, "%s: IDX file with %d dimensions, expected %d (%s)", path, head[3], ndim,
                         ndim == 3 ? "an idx3 image file" : ndim == 1 ? "an idx1 label file" : "a rank-2 file");
    const size_t header = 4 + 4 * (size_t)ndim;
    D2C_TRY(gz_read_all(gz, path, head + 4, header - 4, &got));
    if (got < header - 4) return d2c_error(D2C_ERR_INPUT, "%s: truncated IDX header", path);

    /* the product of at most three u32 sizes, saturated at IDX_MAX_BYTES + 1 */
    uint64_t size = 1;
    for (int d = 0; d < ndim; d++) {
        const uint8_t *p = head + 4 + 4 * d;
        a->dims[d] = (int64_t)((uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]);
        size = a->dims[d] == 0 ? 0 : size > IDX_MAX_BYTES ? size : size * (uint64_t)a->dims[d];
    }
    const int compressed = !gzdirect(gz);
    const uint64_t at_most = compressed ? file_bytes * GZIP_MAX_RATIO : file_bytes - header;
    if (size > IDX_MAX_BYTES && size <= at_most)
        return d2c_error(D2C_ERR_INPUT, "%s: the header promises more than %llu values; not an IDX file d2c can use", path,
                         (unsigned long long)IDX_MAX_BYTES);
    if (size > at_most)
        return d2c_error(D2C_ERR_INPUT, "%s: truncated: the header promises %lld x %lld x %lld values but %s %llu bytes",
                         path, (long long)a->dims[0], ndim > 1 ? (long long)a->dims[1] : 1LL,
                         ndim > 2 ? (long long)a->dims[2] : 1LL,
                         compressed ? "the whole gzip file, which cannot expand 1032-fold, has" : "the file holds",
                         (unsigned long long)(compressed ? file_bytes : file_bytes - header));
    if (!compressed && size < at_most)
        return d2c_error(D2C_ERR_INPUT, "%s: %llu bytes after the data its header describes; not a valid IDX file", path,
                         (unsigned long long)(at_most - size));

    a->ndim = ndim;
    a->size = (size_t)size;
    a->data = d2c_try_malloc(a->size ? a->size : 1);
    if (!a->data) return d2c_error(D2C_ERR_FAIL, "%s: out of memory for %zu values", path, a->size);
    D2C_TRY(gz_read_all(gz, path, a->data, a->size, &got));
    if (got < a->size)
        return d2c_error(D2C_ERR_INPUT, "%s: truncated: the header promises %zu values but the file holds %zu", path,
                         a->size, got);
    uint8_t extra;
    D2C_TRY(gz_read_all(gz, path, &extra, 1, &got));
    if (got) return d2c_error(D2C_ERR_INPUT, "%s: bytes after the data its header describes; not a valid IDX file", path);
    return D2C_OK;
}

int idx_read_u8(IdxArray *a, const char *path, int ndim) {
    D2C_CHECK(ndim >= 1 && ndim <= 3);
    memset(a, 0, sizeof *a);
    struct stat sb;
    if (stat(path, &sb) != 0) return d2c_error(D2C_ERR_INPUT, "%s: cannot open: %s", path, strerror(errno));
    if (!S_ISREG(sb.st_mode)) return d2c_error(D2C_ERR_INPUT, "%s: not a regular file", path);
    errno = 0;
    gzFile gz = gzopen(path, "rb");
    if (!gz) return d2c_error(D2C_ERR_INPUT, "%s: cannot open: %s", path, errno ? strerror(errno) : "out of memory");
    int st = read_idx(gz, path, (uint64_t)sb.st_size, ndim, a);
    gzclose(gz);
    if (st) idx_free(a);
    return st;
}

void idx_free(IdxArray *a) {
    free(a->data);
    memset(a, 0, sizeof *a);
}

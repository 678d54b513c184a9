/* IDX reader: decompresses the whole file through zlib's gz* interface (which passes
 * raw files through unchanged), then checks the header against the decompressed length,
 * so neither a corrupt header nor a truncated file can cause a large allocation or a
 * silent short read. */
#include "io/idx.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "core/util.h"

/* Larger than any IDX data set d2c handles (MNIST-family sets are under 100 MB). */
#define IDX_MAX_BYTES ((size_t)4 << 30)

/* zlib's messages start "path: "; ours name the path already. */
static const char *strip_path(const char *msg, const char *path) {
    size_t n = strlen(path);
    return strncmp(msg, path, n) == 0 && strncmp(msg + n, ": ", 2) == 0 ? msg + n + 2 : msg;
}

/* The whole (decompressed) content of path; dies on a read error or a truncated stream. */
static uint8_t *read_gz(const char *path, size_t *len) {
    errno = 0;
    gzFile gz = gzopen(path, "rb");
    if (!gz) die_input("%s: cannot open: %s", path, errno ? strerror(errno) : "out of memory");
    size_t cap = (size_t)1 << 20, n = 0;
    uint8_t *buf = xmalloc(cap);
    for (;;) {
        if (n == cap) {
            if (cap >= IDX_MAX_BYTES) die_input("%s: larger than %zu bytes; not an IDX file d2c can use", path, IDX_MAX_BYTES);
            cap *= 2;
            buf = xrealloc(buf, cap);
        }
        size_t want = D2C_MIN(cap - n, (size_t)1 << 30);
        int got = gzread(gz, buf + n, (unsigned)want);
        if (got < 0) {
            int code;
            const char *msg = gzerror(gz, &code);
            die_input("%s: corrupt gzip data (%s)", path, code == Z_ERRNO ? strerror(errno) : strip_path(msg, path));
        }
        if (got == 0) break;
        n += (size_t)got;
    }
    int code;
    gzerror(gz, &code);
    if (code == Z_BUF_ERROR) die_input("%s: truncated: the gzip stream ends early", path);
    if (code != Z_OK) die_input("%s: corrupt gzip data (%s)", path, strip_path(gzerror(gz, &code), path));
    gzclose(gz);
    *len = n;
    return buf;
}

IdxArray idx_read_u8(const char *path, int ndim) {
    D2C_CHECK(ndim >= 1 && ndim <= 3);
    size_t len;
    uint8_t *buf = read_gz(path, &len);
    if (len < 4 || buf[0] != 0 || buf[1] != 0)
        die_input("%s: not an IDX file (bad magic number)", path);
    if (buf[2] != 0x08)
        die_input("%s: IDX element type 0x%02x; d2c reads unsigned bytes (0x08)", path, buf[2]);
    if (buf[3] != ndim)
        die_input("%s: IDX file with %d dimensions, expected %d (%s)", path, buf[3], ndim,
                  ndim == 3 ? "an idx3 image file" : ndim == 1 ? "an idx1 label file" : "");
    size_t header = 4 + 4 * (size_t)ndim;
    if (len < header) die_input("%s: truncated IDX header", path);

    IdxArray a = {.ndim = ndim};
    uint64_t size = 1;
    int too_big = 0;
    for (int d = 0; d < ndim; d++) {
        const uint8_t *p = buf + 4 + 4 * d;
        a.dims[d] = (int64_t)((uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]);
        if (a.dims[d] == 0) size = 0;
        else if (!too_big && size > 0 && size > (uint64_t)len / (uint64_t)a.dims[d]) too_big = 1;
        else if (!too_big) size *= (uint64_t)a.dims[d];
    }
    if (size == 0) too_big = 0;
    if (too_big || header + size > len)
        die_input("%s: truncated: the header promises %lld x %lld x %lld values but the file holds %zu",
                  path, (long long)a.dims[0], ndim > 1 ? (long long)a.dims[1] : 1LL,
                  ndim > 2 ? (long long)a.dims[2] : 1LL, len - header);
    if (header + size < len)
        die_input("%s: %zu bytes after the data its header describes; not a valid IDX file",
                  path, len - header - (size_t)size);
    a.size = (size_t)size;
    memmove(buf, buf + header, a.size);
    a.data = xrealloc(buf, a.size);
    return a;
}

void idx_free(IdxArray *a) {
    free(a->data);
    memset(a, 0, sizeof *a);
}

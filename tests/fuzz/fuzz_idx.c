/* Fuzz target: the IDX reader (io/idx.c), raw and gzip, as idx1, idx2 and idx3. The input
 * is the file. On success the array must hold exactly the product of its dimensions (every
 * byte is read here, so a short buffer is an ASan report); on failure it must be empty. */
#include <stdlib.h>

#include "core/status.h"
#include "fuzz.h"
#include "io/idx.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_write_file("input-idx-ubyte", data, size);
    for (int ndim = 1; ndim <= 3; ndim++) {
        IdxArray a;
        if (fuzz_status(idx_read_u8(&a, path, ndim)) == D2C_OK) {
            size_t n = 1;
            for (int d = 0; d < a.ndim; d++) n *= (size_t)a.dims[d];
            fuzz_require(a.ndim == ndim && n == a.size, "dims match the size");
            fuzz_touch(a.data, a.size);
            idx_free(&a);
        } else {
            fuzz_require(a.data == NULL && a.size == 0, "a failed read leaves the array empty");
        }
    }
    return 0;
}

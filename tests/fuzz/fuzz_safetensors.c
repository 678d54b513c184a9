/* Fuzz target: the safetensors reader (io/safetensors.c) under its own safety rules. The
 * input is the file. On success every tensor must lie inside the data, with numel x dtype
 * size = its bytes; every byte of every tensor is read, metadata entries are walked, and
 * each tensor is asked for through st_require_f32 / st_require_i64 (the conversions). */
#include <string.h>

#include "core/status.h"
#include "fuzz.h"
#include "io/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_write_file("input.safetensors", data, size);
    StFile *f = NULL;
    if (fuzz_status(st_open(&f, path)) != D2C_OK) {
        fuzz_require(f == NULL, "a failed open returns no file");
        return 0;
    }
    size_t total = 0;
    for (int i = 0; i < st_count(f); i++) {
        const StTensor *t = st_tensor(f, i);
        fuzz_require(t->nbytes == (size_t)t->numel * st_dtype_size(t->dtype), "numel x element size = bytes");
        fuzz_require(st_find(f, t->name) == t, "st_find finds each tensor");
        fuzz_touch(st_data(f, t), t->nbytes);
        total += t->nbytes;
        fuzz_require(total <= size, "tensors fit in the file");
        const float *x;
        const int64_t *y;
        fuzz_status(st_require_f32(f, t->name, t->ndim, t->shape, &x));
        fuzz_status(st_require_i64(f, t->name, t->ndim, NULL, &y));
    }
    for (int i = 0; i < st_meta_count(f); i++) {
        const char *value;
        const char *key = st_meta_at(f, i, &value);
        fuzz_require(key && value && st_meta(f, key) != NULL, "metadata entries are strings");
        volatile size_t n = strlen(key) + strlen(value);
        (void)n;
    }
    st_close(f);
    return 0;
}

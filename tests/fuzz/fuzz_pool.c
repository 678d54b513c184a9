/* Fuzz target: pool and samples files as data (dataset_load_safetensors, the loader behind
 * every FILE.safetensors data source) and as a pool (pool_load). The input is the file.
 * On success: labels in [0, K) with K within the class cap, pixels finite, and the pool's
 * counts consistent (n = K x ipc, class-major labels). */
#include <math.h>

#include "condense/pool.h"
#include "core/status.h"
#include "fuzz.h"
#include "io/dataset.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_write_file("pool.safetensors", data, size);
    Dataset d;
    if (fuzz_status(dataset_load_safetensors(&d, path, "fuzz.safetensors")) == D2C_OK) {
        fuzz_require(d.n > 0 && d.num_classes > 0, "a loaded data set holds images");
        for (int i = 0; i < d.n; i++) fuzz_require(d.labels[i] >= 0 && d.labels[i] < d.num_classes, "labels in [0, K)");
        for (size_t i = 0; i < (size_t)d.n * d.c * d.h * d.w; i++) fuzz_require(isfinite(d.images[i]), "finite pixels");
        dataset_free(&d);
    }
    Pool p;
    if (fuzz_status(pool_load(&p, path)) == D2C_OK) {
        fuzz_require(p.n == p.num_classes * p.ipc && p.n > 0, "n = K x ipc");
        for (int i = 0; i < p.n; i++) fuzz_require(p.labels[i] == i / p.ipc, "class-major labels");
        fuzz_touch(p.images, (size_t)p.n * p.c * p.h * p.w * sizeof(float));
        if (p.cond) fuzz_touch(p.cond, (size_t)p.n * p.cond_dim * sizeof(float));
        pool_free(&p);
    }
    return 0;
}

/* Fuzz target: model files (diffusion/checkpoint.c): the metadata and config
 * (checkpoint_read_info), the spec-named weights (checkpoint_load_weights) and the training
 * state for --resume (checkpoint_load_state). The input is the file. The weight buffers
 * are the caller's, sized by the config the file claims; the harness skips the two loads
 * when that config needs more floats than the file has bytes (the loads would refuse it
 * anyway, and a 4 GiB buffer per input would only measure the harness). */
#include <stdlib.h>

#include "core/status.h"
#include "diffusion/checkpoint.h"
#include "fuzz.h"
#include "model/unet.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_write_file("model.safetensors", data, size);
    ModelInfo info;
    if (fuzz_status(checkpoint_read_info(&info, path)) != D2C_OK) return 0;
    fuzz_require(unet_config_validate(&info.cfg, info.H, info.W) == D2C_OK, "a read config is valid");
    d2c_clear_error();
    UNetLayout lay;
    unet_layout_build(&lay, &info.cfg);
    if (lay.n_params <= size / sizeof(float)) {
        float *w = malloc(lay.n_params * sizeof(float) * 4 + 1);
        fuzz_status(checkpoint_load_weights(path, &lay, w));
        long step = -1;
        if (fuzz_status(checkpoint_load_state(path, &lay, w, w + lay.n_params, w + 2 * lay.n_params,
                                              w + 3 * lay.n_params, &step)) == D2C_OK)
            fuzz_require(step >= 0, "a loaded state has a step >= 0");
        free(w);
    }
    model_info_free(&info);
    return 0;
}

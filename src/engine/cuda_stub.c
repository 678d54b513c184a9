/* engine_cuda_create for a d2c built without the CUDA engine (D2C_CUDA OFF): the CMake
 * build compiles this file instead of src/engine/cuda/, so `--device cuda` gives one clear
 * error and no caller needs an #ifdef. */
#include "engine/backend.h"

#include "core/status.h"

int engine_cuda_create(Engine **out) {
    *out = NULL;
    return d2c_error(D2C_ERR_INPUT,
                     "--device cuda: this d2c was built without the CUDA engine; use --device cpu (or build with -DD2C_CUDA=ON)");
}

/* The public API's process-wide part (d2c.h "version, errors, threads, handlers"): the
 * version, the thread count, and the helpers of api.h. d2c_last_error, d2c_clear_error
 * and the handler setters live with the error model in core/status.c. */
#include <string.h>

#include "api/api.h"
#include "core/util.h"
#include "engine/backend.h"

const char *d2c_version(void) { return D2C_VERSION; }

int d2c_version_number(void) { return D2C_VERSION_MAJOR * 10000 + D2C_VERSION_MINOR * 100 + D2C_VERSION_PATCH; }

int d2c_set_threads(int n) {
    if (n < 1 || n > 4096) return d2c_error(D2C_ERR_INPUT, "d2c_set_threads: thread count must be 1..4096, got %d", n);
    engine_set_num_threads(n);
    return D2C_OK;
}

int d2c_get_threads(void) { return engine_get_num_threads(); }

int api_read_options(void *dst, size_t cur_size, size_t min_size, const void *src, const char *what) {
    API_NOT_NULL(what, src, "the options");
    size_t size;
    memcpy(&size, src, sizeof size); /* struct_size, the first member */
    if (size < min_size || size > cur_size)
        return d2c_error(D2C_ERR_INPUT,
                         "%s: struct_size %zu is not a size this library knows (%zu..%zu); initialise the options "
                         "with %s_init from a matching d2c.h",
                         what, size, min_size, cur_size, what);
    memcpy(dst, src, size);
    memcpy(dst, &cur_size, sizeof cur_size); /* dst is this library's struct now */
    return D2C_OK;
}

int api_check_count(const char *fn, const char *what, long long n, long long max) {
    if (n < 1 || n > max) return d2c_error(D2C_ERR_INPUT, "%s: %s must be 1..%lld, got %lld", fn, what, max, n);
    return D2C_OK;
}

int api_check_shape(const char *fn, int c, int h, int w, int C, int H, int W) {
    if (c != C || h != H || w != W)
        return d2c_error(D2C_ERR_INPUT, "%s: images of shape (%d, %d, %d) given, this one takes (%d, %d, %d)", fn, c, h,
                         w, C, H, W);
    return D2C_OK;
}

int api_open_engine(const char *fn, const char *device, Engine **out) {
    *out = NULL;
    EngineDevice dev = ENGINE_CPU;
    if (device && engine_device_parse(device, &dev) != D2C_OK)
        return d2c_error(D2C_ERR_INPUT, "%s: device must be \"cpu\" or \"cuda\", got '%.64s'", fn, device);
    if (dev == ENGINE_CPU) {
        *out = engine_cpu_default();
        return D2C_OK;
    }
    return d2c_error_context(engine_create(out, dev), "%s: ", fn);
}

void api_close_engine(Engine *e) {
    if (e && e != engine_cpu_default()) engine_destroy(e);
}

/* Helpers shared by the subcommands: the exit status, list parsing, threads, device. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "core/util.h"
#include "engine/backend.h"

int cli_exit_status(int st) {
    if (st == ARGS_HELP) return 0;
    if (st == D2C_OK) return 0;
    const char *msg = d2c_last_error();
    report_line("error", *msg ? msg : "failed (no message recorded)");
    return st == D2C_ERR_INPUT ? D2C_ERR_INPUT : D2C_ERR_FAIL;
}

int parse_int_list(const char *s, int *out, int max) {
    int n = 0;
    const char *p = s;
    if (!*p) return 0;
    while (*p) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || n >= max || v < INT_MIN || v > INT_MAX) return -1;
        out[n++] = (int)v;
        if (*end == ',') end++;
        else if (*end) return -1;
        p = end;
    }
    return n;
}

int count_list_entries(const char *s) {
    if (!*s) return 0;
    int n = 1;
    for (const char *p = s; *p; p++) n += *p == ',';
    return n;
}

void apply_threads(int threads) { engine_set_num_threads(threads); }

static Engine *g_device; /* the engine open_device made (not the CPU default) */

int open_device(const char *command, const char *device, Engine **out) {
    *out = NULL;
    EngineDevice dev;
    if (engine_device_parse(device, &dev) != D2C_OK)
        return d2c_error(D2C_ERR_INPUT, "%s: --device must be cpu or cuda, got '%.64s'", command, device);
    if (dev == ENGINE_CPU) {
        *out = engine_cpu_default();
        return D2C_OK;
    }
    if (g_device && g_device->device == dev) {
        *out = g_device;
        return D2C_OK;
    }
    close_device();
    D2C_TRY(d2c_error_context(engine_create(&g_device, dev), "%s: ", command));
    *out = g_device;
    return D2C_OK;
}

void close_device(void) {
    engine_destroy(g_device);
    g_device = NULL;
}

/* Helpers shared by the subcommands: list parsing, threads, device choice. */
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "core/util.h"

int parse_int_list(const char *s, int *out, int max) {
    int n = 0;
    const char *p = s;
    if (!*p) return 0;
    while (*p) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || n >= max) return -1;
        out[n++] = (int)v;
        if (*end == ',') end++;
        else if (*end) return -1;
        p = end;
    }
    return n;
}

void apply_threads(int threads) { set_num_threads(threads); }

void check_device(const char *command, const char *device) {
    if (strcmp(device, "cpu") == 0) return;
    if (strcmp(device, "cuda") == 0)
        die_input("%s: --device cuda: this d2c was built without the CUDA engine; use --device cpu", command);
    die_input("%s: --device must be cpu or cuda, got '%s'", command, device);
}

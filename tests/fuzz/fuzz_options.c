/* Fuzz target: the command-line option parser (src/cli/args.c) and the list parser of
 * --labels / --channel-mult (src/cli/common.c). The input is an argument vector, arguments
 * separated by NUL bytes, parsed against a table with every option kind and range. On
 * success every option holds a value of its kind inside its range (a float is finite), a
 * string is non-empty; each argument is also handed to parse_int_list. "--help" prints the
 * usage and returns ARGS_HELP (stdout is the fuzzer's; run with -close_fd_mask=1 to hide it). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "core/status.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > 4096) return 0;
    char *buf = malloc(size + 1);
    memcpy(buf, data, size);
    buf[size] = 0;
    char *argv[257];
    int argc = 0;
    argv[argc++] = "d2c";
    argv[argc++] = "fuzz";
    for (size_t i = 0; i <= size && argc < 256;) {
        argv[argc++] = buf + i;
        i += strlen(buf + i) + 1;
    }
    argv[argc] = NULL;
    int steps = 7, flag = 0, big = 0;
    double lr = 0.5, any = 0;
    const char *name = "default", *list = "1,2";
    Option opts[] = {
        {"steps", OPT_INT, &steps, 1, 1e9, "an int in [1, 1e9]", 0},
        {"big", OPT_INT, &big, -2147483648.0, 2147483647.0, "any int", 0},
        {"lr", OPT_FLOAT, &lr, 1e-8, 1.0, "a float in [1e-8, 1]", 0},
        {"any", OPT_FLOAT, &any, 1, 0, "a float, no range", 0},
        {"name", OPT_STRING, &name, 1, 0, "a string", 0},
        {"labels", OPT_STRING, &list, 1, 0, "a list", 0},
        {"quiet", OPT_FLAG, &flag, 1, 0, "a flag", 0},
        {NULL, 0, NULL, 0, 0, NULL, 0},
    };
    int st = parse_options("fuzz", "usage: d2c fuzz [options]", opts, argc, argv, 2);
    if (st != ARGS_HELP && fuzz_status(st) == D2C_OK) {
        fuzz_require(steps >= 1 && steps <= 1000000000, "--steps in range");
        fuzz_require(lr >= 1e-8 && lr <= 1.0, "--lr in range");
        fuzz_require(isfinite(any), "--any finite");
        fuzz_require(name && *name && list && *list, "strings non-empty");
        fuzz_require(flag == 0 || flag == 1, "a flag is 0 or 1");
        fuzz_status(require_option("fuzz", opts, "name"));
    }
    d2c_clear_error();
    int values[8];
    for (int i = 2; i < argc; i++) {
        int n = parse_int_list(argv[i], values, 8);
        fuzz_require(n >= -1 && n <= 8, "parse_int_list count in [-1, max]");
    }
    free(buf);
    return 0;
}

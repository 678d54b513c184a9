/* Helpers of the fuzz targets: a scratch folder for the files the loaders read, and the
 * checks of the error model's promises (fuzz.h). */
#define _GNU_SOURCE
#include "fuzz.h"

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/status.h"

static char g_dir[4096];

/* Warnings (a folder's skipped files, ...) are part of the contract, not findings: drop
 * them, or a campaign's logs grow by a line per input (D2C_FUZZ_VERBOSE keeps them). */
static void drop_warning(const char *message) { (void)message; }

__attribute__((constructor)) static void quiet_warnings(void) {
    if (!getenv("D2C_FUZZ_VERBOSE")) d2c_set_warning_handler(drop_warning);
}

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb;
    (void)flag;
    if (ftw->level > 0) remove(path);
    return 0;
}

void fuzz_clear_scratch(void) {
    if (g_dir[0]) nftw(g_dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static void remove_scratch(void) {
    fuzz_clear_scratch();
    if (g_dir[0]) rmdir(g_dir);
}

const char *fuzz_scratch_dir(void) {
    if (!g_dir[0]) {
        const char *base = getenv("TMPDIR");
        if (!base || !*base) base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
        snprintf(g_dir, sizeof g_dir, "%s/d2c_fuzz.XXXXXX", base);
        if (!mkdtemp(g_dir)) {
            perror("fuzz: mkdtemp");
            abort();
        }
        atexit(remove_scratch);
    }
    return g_dir;
}

const char *fuzz_write_file(const char *name, const uint8_t *data, size_t size) {
    static char path[8192];
    snprintf(path, sizeof path, "%s/%s", fuzz_scratch_dir(), name);
    FILE *f = fopen(path, "wb");
    if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f) != 0) {
        perror("fuzz: writing the input file");
        abort();
    }
    return path;
}

void fuzz_touch(const void *p, size_t n) {
    static volatile unsigned sink;
    (void)sink;
    const unsigned char *b = p;
    unsigned s = 0;
    for (size_t i = 0; i < n; i++) s += b[i];
    sink += s;
}

void fuzz_require(int cond, const char *what) {
    if (!cond) {
        fprintf(stderr, "fuzz: broken promise: %s (last error: '%s')\n", what, d2c_last_error());
        abort();
    }
}

int fuzz_status(int status) {
    static int verbose = -1;
    if (verbose < 0) verbose = getenv("D2C_FUZZ_VERBOSE") != NULL;
    fuzz_require(status == D2C_OK || status == D2C_ERR_INPUT || status == D2C_ERR_FAIL, "status is 0, 1 or 2");
    if (status != D2C_OK) fuzz_require(d2c_last_error()[0] != 0, "a failing status comes with a message");
    if (verbose) fprintf(stderr, "fuzz: status %d %s\n", status, d2c_last_error());
    d2c_clear_error();
    return status;
}

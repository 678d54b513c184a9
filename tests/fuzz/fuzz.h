/* Shared by the libFuzzer targets of tests/fuzz (docs/HARDENING.md). Each fuzz_<name>.c
 * defines LLVMFuzzerTestOneInput, which hands the input to a d2c library function that
 * returns a status, and checks what the error model promises: D2C_OK or D2C_ERR_INPUT
 * (or D2C_ERR_FAIL where the input can ask for more memory than there is) with a
 * non-empty message, and nothing left allocated (LeakSanitizer checks after each input).
 * A crash, a sanitizer report, a hang, a leak or a broken promise (fuzz_require) is a bug.
 *
 * Built two ways (tests/cmake/fuzz.cmake): with clang's -fsanitize=fuzzer in the fuzz
 * build (scripts/fuzz.sh), and with replay_main.c in every other build, where it runs the
 * committed seed corpus and crash regressions once each (under ASan in build-asan/). */
#ifndef D2C_TESTS_FUZZ_H
#define D2C_TESTS_FUZZ_H

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A per-process scratch folder (made once, under $TMPDIR or /tmp, removed at exit). */
const char *fuzz_scratch_dir(void);
/* Writes data to <scratch>/<name> and returns that path (static storage, valid until the
 * next call). Aborts if it cannot: the harness, not d2c, would be at fault. */
const char *fuzz_write_file(const char *name, const uint8_t *data, size_t size);
/* Removes everything inside the scratch folder (keeps the folder). */
void fuzz_clear_scratch(void);
/* Reads every byte of p[0..n) (a short buffer is then an ASan report). */
void fuzz_touch(const void *p, size_t n);
/* Aborts with the message when cond is false (a broken promise of the error model). */
void fuzz_require(int cond, const char *what);
/* Checks a status: OK, or an error with a message; returns it (and prints both when
 * D2C_FUZZ_VERBOSE is set, to see what a seed reaches). */
int fuzz_status(int status);

#endif

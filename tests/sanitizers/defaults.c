/* Run-time options of the sanitizer builds (-DD2C_SANITIZE=ON, -DD2C_FUZZ=ON), compiled
 * into every program of such a build, so that ctest, the Python tests' subprocesses and a
 * hand-run d2c all behave the same. ASAN_OPTIONS / UBSAN_OPTIONS / LSAN_OPTIONS in the
 * environment still override them (the runtime reads these first, the environment second).
 *
 * exitcode=86: a sanitizer report ends the program with status 86, which no d2c path uses,
 * so a test that expects status 1 or 2 cannot mistake a report for the error it expects.
 * UndefinedBehaviorSanitizer stops at the first report (the build also compiles with
 * -fno-sanitize-recover=all). LeakSanitizer runs at exit, also after an error exit.
 *
 * Leak suppressions: none are needed today. A suppression may only name a third-party
 * library's own allocation (a thread pool, a one-time buffer) with a comment saying why it is
 * not ours; d2c's own allocations are never suppressed (docs/HARDENING.md). */

const char *__asan_default_options(void);
const char *__ubsan_default_options(void);
const char *__lsan_default_options(void);
const char *__lsan_default_suppressions(void);

const char *__asan_default_options(void) {
    return "exitcode=86:detect_leaks=1:strict_string_checks=1:print_summary=1";
}

const char *__ubsan_default_options(void) { return "exitcode=86:halt_on_error=1:print_stacktrace=1"; }

const char *__lsan_default_options(void) { return "exitcode=86"; }

const char *__lsan_default_suppressions(void) { return ""; }

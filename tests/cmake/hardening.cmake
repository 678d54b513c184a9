# Hardening tests (docs/HARDENING.md): regressions of bugs the sanitizer builds found.
add_test(NAME test_vecmath COMMAND test_vecmath)
set_tests_properties(test_vecmath PROPERTIES LABELS "hardening" TIMEOUT 60)

# valgrind memcheck of a tiny train / resume / condense / sample (tests/test_valgrind.py).
# valgrind cannot run AVX-512 code, so the test runs in a build without -march=native and
# without sanitizers (scripts/test.sh makes one in build-valgrind/); elsewhere it is a skip
# that says so, never a pass.
find_program(D2C_VALGRIND valgrind)
if(D2C_NATIVE OR D2C_SANITIZE)
  add_test(NAME valgrind_memcheck COMMAND sh -c
    "echo 'skip: this build uses -march=native or sanitizers; valgrind_memcheck runs in a -DD2C_NATIVE=OFF build (scripts/test.sh: build-valgrind/)'; exit 77")
else()
  add_test(NAME valgrind_memcheck
    COMMAND ${D2C_PYTHON} ${D2C_TEST_DIR}/test_valgrind.py $<TARGET_FILE:d2c> ${CMAKE_CURRENT_BINARY_DIR}/hardening)
endif()
set_tests_properties(valgrind_memcheck PROPERTIES LABELS "valgrind;hardening" TIMEOUT 1800
  SKIP_RETURN_CODE 77 ENVIRONMENT "PYTHONDONTWRITEBYTECODE=1;OMP_WAIT_POLICY=PASSIVE")

# Crash safety (tests/test_crash_safety.py): SIGKILL of train and condense at random
# moments and inside atomic writes, --resume, final files equal an uninterrupted run's.
# Three trials per command here; bench/crash_safety.sh runs 20 or more.
add_test(NAME crash_safety
  COMMAND ${D2C_PYTHON} ${D2C_TEST_DIR}/test_crash_safety.py $<TARGET_FILE:d2c> ${CMAKE_CURRENT_BINARY_DIR}/hardening
          --trials 3 --seed 1)
set_tests_properties(crash_safety PROPERTIES LABELS "hardening;python;cli" TIMEOUT 900 PROCESSORS 2
  ENVIRONMENT "PYTHONDONTWRITEBYTECODE=1;OMP_WAIT_POLICY=PASSIVE")

# Bad input everywhere (tests/test_bad_input.py): 100+ malformed files, options and values,
# each exit 2 with one error line naming the culprit and no file at the output path; the
# table in docs/HARDENING.md must equal this run's (regenerate it with --write-doc).
add_test(NAME bad_input
  COMMAND ${D2C_PYTHON} ${D2C_TEST_DIR}/test_bad_input.py $<TARGET_FILE:d2c> ${CMAKE_CURRENT_BINARY_DIR}/hardening
          --doc ${CMAKE_SOURCE_DIR}/docs/HARDENING.md)
set_tests_properties(bad_input PROPERTIES LABELS "hardening;python;cli" TIMEOUT 600 PROCESSORS 2
  ENVIRONMENT "PYTHONDONTWRITEBYTECODE=1;OMP_WAIT_POLICY=PASSIVE")

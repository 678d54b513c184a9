# Hardening tests (docs/HARDENING.md): regressions of bugs the sanitizer builds found.
add_test(NAME test_vecmath COMMAND test_vecmath)
set_tests_properties(test_vecmath PROPERTIES LABELS "hardening" TIMEOUT 60)

# The distribution-matching selections (kherding, gadc, facility) and their PCA feature space:
# against naive and brute-force computations on synthetic data (test_distmatch).
add_test(NAME test_distmatch COMMAND test_distmatch)
set_tests_properties(test_distmatch PROPERTIES LABELS "condense" TIMEOUT 300 PROCESSORS 2
  ENVIRONMENT "OMP_NUM_THREADS=2;OMP_WAIT_POLICY=PASSIVE")
# From the command line: the three methods' pools at 0.1% and 1% of Fashion-MNIST (valid files,
# class counts, real training images, metadata, objective below random), determinism, the
# default method, --init kherding|gadc|facility and the parameters (tests/test_cli_select.py).
add_test(NAME cli_select
  COMMAND ${D2C_PYTHON} ${D2C_TEST_DIR}/test_cli_select.py $<TARGET_FILE:d2c> ${CMAKE_CURRENT_BINARY_DIR}/cli)
set_tests_properties(cli_select PROPERTIES LABELS "cli;python;condense" TIMEOUT 600 PROCESSORS 2
  SKIP_RETURN_CODE 77 ENVIRONMENT "PYTHONDONTWRITEBYTECODE=1;OMP_NUM_THREADS=2;OMP_WAIT_POLICY=PASSIVE")
# The CI check of condensation that wins: the default `d2c condense` at 1% of fashion-mnist:fit
# has a lower own-pool KID (default evaluator) and consensus against fashion-mnist:val than
# each of the random subsets of seeds 0..4 (tests/test_condense_beats_random.py).
add_test(NAME condense_beats_random
  COMMAND ${D2C_PYTHON} ${D2C_TEST_DIR}/test_condense_beats_random.py $<TARGET_FILE:d2c> ${CMAKE_CURRENT_BINARY_DIR}/cli)
set_tests_properties(condense_beats_random PROPERTIES LABELS "cli;python;condense" TIMEOUT 600 PROCESSORS 2
  SKIP_RETURN_CODE 77 ENVIRONMENT "PYTHONDONTWRITEBYTECODE=1;OMP_NUM_THREADS=2;OMP_WAIT_POLICY=PASSIVE")

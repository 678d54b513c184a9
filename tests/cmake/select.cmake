# The distribution-matching selections (kherding, gadc) and their PCA feature space:
# against naive and brute-force computations on synthetic data (test_distmatch).
add_test(NAME test_distmatch COMMAND test_distmatch)
set_tests_properties(test_distmatch PROPERTIES LABELS "condense" TIMEOUT 300 PROCESSORS 2
  ENVIRONMENT "OMP_NUM_THREADS=2;OMP_WAIT_POLICY=PASSIVE")

# Evaluation-metric tests: FID / IS / precision-recall-density-coverage against the
# numpy/scipy reference in tests/metrics_ref.py.
add_test(NAME test_metrics
  COMMAND test_metrics ${D2C_PYTHON} ${D2C_TEST_DIR}/metrics_ref.py)
set_tests_properties(test_metrics PROPERTIES TIMEOUT 300)

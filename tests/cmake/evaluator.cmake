# Evaluator tests: the networks' gradients and file format (no data), the metrics'
# behaviour on real Fashion-MNIST through every committed evaluator, `d2c eval` /
# `d2c evaluator` end to end (bad inputs exit 2, the reference cache, determinism), and
# the sanity ladder with the classification accuracy score.
add_test(NAME test_evaluator COMMAND test_evaluator)
set_tests_properties(test_evaluator PROPERTIES TIMEOUT 120)

# The committed Fashion-MNIST evaluators drive the data and end-to-end tests.
set(D2C_FMNIST_EVALUATOR ${CMAKE_SOURCE_DIR}/models/evaluator-fashion-mnist.safetensors)
file(GLOB D2C_FMNIST_EVALUATORS ${CMAKE_SOURCE_DIR}/models/evaluator-fashion-mnist*.safetensors)
add_test(NAME test_evaluator_data COMMAND test_evaluator_data ${D2C_FMNIST_EVALUATORS})
set_tests_properties(test_evaluator_data PROPERTIES TIMEOUT 300 PROCESSORS 2
  ENVIRONMENT "OMP_WAIT_POLICY=PASSIVE")
add_test(NAME test_evaluator_cli COMMAND test_evaluator_cli $<TARGET_FILE:d2c> ${D2C_FMNIST_EVALUATOR})
set_tests_properties(test_evaluator_cli PROPERTIES TIMEOUT 600 PROCESSORS 2
  ENVIRONMENT "OMP_WAIT_POLICY=PASSIVE")
add_test(NAME test_evaluator_ladder COMMAND test_evaluator_ladder $<TARGET_FILE:d2c>)
set_tests_properties(test_evaluator_ladder PROPERTIES TIMEOUT 600 PROCESSORS 2
  ENVIRONMENT "OMP_WAIT_POLICY=PASSIVE")

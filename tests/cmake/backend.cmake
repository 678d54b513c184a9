# test_backend_ops: every entry of the engine table on every backend of this build (the
# CPU against naive double-precision references; CUDA, when built and a GPU is present,
# against the CPU), then a train step, a DDIM run and the hypergradient on a tiny UNet.
# Label `engine`. D2C_REQUIRE_CUDA=1 in the environment makes a missing GPU a failure.
target_sources(test_backend_ops PRIVATE ${D2C_TEST_DIR}/backend_util.c ${D2C_TEST_DIR}/backend_ref.c
  ${D2C_TEST_DIR}/backend_cases.c ${D2C_TEST_DIR}/backend_flat.c ${D2C_TEST_DIR}/backend_model.c)
target_include_directories(test_backend_ops PRIVATE ${D2C_TEST_DIR})
add_test(NAME test_backend_ops COMMAND test_backend_ops)
set_tests_properties(test_backend_ops PROPERTIES LABELS "engine" TIMEOUT 600 PROCESSORS 2
  ENVIRONMENT "OMP_WAIT_POLICY=PASSIVE")
# the MISSING path: the CPU table without conv2d_forward, run as an extra backend, must fail
add_test(NAME test_backend_ops_missing COMMAND test_backend_ops --drop conv2d_forward)
set_tests_properties(test_backend_ops_missing PROPERTIES LABELS "engine" TIMEOUT 600 PROCESSORS 2 WILL_FAIL TRUE
  ENVIRONMENT "OMP_WAIT_POLICY=PASSIVE")

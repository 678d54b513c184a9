# test_backend_ops: every entry of the engine table on every backend of this build (the
# CPU against naive double-precision references; CUDA, when built and a GPU is present,
# against the CPU), then a train step, a DDIM run and the hypergradient on a tiny UNet.
# Label `engine`. D2C_REQUIRE_CUDA=1 in the environment makes a missing GPU a failure.
target_sources(test_backend_ops PRIVATE ${D2C_TEST_DIR}/backend_util.c ${D2C_TEST_DIR}/backend_ref.c
  ${D2C_TEST_DIR}/backend_cases.c ${D2C_TEST_DIR}/backend_flat.c ${D2C_TEST_DIR}/backend_model.c
  ${D2C_TEST_DIR}/backend_algo.c)
target_include_directories(test_backend_ops PRIVATE ${D2C_TEST_DIR})
add_test(NAME test_backend_ops COMMAND test_backend_ops)
set_tests_properties(test_backend_ops PROPERTIES LABELS "engine" TIMEOUT 600 PROCESSORS 2
  ENVIRONMENT "OMP_WAIT_POLICY=PASSIVE")
# the MISSING path: the CPU table without conv2d_forward, run as an extra backend, must exit 1
# having reported exactly that entry as missing (a crash does not count as the expected failure)
add_test(NAME test_backend_ops_missing COMMAND bash -c
  "out=$($<TARGET_FILE:test_backend_ops> --drop conv2d_forward 2>&1); rc=$?; printf '%s\\n' \"$out\" | grep -v ' ok$'; [ $rc = 1 ] && printf '%s' \"$out\" | grep -q 'cpu-  conv2d_forward k3 s1 bias *MISSING (conv2d_forward)' && printf '%s' \"$out\" | grep -q '^0 failed, 4 missing$'")
set_tests_properties(test_backend_ops_missing PROPERTIES LABELS "engine" TIMEOUT 600 PROCESSORS 2
  ENVIRONMENT "OMP_WAIT_POLICY=PASSIVE")

# PyTorch side of the correctness tests: the project's twin of the specification is
# checked against reference/d2c_spec.py (twin_vs_spec), and the twin writes the reference
# tensors the C tests compare against (fixture unet_reference: ref_fmnist.safetensors and
# ref_cifar.safetensors in the build folder; a consumer declares FIXTURES_REQUIRED unet_reference).
set(D2C_PY_ENV "PYTHONDONTWRITEBYTECODE=1;OMP_NUM_THREADS=1")

add_test(NAME twin_vs_spec
  COMMAND ${D2C_PYTHON} ${D2C_TEST_DIR}/test_twin_vs_spec.py ${D2C_SHARED_DIR}/reference)
# Without the spec the comparison has nothing to check: exit 77, reported as skipped.
set_tests_properties(twin_vs_spec PROPERTIES
  LABELS "reference;python" TIMEOUT 300 ENVIRONMENT "${D2C_PY_ENV}" SKIP_RETURN_CODE 77)

foreach(config fmnist cifar)
  add_test(NAME reference_${config}
    COMMAND ${D2C_PYTHON} ${D2C_TEST_DIR}/make_reference.py --config ${config}
            --out ${CMAKE_BINARY_DIR}/ref_${config}.safetensors)
  set_tests_properties(reference_${config} PROPERTIES
    FIXTURES_SETUP unet_reference LABELS "reference;python" TIMEOUT 300 ENVIRONMENT "${D2C_PY_ENV}")
endforeach()

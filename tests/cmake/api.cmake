# The public API (include/d2c.h): test_api (C: the error paths of every handle and real
# calls, through d2c.h alone), api_install (cmake --install into a fresh prefix, the
# example built from the installed header and libraries only, exports and SONAME) and
# api_ctypes (Python's ctypes on the installed libd2c.so, checked against the installed d2c
# command). Each runs d2c with 2 threads.
set(D2C_API_WORK ${CMAKE_CURRENT_BINARY_DIR}/api)
file(MAKE_DIRECTORY ${D2C_API_WORK}/unit)
set(D2C_API_ENV "PYTHONDONTWRITEBYTECODE=1;OMP_NUM_THREADS=2;OMP_WAIT_POLICY=PASSIVE")
# A sanitizer build's libd2c.so needs its runtime: programs built against it take the same
# flags, and Python preloads the runtime (leak checking off: the interpreter's own).
set(D2C_API_EXTRA_CFLAGS "")
set(D2C_API_PY_ENV ${D2C_API_ENV})
if(D2C_SANITIZE)
  set(D2C_API_EXTRA_CFLAGS "-fsanitize=address,undefined")
  execute_process(COMMAND ${CMAKE_C_COMPILER} -print-file-name=libasan.so OUTPUT_VARIABLE D2C_LIBASAN
    OUTPUT_STRIP_TRAILING_WHITESPACE)
  list(APPEND D2C_API_PY_ENV "LD_PRELOAD=${D2C_LIBASAN}" "ASAN_OPTIONS=detect_leaks=0")
endif()

add_test(NAME test_api COMMAND test_api ${D2C_API_WORK}/unit ${CMAKE_SOURCE_DIR}/models/evaluator-fashion-mnist.safetensors)
set_tests_properties(test_api PROPERTIES LABELS "api" TIMEOUT 300 PROCESSORS 2 ENVIRONMENT "${D2C_API_ENV}")

add_test(NAME api_install COMMAND bash ${D2C_TEST_DIR}/test_api_install.sh ${CMAKE_BINARY_DIR} ${CMAKE_SOURCE_DIR}
  ${D2C_API_WORK}/install ${CMAKE_C_COMPILER} "${D2C_API_EXTRA_CFLAGS}")
set_tests_properties(api_install PROPERTIES LABELS "api" TIMEOUT 300 PROCESSORS 2 ENVIRONMENT "${D2C_API_ENV}"
  FIXTURES_SETUP api_prefix)

add_test(NAME api_ctypes COMMAND ${D2C_PYTHON} ${D2C_TEST_DIR}/test_api_ctypes.py ${D2C_API_WORK}/install/prefix
  ${CMAKE_SOURCE_DIR}/models/evaluator-fashion-mnist.safetensors ${D2C_API_WORK}/ctypes)
set_tests_properties(api_ctypes PROPERTIES LABELS "api;python" TIMEOUT 300 PROCESSORS 2
  ENVIRONMENT "${D2C_API_PY_ENV}" FIXTURES_REQUIRED api_prefix)

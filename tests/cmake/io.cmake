# I/O layer tests: unit tests of safetensors / IDX / PNG / JPEG / data sets (test_io),
# interoperability with Python's safetensors, numpy, torch and PIL (io_interop), and the
# shared CIFAR-10 JPEG tarball, unpacked once into cache/ (io_cifar10, slower).
add_test(NAME test_io COMMAND test_io)
set_tests_properties(test_io PROPERTIES LABELS "io" TIMEOUT 300)

add_test(NAME io_interop
  COMMAND ${D2C_PYTHON} ${D2C_TEST_DIR}/io_interop.py $<TARGET_FILE:test_io>)
set_tests_properties(io_interop PROPERTIES
  LABELS "io;python" TIMEOUT 300 ENVIRONMENT "PYTHONDONTWRITEBYTECODE=1" SKIP_RETURN_CODE 77)

add_test(NAME io_cifar10
  COMMAND ${D2C_PYTHON} ${D2C_TEST_DIR}/io_cifar10.py $<TARGET_FILE:test_io>
          ${D2C_SHARED_DIR}/data/cifar10-jpeg.tar.gz ${CMAKE_SOURCE_DIR}/cache/cifar10)
set_tests_properties(io_cifar10 PROPERTIES
  LABELS "io;python;slow" TIMEOUT 900 ENVIRONMENT "PYTHONDONTWRITEBYTECODE=1" SKIP_RETURN_CODE 77)

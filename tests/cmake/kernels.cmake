# CPU engine kernels: forward values against direct loops, backward against finite
# differences, accumulate and NULL-gradient semantics, identical bits for 1 and 2 threads.
add_test(NAME test_kernels COMMAND test_kernels)
set_tests_properties(test_kernels PROPERTIES LABELS "engine")

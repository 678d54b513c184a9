# The UNet against the PyTorch twin's reference tensors (made by tests/cmake/reference.cmake).
add_test(NAME test_unet COMMAND test_unet ${CMAKE_BINARY_DIR}/ref_fmnist.safetensors ${CMAKE_BINARY_DIR}/ref_cifar.safetensors)
set_tests_properties(test_unet PROPERTIES FIXTURES_REQUIRED unet_reference SKIP_RETURN_CODE 77)
add_test(NAME test_hypergrad COMMAND test_hypergrad ${CMAKE_BINARY_DIR}/ref_fmnist.safetensors ${CMAKE_BINARY_DIR}/ref_cifar.safetensors)
set_tests_properties(test_hypergrad PROPERTIES FIXTURES_REQUIRED unet_reference SKIP_RETURN_CODE 77)
# Without its arguments test_hypergrad checks nothing and must fail: this test says so.
add_test(NAME test_hypergrad_no_args COMMAND test_hypergrad)
set_tests_properties(test_hypergrad_no_args PROPERTIES WILL_FAIL TRUE)
# DSA augmentation: augment_backward is the adjoint of augment_forward's linear part.
add_test(NAME test_augment COMMAND test_augment)

# The UNet against the PyTorch twin's reference tensors (made by tests/cmake/reference.cmake).
add_test(NAME test_unet COMMAND test_unet ${CMAKE_BINARY_DIR}/ref_fmnist.safetensors ${CMAKE_BINARY_DIR}/ref_cifar.safetensors)
set_tests_properties(test_unet PROPERTIES FIXTURES_REQUIRED unet_reference)
add_test(NAME test_hypergrad COMMAND test_hypergrad ${CMAKE_BINARY_DIR}/ref_fmnist.safetensors ${CMAKE_BINARY_DIR}/ref_cifar.safetensors)
set_tests_properties(test_hypergrad PROPERTIES FIXTURES_REQUIRED unet_reference)
# DSA augmentation: augment_backward is the adjoint of augment_forward's linear part.
add_test(NAME test_augment COMMAND test_augment)

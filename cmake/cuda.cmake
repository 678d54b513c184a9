# The CUDA engine backend (src/engine/cuda), included by CMakeLists.txt when D2C_CUDA is ON:
# nvcc for the .cu files (C linkage entry points), cuBLAS for the GEMMs, the CUDA runtime.
# The kernels are compiled for CMAKE_CUDA_ARCHITECTURES (default 90: the H200; give
# -DCMAKE_CUDA_ARCHITECTURES="80;90" or "native" for other cards), without FMA contraction
# (--fmad=false) so the element-wise ops round as the CPU's C does (docs/CUDA.md).
if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
  set(CMAKE_CUDA_ARCHITECTURES 90)
endif()
if(NOT DEFINED CMAKE_CUDA_COMPILER AND NOT DEFINED ENV{CUDACXX} AND EXISTS /usr/local/cuda/bin/nvcc)
  set(CMAKE_CUDA_COMPILER /usr/local/cuda/bin/nvcc)
endif()
enable_language(CUDA)
find_package(CUDAToolkit REQUIRED)
set(CMAKE_CUDA_STANDARD 17)
set(CMAKE_CUDA_STANDARD_REQUIRED ON)
set(CMAKE_CUDA_FLAGS_RELEASE "-O3")
message(STATUS "d2c: CUDA backend on, nvcc ${CMAKE_CUDA_COMPILER_VERSION}, architectures ${CMAKE_CUDA_ARCHITECTURES}, "
  "cuBLAS ${CUDA_cublas_LIBRARY}")

file(GLOB D2C_CUDA_SOURCES CONFIGURE_DEPENDS src/engine/cuda/*.cu src/engine/cuda/*.c)
target_sources(d2c_objects PRIVATE ${D2C_CUDA_SOURCES})

# cuDNN, for the D2C_CUDA_CONV=cudnn convolutions: the toolkit's folders, CUDNN_ROOT (a
# cuDNN install or the nvidia/cudnn folder of its Python wheel, which names the library
# libcudnn.so.9 only). Without it, cudnn/stub.cu: the backend runs, that switch says so.
find_path(CUDNN_INCLUDE_DIR cudnn.h HINTS ${CUDAToolkit_INCLUDE_DIRS} $ENV{CUDNN_ROOT} PATH_SUFFIXES include)
find_library(CUDNN_LIBRARY NAMES cudnn libcudnn.so.9 HINTS ${CUDAToolkit_LIBRARY_DIR} $ENV{CUDNN_ROOT}
  PATH_SUFFIXES lib lib64)
if(CUDNN_INCLUDE_DIR AND CUDNN_LIBRARY)
  message(STATUS "d2c: cuDNN ${CUDNN_LIBRARY} (D2C_CUDA_CONV=cudnn)")
  target_sources(d2c_objects PRIVATE src/engine/cuda/cudnn/conv_cudnn.cu)
  target_include_directories(d2c_objects PRIVATE ${CUDNN_INCLUDE_DIR})
  target_link_libraries(d2c_objects PUBLIC ${CUDNN_LIBRARY})
  get_filename_component(D2C_CUDNN_LIBDIR ${CUDNN_LIBRARY} DIRECTORY)
  list(APPEND CMAKE_INSTALL_RPATH ${D2C_CUDNN_LIBDIR})
else()
  message(STATUS "d2c: cuDNN not found (set CUDNN_ROOT): the CUDA backend's convolutions are im2col + cuBLAS only")
  target_sources(d2c_objects PRIVATE src/engine/cuda/cudnn/stub.cu)
endif()
# (the target was made before enable_language: give it the architectures itself)
set_target_properties(d2c_objects PROPERTIES CUDA_VISIBILITY_PRESET hidden CUDA_ARCHITECTURES "${CMAKE_CUDA_ARCHITECTURES}")
# host-compiler warnings for the .cu files (the C flags of CMakeLists.txt apply to C only)
set(D2C_CUDA_OPTIONS --fmad=false -Xcompiler=-Wall,-Wextra,-Wno-unused-parameter)
if(D2C_WERROR)
  list(APPEND D2C_CUDA_OPTIONS -Werror=all-warnings -Xcompiler=-Werror)
endif()
target_compile_options(d2c_objects PRIVATE "$<$<COMPILE_LANGUAGE:CUDA>:${D2C_CUDA_OPTIONS}>")
target_link_libraries(d2c_objects PUBLIC CUDA::cudart CUDA::cublas)
# programs find the toolkit's libraries without LD_LIBRARY_PATH (the targets made after
# this file take the run-time path; CMakeLists.txt builds with the install one)
list(APPEND CMAKE_INSTALL_RPATH ${CUDAToolkit_LIBRARY_DIR})

# bench/gpu_ops.c: the CUDA ops one by one at the UNet's shapes (bench/gpu_check.sh runs it)
add_executable(gpu_ops bench/gpu_ops.c)
target_link_libraries(gpu_ops PRIVATE d2c_lib) # d2c_lib is defined after this file

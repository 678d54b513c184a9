# Fuzz targets (tests/fuzz/fuzz_<name>.c; docs/HARDENING.md). Every target is built in
# every build:
#   - in the fuzz build (-DD2C_FUZZ=ON, clang; scripts/fuzz.sh) as a libFuzzer program, with
#     CTest tests fuzz_smoke_<name> (a few seconds from its seed corpus, new inputs go to the
#     build folder, never into the repository) and fuzz_regress_<name> (each committed crash
#     input of tests/fuzz/regressions/<name>/ once);
#   - elsewhere with tests/fuzz/replay_main.c, and one CTest test fuzz_replay_<name> that
#     runs the seed corpus and the crash inputs once each (under the sanitizers in
#     build-asan/).
# Target custom "fuzz_targets" builds them all.
set(D2C_FUZZ_DIR ${CMAKE_SOURCE_DIR}/tests/fuzz)
set(D2C_FUZZ_SMOKE_SECONDS 5 CACHE STRING "seconds per target of the CTest fuzz smoke run")
file(GLOB D2C_FUZZ_SOURCES CONFIGURE_DEPENDS ${D2C_FUZZ_DIR}/fuzz_*.c)
list(REMOVE_ITEM D2C_FUZZ_SOURCES ${D2C_FUZZ_DIR}/fuzz_util.c)
add_custom_target(fuzz_targets)
foreach(src ${D2C_FUZZ_SOURCES})
  get_filename_component(name ${src} NAME_WE)
  string(REGEX REPLACE "^fuzz_" "" short ${name})
  add_executable(${name} ${src} ${D2C_FUZZ_DIR}/fuzz_util.c)
  target_include_directories(${name} PRIVATE ${D2C_FUZZ_DIR})
  target_link_libraries(${name} PRIVATE d2c_lib)
  if(short STREQUAL "options")
    # the command-line option parser lives in src/cli, outside the library
    target_sources(${name} PRIVATE ${CMAKE_SOURCE_DIR}/src/cli/args.c ${CMAKE_SOURCE_DIR}/src/cli/common.c)
  endif()
  add_dependencies(fuzz_targets ${name})
  set(corpus ${D2C_FUZZ_DIR}/corpus/${short})
  set(regress ${D2C_FUZZ_DIR}/regressions/${short})
  if(D2C_FUZZ)
    target_link_options(${name} PRIVATE -fsanitize=fuzzer)
    set(scratch ${CMAKE_CURRENT_BINARY_DIR}/fuzz/${short})
    add_test(NAME fuzz_smoke_${short} COMMAND sh -c
      "rm -rf '${scratch}' && mkdir -p '${scratch}/corpus' && exec '$<TARGET_FILE:${name}>' -max_total_time=${D2C_FUZZ_SMOKE_SECONDS} -timeout=10 -rss_limit_mb=2560 -print_final_stats=1 -close_fd_mask=1 -artifact_prefix='${scratch}/' '${scratch}/corpus' '${corpus}'")
    # libFuzzer runs each file argument once; a target without regressions yet replays its seeds
    add_test(NAME fuzz_regress_${short} COMMAND sh -c
      "set -- '${regress}'/*; [ -e \"$1\" ] || set -- '${corpus}'/*; exec '$<TARGET_FILE:${name}>' -runs=1 \"$@\"")
    set_tests_properties(fuzz_smoke_${short} fuzz_regress_${short} PROPERTIES LABELS "fuzz;hardening" TIMEOUT 300)
  else()
    target_sources(${name} PRIVATE ${D2C_FUZZ_DIR}/replay_main.c)
    add_test(NAME fuzz_replay_${short} COMMAND ${name} ${corpus} ${regress})
    set_tests_properties(fuzz_replay_${short} PROPERTIES LABELS "fuzz;hardening" TIMEOUT 300)
  endif()
endforeach()

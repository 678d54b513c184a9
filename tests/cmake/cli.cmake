# Command-line integration tests (tests/test_cli_*.py, helpers in test_cli_common.py): training
# lowers the loss on Fashion-MNIST and writes the model format (cli_train, the fixture cli_model:
# WORK/train/model.safetensors), DDIM/DDPM sampling against the PyTorch twin in both directions
# and the PNG grid (cli_sample), bit-identical --resume of train and condense (cli_resume),
# bad input / non-finite loss handling (cli_errors), condense's held-out split, held-out
# matching loss and time budget (cli_condense), and the label/class rule with the defects it
# closed (cli_labels), and `d2c experiment` (cli_experiment). Each runs d2c with 2 threads.
# OMP_WAIT_POLICY=PASSIVE only changes speed: on a busy machine libgomp's spinning threads slow
# d2c down many times over (results are the same either way).
set(D2C_CLI_ENV "PYTHONDONTWRITEBYTECODE=1;OMP_NUM_THREADS=2;OMP_WAIT_POLICY=PASSIVE")
set(D2C_CLI_WORK ${CMAKE_CURRENT_BINARY_DIR}/cli)

foreach(part train sample resume errors condense labels experiment)
  add_test(NAME cli_${part}
    COMMAND ${D2C_PYTHON} ${D2C_TEST_DIR}/test_cli_${part}.py $<TARGET_FILE:d2c> ${D2C_CLI_WORK})
  set_tests_properties(cli_${part} PROPERTIES
    LABELS "cli;python" TIMEOUT 600 PROCESSORS 2 SKIP_RETURN_CODE 77 ENVIRONMENT "${D2C_CLI_ENV}")
endforeach()
set_tests_properties(cli_train PROPERTIES FIXTURES_SETUP cli_model)
set_tests_properties(cli_sample PROPERTIES FIXTURES_REQUIRED cli_model)

# The outside contract (../shared/conformance/run), when the shared folder is beside the checkout.
if(EXISTS ${D2C_SHARED_DIR}/conformance/run)
  add_test(NAME conformance COMMAND bash ${D2C_SHARED_DIR}/conformance/run $<TARGET_FILE:d2c>)
  set_tests_properties(conformance PROPERTIES TIMEOUT 900 FAIL_REGULAR_EXPRESSION "FAIL ")
endif()

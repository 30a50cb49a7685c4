# vmm_add_test(NAME <name> COMMAND <cmd...> [LABELS <l...>] [ENV <K=V...>]
#              [TIMEOUT <s>] [EMULATOR_ONLY])
#
# Every test runs against tests/cuemu (an emulated libcuda.so.1 first on
# LD_LIBRARY_PATH) unless VMM_REAL_GPU=ON, in which case the system's driver is
# used and EMULATOR_ONLY tests (fault injection, capacity) are skipped.  Each
# test gets its own emulated machine (CUEMU_INSTANCE, named by the test and the
# build tree), so tests run in parallel without sharing device memory.
function(vmm_add_test)
  cmake_parse_arguments(T "EMULATOR_ONLY" "NAME;TIMEOUT" "COMMAND;LABELS;ENV" ${ARGN})
  if(VMM_REAL_GPU AND T_EMULATOR_ONLY)
    return()
  endif()
  add_test(NAME ${T_NAME} COMMAND ${T_COMMAND})
  file(MAKE_DIRECTORY "${CMAKE_BINARY_DIR}/testtmp/${T_NAME}")
  # The instance names the build tree too, so two build trees (a sanitizer
  # build, a second worktree) can run the same test at the same time.
  string(MD5 tree "${CMAKE_BINARY_DIR}")
  string(SUBSTRING "${tree}" 0 6 tree)
  set(env "CUEMU_INSTANCE=vmmtest-${tree}-${T_NAME}" "VMM_TEST_TMPDIR=${CMAKE_BINARY_DIR}/testtmp/${T_NAME}"
          "VMM_BUILD_DIR=${CMAKE_BINARY_DIR}" "VMM_SOURCE_DIR=${CMAKE_SOURCE_DIR}")
  if(NOT VMM_REAL_GPU)
    list(APPEND env "LD_LIBRARY_PATH=${CUEMU_LIB_DIR}")
  endif()
  list(APPEND env ${T_ENV})
  set(labels ${T_LABELS})
  if(T_EMULATOR_ONLY)
    list(APPEND labels emulator-only)
  endif()
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 120)
  endif()
  set_tests_properties(${T_NAME} PROPERTIES ENVIRONMENT "${env}" TIMEOUT ${T_TIMEOUT}
                       SKIP_RETURN_CODE 77
                       LABELS "${labels}")
endfunction()

# vmm_preload_value(<var>): what LD_PRELOAD must hold for a test program to
# run under libvmm_client.so.  Sanitizer builds put the sanitizer runtime
# first, as an instrumented preload library needs it loaded before itself.
function(vmm_preload_value out)
  set(v "$<TARGET_FILE:vmm_client>")
  set(rt)
  if(VMM_SANITIZE)
    set(rt libasan.so)
  elseif(VMM_TSAN)
    set(rt libtsan.so)
  endif()
  if(rt)
    execute_process(COMMAND ${CMAKE_C_COMPILER} -print-file-name=${rt}
                    OUTPUT_VARIABLE p OUTPUT_STRIP_TRAILING_WHITESPACE)
    if(IS_ABSOLUTE "${p}" AND EXISTS "${p}")
      set(v "${p}:${v}")
    endif()
  endif()
  set(${out} "${v}" PARENT_SCOPE)
endfunction()

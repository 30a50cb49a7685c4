# vmm_add_test(NAME <name> COMMAND <cmd...> [LABELS <l...>] [ENV <K=V...>]
#              [TIMEOUT <s>] [EMULATOR_ONLY] [NO_VARIANTS])
#
# Every test runs against tests/cuemu (an emulated libcuda.so.1 first on
# LD_LIBRARY_PATH) unless VMM_REAL_GPU=ON, in which case the system's driver is
# used and EMULATOR_ONLY tests (fault injection, capacity) are skipped.  Each
# test gets its own emulated machine (CUEMU_INSTANCE, named by the test and the
# build tree), so tests run in parallel without sharing device memory.
#
# Variants: every client_* and daemon_* test runs twice more, as
# <name>.gran4m (the emulator's minimum granularity 4 MiB, its recommended
# one 8 MiB: vmmd's unit is then 8 MiB) and <name>.cm2 (vmmd's
# chunk_multiple = 2 through VMM_TEST_VMMD_CONF, which
# tests/daemon/testclient.c appends to every vmmd config: a 4 MiB unit), and
# every shim_* test as <name>.gran4m, labelled "variant": nothing may assume
# a 2 MiB chunk.  NO_VARIANTS: a test whose subject does not depend on chunk
# sizes (protocol checks, connection faults, timing), kept out to save time.
# `ctest -LE variant` skips them all.
function(vmm_add_test)
  cmake_parse_arguments(T "EMULATOR_ONLY;NO_VARIANTS" "NAME;TIMEOUT" "COMMAND;LABELS;ENV" ${ARGN})
  if(VMM_REAL_GPU AND T_EMULATOR_ONLY)
    return()
  endif()
  set(labels ${T_LABELS})
  if(T_EMULATOR_ONLY)
    list(APPEND labels emulator-only)
  endif()
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 120)
  endif()
  vmm_add_test_one("${T_NAME}" "${T_TIMEOUT}" "${labels}" "${T_ENV}" ${T_COMMAND})
  if(T_NAME MATCHES "^(client|daemon|shim)_" AND NOT T_NO_VARIANTS)
    # The variant's own temp dir wherever the test's env names its own.
    string(REPLACE "testtmp/${T_NAME}/" "testtmp/${T_NAME}.gran4m/" env_g "${T_ENV}")
    string(REPLACE "testtmp/${T_NAME}/" "testtmp/${T_NAME}.cm2/" env_c "${T_ENV}")
    if(NOT VMM_REAL_GPU)
      vmm_add_test_one("${T_NAME}.gran4m" "${T_TIMEOUT}" "${labels};variant"
                       "CUEMU_GRANULARITY_KB=4096;CUEMU_REC_GRANULARITY_KB=8192;${env_g}"
                       ${T_COMMAND})
    endif()
    if(NOT T_NAME MATCHES "^shim_")
      vmm_add_test_one("${T_NAME}.cm2" "${T_TIMEOUT}" "${labels};variant"
                       "VMM_TEST_VMMD_CONF=chunk_multiple = 2;${env_c}" ${T_COMMAND})
    endif()
  endif()
endfunction()

# One ctest entry (vmm_add_test's work, for the test and its variants).
function(vmm_add_test_one name timeout labels extra_env)
  add_test(NAME ${name} COMMAND ${ARGN})
  file(MAKE_DIRECTORY "${CMAKE_BINARY_DIR}/testtmp/${name}")
  # The instance names the build tree too, so two build trees (a sanitizer
  # build, a second worktree) can run the same test at the same time.
  string(MD5 tree "${CMAKE_BINARY_DIR}")
  string(SUBSTRING "${tree}" 0 6 tree)
  set(env "CUEMU_INSTANCE=vmmtest-${tree}-${name}" "VMM_TEST_TMPDIR=${CMAKE_BINARY_DIR}/testtmp/${name}"
          "VMM_BUILD_DIR=${CMAKE_BINARY_DIR}" "VMM_SOURCE_DIR=${CMAKE_SOURCE_DIR}")
  if(NOT VMM_REAL_GPU)
    list(APPEND env "LD_LIBRARY_PATH=${CUEMU_LIB_DIR}")
  endif()
  list(APPEND env ${extra_env})
  set_tests_properties(${name} PROPERTIES ENVIRONMENT "${env}" TIMEOUT ${timeout}
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

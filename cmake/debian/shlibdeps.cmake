# CPACK_PROJECT_CONFIG_FILE of the Debian package: refuses a tree configured
# for another prefix than /usr; sets Depends from the
# built binaries' shared libraries with dpkg-shlibdeps (the same tool
# dh_shlibdeps runs), minus libcuda.so.1: the CUDA driver is not a Debian
# dependency (NVIDIA's packages, Debian's non-free ones and container runtimes
# provide it under different names).  Plus what the maintainer scripts run:
# systemd-sysusers, as dh_installsysusers adds it.
if(NOT CPACK_GENERATOR STREQUAL "DEB")
  return()
endif()
if(NOT CPACK_VMM_CONFIGURED_PREFIX STREQUAL "/usr")
  message(FATAL_ERROR "the Debian package needs a tree configured for /usr "
          "(this one: ${CPACK_VMM_CONFIGURED_PREFIX}): paths such as the library's "
          "in vmmctl cdi are compiled in.  Configure with -DCMAKE_INSTALL_PREFIX=/usr.")
endif()
find_program(VMM_DPKG_SHLIBDEPS dpkg-shlibdeps)
if(NOT VMM_DPKG_SHLIBDEPS)
  message(FATAL_ERROR "dpkg-shlibdeps not found (Debian package dpkg-dev)")
endif()
file(STRINGS "${CPACK_VMM_BINARY_LIST}" bins)
set(work "${CPACK_TOPLEVEL_DIRECTORY}/vmm-shlibdeps")
file(REMOVE_RECURSE "${work}")
file(MAKE_DIRECTORY "${work}/debian")
file(WRITE "${work}/debian/control" "Source: vmmd\n\nPackage: vmmd\nArchitecture: any\n")
# libcuda.so.1 is resolved to the emulator's (tests/cuemu, in the build tree;
# -l dirs are searched first), which no package owns: with
# --ignore-missing-info it yields no dependency whatever driver this machine
# has.  Every other library must come from a package.
execute_process(COMMAND "${VMM_DPKG_SHLIBDEPS}" -O --ignore-missing-info
                        "-l${CPACK_VMM_CUDA_LIB_DIR}" ${bins}
                WORKING_DIRECTORY "${work}"
                OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc)
if(NOT rc EQUAL 0 OR NOT out MATCHES "shlibs:Depends=([^\n]*)")
  message(FATAL_ERROR "dpkg-shlibdeps failed (${rc}): ${err}")
endif()
set(deps "${CMAKE_MATCH_1}")
if(deps MATCHES "cuda|nvidia" OR NOT deps MATCHES "libc6")
  message(FATAL_ERROR "dpkg-shlibdeps gave unexpected dependencies: ${deps}")
endif()
set(CPACK_DEBIAN_PACKAGE_DEPENDS
    "${deps}, systemd | systemd-standalone-sysusers | systemd-sysusers")

# What programs linking the API find (pkg-config and CMake package config), and
# the Debian package (CPack DEB: `cpack --config build/CPackConfig.cmake`, or
# `cmake --build build --target package`).  Included after the subdirectories.
include(CMakePackageConfigHelpers)

# pkg-config: vmm_client.pc, configured for the prefix installed to.
vmm_install_configured("${PROJECT_SOURCE_DIR}/cmake/vmm_client.pc.in"
                       "${CMAKE_INSTALL_LIBDIR}/pkgconfig" vmm_client.pc)

# CMake: find_package(vmm_client) gives vmm_client::vmm_client (relocatable).
set(VMM_CMAKE_CONFIG_DIR "${CMAKE_INSTALL_LIBDIR}/cmake/vmm_client")
configure_package_config_file("${PROJECT_SOURCE_DIR}/cmake/vmm_clientConfig.cmake.in"
  "${PROJECT_BINARY_DIR}/cmake/vmm_clientConfig.cmake"
  INSTALL_DESTINATION "${VMM_CMAKE_CONFIG_DIR}")
# 0.x: a minor release may change the API (the soname says so too).
write_basic_package_version_file("${PROJECT_BINARY_DIR}/cmake/vmm_clientConfigVersion.cmake"
  VERSION "${PROJECT_VERSION}" COMPATIBILITY SameMinorVersion)
install(EXPORT vmm_client_targets NAMESPACE vmm_client:: FILE vmm_clientTargets.cmake
        DESTINATION "${VMM_CMAKE_CONFIG_DIR}")
install(FILES "${PROJECT_BINARY_DIR}/cmake/vmm_clientConfig.cmake"
              "${PROJECT_BINARY_DIR}/cmake/vmm_clientConfigVersion.cmake"
        DESTINATION "${VMM_CMAKE_CONFIG_DIR}")

# --- the Debian package ------------------------------------------------------
# One binary package, vmmd: daemon, vmmctl, the library (with its header,
# pkg-config and CMake files: programs that link the API are few, a -dev
# split is not worth it yet), units, man pages, under /usr: the tree must be
# configured for /usr (the default), as vmmctl compiles in the library's path.
# Depends: computed by cmake/debian/shlibdeps.cmake from the built binaries
# (dpkg-shlibdeps), without libcuda: the driver comes from NVIDIA's packages,
# Debian's non-free ones or the container runtime, under different names.
set(VMM_DEB_MAINTAINER "vmmd maintainers <root@localhost>" CACHE STRING
    "Maintainer field of the Debian package")
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME vmmd)
set(CPACK_PACKAGE_VERSION "${PROJECT_VERSION}")
set(CPACK_PACKAGE_CONTACT "${VMM_DEB_MAINTAINER}")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "GPU memory broker: one CUDA memory pool for many processes")
set(CPACK_PACKAGE_DESCRIPTION
    "vmmd is a per-GPU daemon that owns the GPU's physical memory as a pool of
CUDA virtual-memory chunks and lends them over a Unix socket to the processes
using the GPU.  The preload library libvmm_client.so makes unmodified CUDA
programs allocate from that pool; vmmctl shows and steers it.")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
# Absolute destinations (/lib/systemd/system) go into the package, not onto
# this machine: install into DESTDIR with CMAKE_INSTALL_PREFIX=/usr.
set(CPACK_SET_DESTDIR ON)
set(CPACK_INSTALL_PREFIX /usr)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION admin)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_RELEASE 1)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS OFF)
# A shlibs file for libvmm_client.so.0, so packages linking it get a Depends.
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS ON)
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS_POLICY ">=")
# Debug symbols stay in the build tree, not in the package.
set(CPACK_STRIP_FILES ON)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    "${PROJECT_SOURCE_DIR}/cmake/debian/postinst"
    "${PROJECT_SOURCE_DIR}/cmake/debian/prerm"
    "${PROJECT_SOURCE_DIR}/cmake/debian/postrm"
    "${PROJECT_SOURCE_DIR}/cmake/debian/triggers")
# Read by cpack (per run, after the build): fills CPACK_DEBIAN_PACKAGE_DEPENDS.
set(VMM_DEB_BINARIES "$<TARGET_FILE:vmmd>" "$<TARGET_FILE:vmmctl>"
    "$<TARGET_FILE:vmm_client>" "$<TARGET_FILE:vmmd-gpus>")
file(GENERATE OUTPUT "${PROJECT_BINARY_DIR}/cmake/deb-binaries.txt"
     CONTENT "$<JOIN:${VMM_DEB_BINARIES},\n>\n")
set(CPACK_VMM_CUDA_LIB_DIR "${CUEMU_LIB_DIR}")
# Some paths are compiled in (vmmctl cdi names the library), so the package
# is built only from a tree configured for /usr (the default).
set(CPACK_VMM_CONFIGURED_PREFIX "${CMAKE_INSTALL_PREFIX}")
set(CPACK_VMM_BINARY_LIST "${PROJECT_BINARY_DIR}/cmake/deb-binaries.txt")
set(CPACK_PROJECT_CONFIG_FILE "${PROJECT_SOURCE_DIR}/cmake/debian/shlibdeps.cmake")
include(CPack)

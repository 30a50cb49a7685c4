# Install helpers (included before the subdirectories).
#
# vmm_install_configured(<template> <destination> <name>): installs
# <template> as <destination>/<name> after substituting @VAR@ with the
# GNUInstallDirs paths of the prefix being installed to (CMAKE_INSTALL_FULL_*,
# PROJECT_VERSION), computed when `cmake --install` or cpack runs rather than
# at configure time: `cmake --install build --prefix /usr` and the Debian
# package (prefix /usr) get unit files naming /usr/sbin/vmmd even when the tree
# was configured for /usr/local.  DESTDIR is added by install(FILES) as usual.
function(vmm_install_configured template destination name)
  set(out "${CMAKE_CURRENT_BINARY_DIR}/install-time/${name}")
  set(dirs BINDIR SBINDIR LIBEXECDIR LIBDIR INCLUDEDIR DATADIR MANDIR DOCDIR)
  set(code "")
  foreach(d IN LISTS dirs)
    string(APPEND code "
      if(IS_ABSOLUTE \"${CMAKE_INSTALL_${d}}\")
        set(CMAKE_INSTALL_FULL_${d} \"${CMAKE_INSTALL_${d}}\")
      else()
        set(CMAKE_INSTALL_FULL_${d} \"\${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_${d}}\")
      endif()")
  endforeach()
  install(CODE "${code}
    set(PROJECT_VERSION \"${PROJECT_VERSION}\")
    configure_file(\"${template}\" \"${out}\" @ONLY)")
  install(FILES "${out}" DESTINATION "${destination}")
endfunction()

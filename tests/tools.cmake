# SPDX-License-Identifier: MIT
# Test helpers built from tests/tools/*.c (no project library): seccomp-deny-uring runs a program
# with io_uring_setup refused (e2e t18).
file(GLOB TEST_TOOL_SOURCES CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/tests/tools/*.c)
foreach(src IN LISTS TEST_TOOL_SOURCES)
  get_filename_component(name ${src} NAME_WE)
  add_executable(${name} ${src})
endforeach()

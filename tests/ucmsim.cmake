# SPDX-License-Identifier: MIT
# unit/test_ucmsim runs the real bench/sipedge-ucmsim program: building the test builds it too.
if(TARGET test_ucmsim AND TARGET sipedge-ucmsim)
  add_dependencies(test_ucmsim sipedge-ucmsim)
endif()

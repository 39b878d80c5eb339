# SPDX-License-Identifier: MIT
# Shared test fixtures. A test that needs Redis sets FIXTURES_REQUIRED redis and reads
# SIPEDGE_REDIS_PORT from its environment (tests using it link their name to "redis" below).
set(SIPEDGE_REDIS_PORT 16390 CACHE STRING "loopback port of the test redis-server")
add_test(NAME fixture/redis_start
         COMMAND ${PROJECT_SOURCE_DIR}/scripts/redis-fixture.sh start
                 ${PROJECT_BINARY_DIR}/redis ${SIPEDGE_REDIS_PORT})
add_test(NAME fixture/redis_stop
         COMMAND ${PROJECT_SOURCE_DIR}/scripts/redis-fixture.sh stop
                 ${PROJECT_BINARY_DIR}/redis ${SIPEDGE_REDIS_PORT})
set_tests_properties(fixture/redis_start PROPERTIES FIXTURES_SETUP redis)
set_tests_properties(fixture/redis_stop PROPERTIES FIXTURES_CLEANUP redis)

# Unit tests whose file name starts with test_redis_ or test_cache_ talk to the real server.
get_property(_tests DIRECTORY PROPERTY TESTS)
foreach(t IN LISTS _tests)
  if(t MATCHES "^unit/test_(redis|cache|auth)_")
    set_tests_properties(${t} PROPERTIES FIXTURES_REQUIRED redis RESOURCE_LOCK redis
      ENVIRONMENT "SIPEDGE_REDIS_PORT=${SIPEDGE_REDIS_PORT};ASAN_OPTIONS=halt_on_error=1:detect_leaks=1;UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1")
  endif()
endforeach()

# SPDX-License-Identifier: MIT
# sipedge-scan over the SIP message corpus: every tests/data/sip/valid/*.sip must scan ok (exit 0)
# and every tests/data/sip/invalid/*.sip must be rejected (non-zero exit). Also checks that the
# generated header table matches scripts/gen-sip-headers.py.
file(GLOB SIP_VALID CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/tests/data/sip/valid/*.sip)
file(GLOB SIP_INVALID CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/tests/data/sip/invalid/*.sip)
foreach(f IN LISTS SIP_VALID)
  get_filename_component(n ${f} NAME_WE)
  add_test(NAME scan/valid/${n} COMMAND sipedge-scan ${f})
endforeach()
foreach(f IN LISTS SIP_INVALID)
  get_filename_component(n ${f} NAME_WE)
  # exit status 1 with an "error:" line and no sanitizer report (those exit 1 too)
  add_test(NAME scan/invalid/${n}
           COMMAND sh -c "out=$(\"$0\" \"$1\" 2>&1); rc=$?; echo \"$out\"; [ $rc -eq 1 ] && \
                    echo \"$out\" | grep -q ': error: ' && ! echo \"$out\" | grep -q 'Sanitizer\\|runtime error'"
                   $<TARGET_FILE:sipedge-scan> ${f})
endforeach()
find_package(Python3 COMPONENTS Interpreter)
if(Python3_FOUND)
  add_test(NAME scan/header_table_up_to_date
           COMMAND ${Python3_EXECUTABLE} ${PROJECT_SOURCE_DIR}/scripts/gen-sip-headers.py --check)
endif()
# A bearer token is a credential: by default its SHA-256 is printed, never the token; the token
# only with --show-token. (The token of register_jabber.sip starts "eyJhbGciOi".)
add_test(NAME scan/bearer_token_not_printed
         COMMAND sh -c "out=$(\"$0\" \"$1\") && echo \"$out\" | grep -q '\"token_sha256\": \"[0-9a-f]*\"' && \
                  ! echo \"$out\" | grep -q 'eyJhbGciOi' && \
                  \"$0\" --show-token \"$1\" | grep -q 'eyJhbGciOi'"
                 $<TARGET_FILE:sipedge-scan> ${PROJECT_SOURCE_DIR}/tests/data/sip/valid/register_jabber.sip)
# The table of odd and invalid requests (tests/data/sip/edge/expected, also sent to a running edge
# by tests/e2e/t10_sip_checks.sh): sipedge-scan --verdict, which runs the edge's decision code
# (core/sip_check.c), must give each row's answer.
add_test(NAME scan/verdicts
         COMMAND bash ${PROJECT_SOURCE_DIR}/tests/scan-verdicts.sh $<TARGET_FILE:sipedge-scan>
                 ${PROJECT_SOURCE_DIR}/tests/data/sip/edge)

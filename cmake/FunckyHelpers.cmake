# funcky_cc_library(NAME <name> SRCS <files...> [DEPS <public deps...>] [PRIVATE_DEPS <deps...>])
#
# One static library per component folder, aliased as funcky::<name>. Public deps are what
# the component's headers expose; everything else links PRIVATE so the link graph stays
# the architecture (the SDK can only see funcky::common).
function(funcky_cc_library)
  cmake_parse_arguments(ARG "" "NAME" "SRCS;DEPS;PRIVATE_DEPS" ${ARGN})
  add_library(funcky_${ARG_NAME} STATIC ${ARG_SRCS})
  add_library(funcky::${ARG_NAME} ALIAS funcky_${ARG_NAME})
  target_include_directories(funcky_${ARG_NAME} PUBLIC ${PROJECT_SOURCE_DIR})
  target_link_libraries(funcky_${ARG_NAME} PUBLIC ${ARG_DEPS} PRIVATE ${ARG_PRIVATE_DEPS})
endfunction()

# funcky_cc_test(NAME <name> SRCS <files...> DEPS <deps...> [LABELS <labels...>])
function(funcky_cc_test)
  cmake_parse_arguments(ARG "" "NAME" "SRCS;DEPS;LABELS" ${ARGN})
  add_executable(${ARG_NAME} ${ARG_SRCS})
  target_link_libraries(${ARG_NAME} PRIVATE ${ARG_DEPS} GTest::gtest GTest::gmock GTest::gtest_main)
  gtest_discover_tests(${ARG_NAME} DISCOVERY_TIMEOUT 30 PROPERTIES LABELS "${ARG_LABELS}")
endfunction()

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

# funcky_cc_test(NAME <name> SRCS <files...> DEPS <deps...> [LABELS <labels...>] [SERIAL])
# SERIAL: each of its tests runs alone (CTest RUN_SERIAL), for tests that load the machine.
function(funcky_cc_test)
  cmake_parse_arguments(ARG "SERIAL" "NAME" "SRCS;DEPS;LABELS" ${ARGN})
  add_executable(${ARG_NAME} ${ARG_SRCS})
  target_link_libraries(${ARG_NAME} PRIVATE ${ARG_DEPS} GTest::gtest GTest::gmock GTest::gtest_main)
  if(ARG_SERIAL)
    gtest_discover_tests(${ARG_NAME} DISCOVERY_TIMEOUT 30
                         PROPERTIES LABELS "${ARG_LABELS}" RUN_SERIAL TRUE)
  else()
    gtest_discover_tests(${ARG_NAME} DISCOVERY_TIMEOUT 30 PROPERTIES LABELS "${ARG_LABELS}")
  endif()
endfunction()

# funcky_file_names(<out var> <files>): the files' names joined by commas. An embedding
# command carries them (the scripts glob for themselves and ignore it) so that its command
# line changes when a file is added or removed: the output's DEPENDS alone would not bring
# the command to run again for a removed file, as the files left are older than its output.
function(funcky_file_names out_var files)
  set(names "")
  foreach(f ${files})
    get_filename_component(name "${f}" NAME)
    string(APPEND names "${name},")
  endforeach()
  set(${out_var} "${names}" PARENT_SCOPE)
endfunction()

# funcky_embed_migrations(<out var> <backend> <C++ function>): generates a .cc file that
# returns migrations/<backend>/*.sql from <C++ function>() and puts its path in <out var>.
function(funcky_embed_migrations out_var backend function_name)
  set(out ${CMAKE_CURRENT_BINARY_DIR}/${backend}_migrations.cc)
  file(GLOB files CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/migrations/${backend}/*.sql)
  funcky_file_names(names "${files}")
  add_custom_command(
    OUTPUT ${out}
    COMMAND ${CMAKE_COMMAND} -DOUT=${out} -DFUNCTION=${function_name} -DNAMES=${names}
            -DDIR=${PROJECT_SOURCE_DIR}/migrations/${backend}
            -P ${PROJECT_SOURCE_DIR}/cmake/EmbedMigrations.cmake
    DEPENDS ${files} ${PROJECT_SOURCE_DIR}/cmake/EmbedMigrations.cmake
    COMMENT "Embedding ${backend} migrations")
  set(${out_var} ${out} PARENT_SCOPE)
endfunction()

# funcky_embed_files(<out var> <dir> <C++ function>): generates a .cc file whose
# <C++ function>() returns the files of <dir> by name, and puts its path in <out var>.
function(funcky_embed_files out_var dir function_name)
  set(out ${CMAKE_CURRENT_BINARY_DIR}/${function_name}.cc)
  file(GLOB files CONFIGURE_DEPENDS ${dir}/*)
  funcky_file_names(names "${files}")
  add_custom_command(
    OUTPUT ${out}
    COMMAND ${CMAKE_COMMAND} -DOUT=${out} -DFUNCTION=${function_name} -DDIR=${dir}
            -DNAMES=${names}
            -P ${PROJECT_SOURCE_DIR}/cmake/EmbedFiles.cmake
    DEPENDS ${files} ${PROJECT_SOURCE_DIR}/cmake/EmbedFiles.cmake
    COMMENT "Embedding ${dir}")
  set(${out_var} ${out} PARENT_SCOPE)
endfunction()

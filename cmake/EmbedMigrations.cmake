# cmake -DOUT=<file.cc> -DFUNCTION=<name> -DDIR=<migrations dir> -P EmbedMigrations.cmake
# Writes a C++ file that returns every NNNN_name.sql of DIR, in order, so the binary
# carries its own migrations. A file whose first line is `-- funcky: breaks earlier versions`
# changes what coordinators of earlier versions read or write (Migration::breaks_earlier).
file(GLOB files "${DIR}/*.sql")
list(SORT files)
set(body "")
foreach(f ${files})
  get_filename_component(name "${f}" NAME_WE)
  string(REGEX MATCH "^[0-9]+" version "${name}")
  math(EXPR version "${version}")
  file(READ "${f}" sql)
  set(breaks false)
  if(sql MATCHES "^-- funcky: breaks earlier versions\n")
    set(breaks true)
  endif()
  string(APPEND body
         "      {${version}, \"${name}\", R\"funcky_sql(${sql})funcky_sql\", ${breaks}},\n")
endforeach()
file(WRITE "${OUT}.tmp" "// Generated from ${DIR} by cmake/EmbedMigrations.cmake. Do not edit.
#include \"coordinator/store/migration.h\"

namespace funcky::store {

const std::vector<Migration>& ${FUNCTION}() {
  static const std::vector<Migration> kMigrations = {
${body}  };
  return kMigrations;
}

}  // namespace funcky::store
")
execute_process(COMMAND ${CMAKE_COMMAND} -E copy_if_different "${OUT}.tmp" "${OUT}")

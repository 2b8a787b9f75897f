# cmake -DOUT=<file.cc> -DFUNCTION=<name> -DDIR=<dir> -P EmbedFiles.cmake
# Writes a C++ file whose function returns every file of DIR (not recursive) by name, so the
# binary serves them without reading the disk.
file(GLOB files "${DIR}/*")
list(SORT files)
set(body "")
foreach(f ${files})
  get_filename_component(name "${f}" NAME)
  file(READ "${f}" content)
  string(APPEND body "      {\"${name}\", R\"funcky_file(${content})funcky_file\"},\n")
endforeach()
file(WRITE "${OUT}.tmp" "// Generated from ${DIR} by cmake/EmbedFiles.cmake. Do not edit.
#include <map>
#include <string>
#include <string_view>

namespace funcky {

const std::map<std::string, std::string_view>& ${FUNCTION}() {
  static const std::map<std::string, std::string_view> kFiles = {
${body}  };
  return kFiles;
}

}  // namespace funcky
")
execute_process(COMMAND ${CMAKE_COMMAND} -E copy_if_different "${OUT}.tmp" "${OUT}")

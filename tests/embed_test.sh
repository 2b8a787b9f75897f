#!/usr/bin/env bash
# The embedded migrations and files follow their folders: a file added is embedded at the
# next build, and a file removed is embedded no more; a migration whose first line is
# `-- funcky: breaks earlier versions` is embedded marked so. Builds a throwaway CMake project (no
# compiler) with cmake/FunckyHelpers.cmake's embedding functions, removes a migration and a
# file, builds again, and reads the generated sources.
#   tests/embed_test.sh [REPO]
set -euo pipefail
repo=$(realpath "${1:-$(dirname "$0")/..}")
work=$(mktemp -d /tmp/funcky-embed-test-XXXXXX)
trap 'rm -rf "$work"' EXIT

mkdir -p "$work/cmake" "$work/migrations/postgres" "$work/files"
cp "$repo"/cmake/{FunckyHelpers,EmbedMigrations,EmbedFiles}.cmake "$work/cmake/"
cat > "$work/CMakeLists.txt" <<'CMAKE'
cmake_minimum_required(VERSION 3.20)
project(embed_test NONE)
list(APPEND CMAKE_MODULE_PATH ${PROJECT_SOURCE_DIR}/cmake)
include(FunckyHelpers)
funcky_embed_migrations(MIGRATIONS_CC postgres TestMigrations)
funcky_embed_files(FILES_CC ${PROJECT_SOURCE_DIR}/files TestFiles)
add_custom_target(embedded ALL DEPENDS ${MIGRATIONS_CC} ${FILES_CC})
CMAKE
echo "SELECT 1;" > "$work/migrations/postgres/0001_first.sql"
echo "SELECT 2;" > "$work/migrations/postgres/0002_second.sql"
echo "kept" > "$work/files/kept.txt"
echo "gone" > "$work/files/gone.txt"

build() { local out; out=$(cmake --build "$work/build" 2>&1) || { echo "$out"; exit 1; }; }
cmake -S "$work" -B "$work/build" -G Ninja >/dev/null
build
migrations="$work/build/postgres_migrations.cc"
files="$work/build/TestFiles.cc"
expect() {  # expect present|absent TEXT FILE
  if grep -q "$2" "$3"; then found=present; else found=absent; fi
  [[ "$found" == "$1" ]] || { echo "FAIL: \"$2\" $found in $(basename "$3"), expected $1"; exit 1; }
}
expect present 0002_second "$migrations"
expect present gone.txt "$files"

rm "$work/migrations/postgres/0002_second.sql" "$work/files/gone.txt"
build
expect present 0001_first "$migrations"
expect absent 0002_second "$migrations"
expect present kept.txt "$files"
expect absent gone.txt "$files"

printf -- '-- funcky: breaks earlier versions\nSELECT 3;\n' > "$work/migrations/postgres/0003_third.sql"
build
expect present 0003_third "$migrations"
# The first line `-- funcky: breaks earlier versions` marks a migration (Migration::breaks_earlier).
marks=$(grep -o 'funcky_sql", [a-z]*}' "$migrations" | tr '\n' ' ')
[[ "$marks" == 'funcky_sql", false} funcky_sql", true} ' ]] ||
  { echo "FAIL: breaks_earlier of 0001, 0003: $marks, expected false, true"; exit 1; }
echo "ok: migrations and files removed are embedded no more, added ones at the next build;"
echo "    a migration's first line marks it as breaking earlier versions"

#!/bin/sh
# Installs the build tree into a temporary prefix and checks that a plain Lua
# 5.4 interpreter loads the installed module and records a span, and that a C
# program builds against the installed header and basalt.pc.
set -eu
build="$1"
prefix=$(mktemp -d)
trap 'rm -rf "$prefix"' EXIT
cmake --install "$build" --prefix "$prefix" >/dev/null
# A sanitizer build needs an instrumented interpreter and C flags to match.
lua="${BASALT_INSTALL_LUA:-$(command -v lua5.4 || true)}"
[ -n "$lua" ] || lua="$BASALT_HOST"
cat > "$prefix/check.lua" <<'LUA'
local basalt = require("basalt")
local mem = basalt.memory_exporter()
basalt.init { exporters = { mem } }
basalt.start_observe({ name = "installed", feature_slug = "f" }, function() end)
assert(mem:find("installed"), "span recorded by the installed module")
print("lua ok", basalt.version)
LUA
LUA_PATH="$prefix/share/lua/5.4/?.lua" LUA_CPATH="$prefix/lib/lua/5.4/?.so" "$lua" "$prefix/check.lua"
cat > "$prefix/host.c" <<'C'
#include <basalt/runtime.h>
#include <stdio.h>
int main(void) {
    printf("c ok %s\n", basalt_version());
    return 0;
}
C
PKG_CONFIG_PATH="$prefix/lib/pkgconfig" cc ${BASALT_INSTALL_CFLAGS:-} "$prefix/host.c" -o "$prefix/host" \
  $(PKG_CONFIG_PATH="$prefix/lib/pkgconfig" pkg-config --cflags --libs basalt) -Wl,-rpath,"$prefix/lib"
"$prefix/host"

-- basalt: tracing for LLM applications. The module is implemented in C
-- (basalt.core); this file is what `require("basalt")` finds on LUA_PATH.
return require("basalt.core")

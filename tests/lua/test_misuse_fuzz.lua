-- A few fixed seeds of the misuse fuzzer (bench/misuse_fuzz.lua): nested and
-- overflowing blocks, raising and yielding callbacks, raising error values,
-- collections at every C depth, abandoned coroutines. Each seed runs in a
-- child process, which must reach its end; in the sanitizer build the child's
-- ASan, UBSan and LeakSanitizer reports fail the test too. More seeds:
-- bench/misuse_fuzz.sh.
local T = require("testlib")

local host = os.getenv("BASALT_HOST") or arg[-1]
local fuzzer = "../../bench/misuse_fuzz.lua" -- ctest runs this file from tests/lua

local function run_seed(seed)
  local p = assert(io.popen(string.format("LUA_PATH=%q LUA_CPATH=%q '%s' %s %d 1500 2>&1",
    package.path, package.cpath, host, fuzzer, seed)))
  local text = p:read("a")
  local ok = p:close()
  return text, ok
end

for _, seed in ipairs { 3, 17, 42 } do
  T.test("misuse fuzz seed " .. seed .. " runs to its end with no sanitizer report", function()
    local text, ok = run_seed(seed)
    T.truthy(text:find("\nFUZZ%-DONE") or text:find("^FUZZ%-DONE"), "no FUZZ-DONE line:\n" .. text:sub(-2000))
    T.falsy(text:match("SUMMARY: %a+Sanitizer[^\n]*"), "sanitizer report:\n" .. text:sub(-3000))
    T.falsy(text:match("runtime error:[^\n]*"), "UBSan report")
    T.truthy(ok, "child exit status")
  end)
end

T.run()

-- Application-thread cost of one observe block: a child span with three
-- attributes inside a root, no exporter attached, against a bare pcall of the
-- same function (whose span argument is then the no-op handle). Also counts
-- instructions per span with valgrind's callgrind (stable on a noisy machine).
--
--   build/basalt-lua bench/span_overhead.lua [N]
-- (LUA_PATH / LUA_CPATH pointing at the build tree, see README.)
local basalt = require("basalt")

local inner = arg[1] == "--inner"
local N = tonumber(inner and arg[2] or arg[1]) or 500000

basalt.init { exporters = {} }

local function work(span, i)
  span:set_attribute("app.step", i)
  span:set_attribute("app.model", "gpt-4o")
  span:set_attribute("app.cached", false)
  return i
end

local opts = { name = "child", kind = "tool" }
local function observe_loop(n)
  return basalt.start_observe({ name = "root", feature_slug = "bench" }, function()
    local s = 0
    for i = 1, n do s = s + basalt.observe(opts, work, i) end
    return s
  end)
end

local noop = basalt.current_span()
local function pcall_loop(n)
  local s = 0
  for i = 1, n do
    local _, v = pcall(work, noop, i)
    s = s + v
  end
  return s
end

if inner then -- measured by callgrind from the outer run
  if arg[3] == "pcall" then pcall_loop(N) else observe_loop(N) end
  return
end

local function best_of(runs, fn, n)
  local best = math.huge
  for _ = 1, runs do
    collectgarbage()
    local t0 = os.clock()
    fn(n)
    local dt = os.clock() - t0
    if dt < best then best = dt end
  end
  return best * 1e9 / n
end

observe_loop(20000) -- warm up
local ns_observe = best_of(5, observe_loop, N)
local ns_pcall = best_of(5, pcall_loop, N)

-- Instructions per span: two callgrind runs, the difference divided by the
-- extra spans, so start-up and module loading cancel out.
local function callgrind(n, what)
  local host, script = arg[-1], arg[0]
  -- A fixed time() fixes Lua's string hash seed: the counts then repeat exactly.
  local fixed = host:gsub("[^/]*$", "") .. "bench/libfixed_time.so"
  local f = io.open(fixed)
  local preload = f and ("LD_PRELOAD=" .. fixed .. " ") or ""
  if f then f:close() end
  local cmd = string.format("%svalgrind --tool=callgrind --callgrind-out-file=/dev/null %s %s --inner %d %s 2>&1",
    preload, host, script, n, what or "observe")
  local p = io.popen(cmd)
  if not p then return nil end
  local out = p:read("a")
  p:close()
  local collected = out:match("Collected : (%d+)")
  return collected and tonumber(collected)
end
local ir_per_span, ir_per_pcall
if os.execute("command -v valgrind >/dev/null 2>&1") then
  local a, b = callgrind(2000), callgrind(22000)
  if a and b then ir_per_span = (b - a) / 20000 end
  local c, d = callgrind(2000, "pcall"), callgrind(22000, "pcall")
  if c and d then ir_per_pcall = (d - c) / 20000 end
end

print(string.format("observe block: %.0f ns   bare pcall: %.0f ns   ratio %.1fx   span overhead %.0f ns",
  ns_observe, ns_pcall, ns_observe / ns_pcall, ns_observe - ns_pcall))
if ir_per_span and ir_per_pcall then
  print(string.format("callgrind: %.0f instructions per observe block (span + 3 attributes), %.0f per bare pcall, %.0f added by the span",
    ir_per_span, ir_per_pcall, ir_per_span - ir_per_pcall))
end
print(string.format('{"bench":"span_overhead","n":%d,"ns_per_observe":%.1f,"ns_per_pcall":%.1f,"ratio":%.2f,"instructions_per_block":%s,"instructions_per_pcall":%s}',
  N, ns_observe, ns_pcall, ns_observe / ns_pcall, ir_per_span and string.format("%.0f", ir_per_span) or "null",
  ir_per_pcall and string.format("%.0f", ir_per_pcall) or "null"))

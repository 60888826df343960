-- Seeded random misuse fuzzer for the basalt Lua binding.
--   basalt-lua misuse_fuzz.lua SEED [ITERATIONS]
-- Mixes nested blocks, C-stack overflows, failing/yielding callbacks, raising
-- error values, collections at arbitrary (and near-limit) C depths, abandoned
-- coroutines, kept and dropped contexts/handles, with_context, tracer spans.
-- It must never crash or raise out; memory problems are for ASan/LSan to see.
-- Prints "FUZZ-DONE ..." as its last line when it ran to the end.
local seed = tonumber(arg and arg[1]) or 1
local iters = tonumber(arg and arg[2]) or 3000
math.randomseed(seed)
if os.getenv("FUZZ_WARN") ~= "0" then warn("@on") end -- shows Lua's "error in __gc" warnings

local basalt = require("basalt")
local R = math.random
local function chance(p) return R() < p end
local function pick(t) return t[R(#t)] end

local mem = basalt.memory_exporter()
local ops = 0          -- operations in the current top-level step (bounds the work)
local OPS_PER_STEP = 60
local MAX_NEST = 7     -- block nesting of the random body (not counting deep recursions)
local kept = {}        -- values kept alive across steps: contexts, handles, coroutines, tracer spans
local counts = {}
local function count(k) counts[k] = (counts[k] or 0) + 1 end

-- n nested pcalls, then f: collections (or anything) at a chosen C depth.
local function at_depth(n, f, ...)
  if n <= 0 then return f(...) end
  return select(2, pcall(at_depth, n - 1, f, ...))
end

local function keep(v)
  if v == nil then return end
  if #kept >= 40 then table.remove(kept, R(#kept)) end
  kept[#kept + 1] = v
end

local function drop_some()
  local n = R(0, #kept)
  for _ = 1, n do if #kept > 0 then table.remove(kept, R(#kept)) end end
end

local function kept_of(kind)
  local c = {}
  for _, v in ipairs(kept) do if v.kind == kind then c[#c + 1] = v end end
  if #c == 0 then return nil end
  return pick(c)
end

-- Error values: strings, nil, numbers, tables with raising metamethods.
local function bad_err()
  local r = R(6)
  if r == 1 then return "plain error " .. R(1000) end
  if r == 2 then return nil end
  if r == 3 then return 42.5 end
  if r == 4 then
    return setmetatable({ type = "Boom" }, {
      __tostring = function() error("__tostring raises") end,
    })
  end
  if r == 5 then
    return setmetatable({}, {
      __tostring = function() error(setmetatable({}, { __tostring = function() error("deeper") end })) end,
      __index = function() error("__index raises") end,
    })
  end
  return setmetatable({ message = "m" }, {
    __tostring = function() return {} end, -- not a string
    __index = function(_, k) if k == "type" then error("type raises") end end,
  })
end

local function weird_value()
  local r = R(7)
  if r == 1 then local t = {}; t.self = t; return t end
  if r == 2 then return function() end end
  if r == 3 then return coroutine.create(function() end) end
  if r == 4 then local t = {}; local c = t; for _ = 1, 80 do c.n = {}; c = c.n end; return t end
  if r == 5 then return "\xff\xfe invalid utf8" end
  if r == 6 then return 0 / 0 end
  return setmetatable({}, { __index = function() error("idx") end, __pairs = function() error("pairs") end })
end

-- The misbehaviour of a user callback (identity function, sampling policy).
local function misbehave(kind)
  local r = R(10)
  if r == 1 then error(bad_err()) end
  if r == 2 then coroutine.yield() end -- across a C boundary, or really yields
  if r == 3 then basalt.observe("in-" .. kind, function() collectgarbage() end); return nil end
  if r == 4 then basalt.start_observe({ name = "root-in-" .. kind, feature_slug = "cb" }, function() end) end
  if r == 5 then collectgarbage() end
  if r == 6 then at_depth(R(150, 200), collectgarbage) end
  if r == 7 then while true do end end -- instruction limit
  if r == 8 then return weird_value() end
  if r == 9 then keep({ kind = "ctx", v = basalt.capture() }) end
  return nil
end

local policy_mode = 0
local function policy(t)
  if policy_mode == 0 then return chance(0.5) end
  if policy_mode == 1 then return R() end
  if policy_mode == 2 then return 7 end
  return misbehave("policy")
end

local function identity()
  local r = R(5)
  if r == 1 then return { user = { id = "u" .. R(9) }, organization = { id = "o" } } end
  if r == 2 then return function(...) return { user = { id = "fu" } } end end
  if r == 3 then return function() return misbehave("identity") end end
  if r == 4 then return { user = { name = "no id" } } end -- invalid table: raises
  return nil
end

local function init()
  policy_mode = R(0, 3)
  local ex = chance(0.8) and { mem } or {}
  basalt.init {
    exporters = ex,
    sampling_policy = chance(0.7) and policy or nil,
    sample_rate = R(),
    policy_instruction_limit = 20000,
    evaluators = chance(0.5) and { "g1" } or nil,
    logger = chance(0.5) and function(level, msg) if chance(0.05) then error("logger raises") end end or nil,
  }
  count("init")
end

local body -- forward

local function nested(d) if d < MAX_NEST then return body(d + 1) end end

local function span_misuse(s)
  if s == nil then return end
  local r = R(8)
  if r == 1 then s:set_attribute("k" .. R(5), weird_value()) end
  if r == 2 then s:record_error(bad_err()) end
  if r == 3 then s:set_status(pick { "ok", "error", "unset", "bogus" }, bad_err()) end
  if r == 4 then s:set_attributes({ a = weird_value(), b = 1 }) end
  if r == 5 then s:set_output(weird_value()):set_input("x") end
  if r == 6 then s:add_event("ev", { x = weird_value() }) end
  if r == 7 then s:set_identity({ user = { id = "x" } }) end
  if r == 8 then s:finish() end
end

-- Recursion through observe (and start_observe / pcall / with_context) until
-- the C stack overflows; collections along the way land at every C depth.
local function deep_recursion()
  local gc_every = chance(0.5) and R(1, 3) or 0
  local mix = R(4)
  local function rec(n)
    if gc_every > 0 and n % gc_every == 0 then collectgarbage(chance(0.8) and "collect" or "step") end
    if n > 400 then return n end
    local m = (mix == 1) and R(4) or mix
    if m == 1 then
      return basalt.observe({ name = "deep" }, function() return rec(n + 1) end)
    elseif m == 2 then
      return select(2, pcall(rec, n + 1))
    elseif m == 3 then
      return basalt.start_observe({ name = "deeproot", feature_slug = "deep" }, function() return rec(n + 1) end)
    else
      local ctx = basalt.capture()
      return basalt.with_context(ctx, rec, n + 1)
    end
  end
  count("deep")
  return pcall(rec, 0)
end

local function make_coroutine(d)
  count("coroutine")
  -- Made before the coroutine (so finalized after its flow): once both are
  -- dropped, this finalizer resumes a coroutine whose open blocks are ended.
  local resurrect = chance(0.25) and setmetatable({}, { __gc = function(o)
    if o.co and coroutine.status(o.co) == "suspended" then coroutine.resume(o.co) end
  end }) or nil
  local co = coroutine.create(function(...)
    basalt.observe({ name = "in-co" }, function(s)
      if chance(0.6) then coroutine.yield(s) end
      if chance(0.3) then basalt.with_context(basalt.capture(), function() coroutine.yield() end) end
      if chance(0.3) then nested(d) end
      if chance(0.2) then error(bad_err()) end
    end)
    if chance(0.3) then coroutine.yield() end
  end)
  local n = R(0, 3)
  for _ = 1, n do
    if coroutine.status(co) ~= "suspended" then break end
    local ok, s = coroutine.resume(co)
    if ok and s and chance(0.5) then keep({ kind = "span", v = s }) end -- a block's handle escapes
  end
  if resurrect then resurrect.co = co end
  local r = R(4)
  if r == 1 then keep({ kind = "co", v = co })
  elseif r == 2 and coroutine.status(co) == "suspended" then coroutine.close(co) end
  -- else dropped (possibly suspended inside a block)
end

local actions
actions = {
  root = function(d)
    count("root")
    local opts = { name = "root" .. d, feature_slug = chance(0.95) and "fz" or nil, identity = identity() }
    if chance(0.2) then opts.experiment = { id = "e1" } end
    if chance(0.2) then opts.evaluation_config = { sample_rate = R() } end
    if chance(0.1) then opts.parent = (kept_of("ctx") or {}).v end
    local v = basalt.start_observe(opts, function(s, ...)
      if chance(0.3) then keep({ kind = "span", v = s }) end
      nested(d)
      return s
    end, 1, 2)
    if chance(0.2) and v then span_misuse(v) end
  end,
  child = function(d)
    count("child")
    local s = basalt.observe({ name = "child" .. d, kind = pick { "span", "generation", "tool", "retrieval" },
      identity = identity(), metadata = chance(0.2) and { m = weird_value() } or nil }, function(s)
      if chance(0.3) then span_misuse(s) end
      nested(d)
      return s
    end)
    if chance(0.3) then keep({ kind = "span", v = s }) end
  end,
  raise = function(d)
    count("raise")
    pcall(basalt.observe, "raises", function()
      nested(d)
      error(bad_err(), chance(0.5) and 0 or 1)
    end)
  end,
  raise_root = function(d)
    pcall(basalt.start_observe, { name = "raises-root", feature_slug = "fz", identity = identity() }, function()
      if chance(0.5) then collectgarbage() end
      error(bad_err())
    end)
  end,
  deep = function(d) if chance(0.5) then deep_recursion() end end,
  gc = function(d)
    count("gc")
    local r = R(4)
    if r == 1 then collectgarbage()
    elseif r == 2 then collectgarbage("step", R(0, 50))
    elseif r == 3 then at_depth(R(190, 200), collectgarbage)
    else at_depth(R(0, 200), collectgarbage) end
  end,
  coroutine = function(d) make_coroutine(d) end,
  resume_kept = function(d)
    local c = kept_of("co")
    if c and coroutine.status(c.v) == "suspended" then
      if chance(0.8) then coroutine.resume(c.v) else coroutine.close(c.v) end
    end
  end,
  capture = function(d)
    count("capture")
    local ctx = basalt.capture()
    if chance(0.5) then keep({ kind = "ctx", v = ctx }) end
    local s = basalt.current_span()
    if chance(0.5) then keep({ kind = "ctx", v = s:context() }) end
  end,
  with_context = function(d)
    count("with_context")
    local c = kept_of("ctx")
    local ctx = c and c.v or (chance(0.5) and basalt.capture() or pick { 5, "x", {} })
    pcall(basalt.with_context, ctx, function(...)
      nested(d)
      if chance(0.2) then error(bad_err()) end
    end, 1)
  end,
  with_evaluators = function(d)
    pcall(basalt.with_evaluators, chance(0.9) and { "q" .. R(3), " " } or 7, function() nested(d) end)
  end,
  tracer = function(d)
    count("tracer")
    local tr = basalt.tracer("fuzz", "1")
    local parent = chance(0.3) and (kept_of("ctx") or {}).v or nil
    local ok, sp = pcall(tr.start_span, tr, "plain", { kind = pick { "client", "server", "internal" },
      attributes = { a = 1 }, parent = parent })
    if ok and sp then
      if chance(0.5) then sp:finish() end
      if chance(0.3) then sp:finish() end -- twice
      if chance(0.4) then keep({ kind = "span", v = sp }) end
    end
  end,
  escaped = function(d)
    local c = kept_of("span")
    if c then span_misuse(c.v); if chance(0.3) then keep({ kind = "ctx", v = c.v:context() }) end end
  end,
  bind = function(d)
    local f = basalt.bind(function() nested(d) end)
    if chance(0.5) then f() else keep({ kind = "fn", v = f }) end
  end,
  wrap = function(d)
    local f = basalt.observe_wrap({ name = "wrapped" }, function(s, x) nested(d); return x end)
    f(1)
    local g = basalt.start_observe_wrap({ name = "wroot", feature_slug = "w", identity = identity() },
      function(s) if chance(0.3) then error(bad_err()) end end)
    pcall(g, 2)
  end,
  helpers = function(d)
    basalt.set_identity(chance(0.5) and { user = { id = "h" } } or { bogus = true })
    basalt.set_input(weird_value())
    basalt.set_output("o")
    basalt.add_evaluator("h" .. R(3))
    basalt.root_span()
  end,
  propagation = function(d)
    local h = {}
    basalt.inject(h)
    if chance(0.5) then h.traceparent = pick { "00-zz-xx-01", "garbage", (h.traceparent or "") .. "x" } end
    local ctx = basalt.extract(h)
    if ctx then keep({ kind = "ctx", v = ctx }) end
  end,
  yield = function(d)
    if coroutine.isyieldable() and chance(0.5) then coroutine.yield() end
  end,
  finalizer = function(d)
    -- a finalizer of our own that opens blocks and collects
    setmetatable({}, { __gc = function()
      pcall(basalt.observe, "in-gc", function() basalt.capture() end)
    end })
  end,
  drop = function(d) drop_some() end,
  reinit = function(d) if chance(0.05) then init() end end,
  clear = function(d) if chance(0.2) then mem:clear() end end,
}
local names = {}
for k in pairs(actions) do names[#names + 1] = k end
table.sort(names) -- deterministic order for a seed

body = function(d)
  for _ = 1, R(1, 3) do
    ops = ops + 1
    if ops > OPS_PER_STEP then return end
    local name = pick(names)
    actions[name](d)
  end
end

init()
local t0 = os.clock()
local raised = 0
for i = 1, iters do
  ops = 0
  local ok = pcall(function()
    if chance(0.3) then
      -- the step inside a coroutine, resumed to the end (or abandoned)
      local co = coroutine.create(function() body(0) end)
      while coroutine.status(co) == "suspended" do
        coroutine.resume(co)
        if chance(0.1) then break end
      end
    elseif chance(0.2) then
      at_depth(R(0, 195), body, 0)
    else
      body(0)
    end
  end)
  if not ok then raised = raised + 1 end
  if os.clock() - t0 > 1.2 then break end -- keep a seed around 2 s under ASan
end
kept = nil
collectgarbage()
collectgarbage()
local st = basalt.stats()
basalt.shutdown(2000)
local c = {}
for k, v in pairs(counts) do c[#c + 1] = k .. "=" .. v end
table.sort(c)
print(string.format("FUZZ-DONE seed=%d started=%s ended=%s raised=%d %s", seed, tostring(st.spans_started),
  tostring(st.spans_ended), raised, table.concat(c, " ")))

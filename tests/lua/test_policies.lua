-- Sampling policies (lua-api.md "Sampling policies", semantics.md Decisions 5):
-- what a policy sees, what its results mean, and how a failing, runaway or
-- misbehaving policy is contained.
local T = require("testlib")
local basalt = require("basalt")

local EVAL = "basalt.span.should_evaluate"

-- A fresh runtime with a memory exporter and a logger that collects messages.
-- Warnings are logged once per process per distinct message, so tests that
-- count log lines use messages of their own.
local function setup(opts)
  opts = opts or {}
  basalt.stats() -- deliver what the previous test's logger is still owed
  local mem = basalt.memory_exporter()
  local logs = {}
  opts.exporters = { mem }
  opts.logger = function(level, msg) logs[#logs + 1] = { level = level, msg = msg } end
  basalt.init(opts)
  return mem, logs
end

-- Log messages are delivered on the next call into the binding.
local function drain(logs)
  basalt.stats()
  return logs
end

local function matching(logs, text)
  local out = {}
  for _, l in ipairs(drain(logs)) do
    if l.msg:find(text, 1, true) then out[#out + 1] = l end
  end
  return out
end

local function trace(opts, fn, ...)
  opts.name = opts.name or "request"
  opts.feature_slug = opts.feature_slug or "checkout"
  return basalt.start_observe(opts, fn or function() end, ...)
end

-- The decision the TraceIdRatioBased rule gives: low 56 bits of the trace id
-- (its last 14 hex digits) below rate * 2^56.
local function expected_decision(trace_id, rate)
  if rate >= 1.0 then return true end
  if rate <= 0.0 then return false end
  local low = tonumber(trace_id:sub(-14), 16)
  return low < math.floor(rate * 2.0 ^ 56)
end

-- ---- what the policy sees -------------------------------------------------------------

T.test("init and shutdown from inside a policy are refused; the starting trace is kept", function()
  local mem, logs = setup {
    sampling_policy = function()
      basalt.init { exporters = {} }
    end,
  }
  trace({ name = "kept" }, function() basalt.observe("child", function() end) end)
  T.truthy(mem:find("kept"), "the trace went to the pipeline it started in")
  T.truthy(mem:find("child"))
  T.eq(#matching(logs, "basalt.init cannot be called from a sampling policy"), 1)
  mem, logs = setup { sampling_policy = function() basalt.shutdown(100) end }
  trace({ name = "kept2" })
  T.truthy(mem:find("kept2"))
  T.eq(#matching(logs, "basalt.shutdown cannot be called from a sampling policy"), 1)
  -- the logger likewise: a failing identity function is logged, the logger calls init
  local failures = 0
  local m2 = basalt.memory_exporter()
  basalt.init { exporters = { m2 }, logger = function()
    failures = failures + 1
    basalt.init { exporters = {} }
  end }
  trace({ name = "logged", identity = function() error("identity fails for the logger test") end })
  basalt.stats()
  T.truthy(failures >= 1, "the logger ran")
  T.truthy(m2:find("logged"), "the trace stayed with its pipeline")
end)

T.test("the policy sees trace_id, name, feature_slug, identity, metadata, evaluators and sample_rate", function()
  local seen, copy
  local mem = setup {
    evaluators = { "global-eval" },
    sample_rate = 0.25,
    sampling_policy = function(t)
      seen = t
      copy = {
        trace_id = t.trace_id, name = t.name, feature_slug = t.feature_slug,
        user_id = t.identity.user.id, user_name = t.identity.user.name,
        org_id = t.identity.organization.id, org_name = t.identity.organization.name,
        plan = t.metadata.plan, seats = t.metadata.seats, nested = t.metadata.nested.deep,
        evaluators = { table.unpack(t.evaluators) }, n_evaluators = #t.evaluators,
        experiment = t.experiment, sample_rate = t.sample_rate,
      }
      return nil
    end,
  }
  local trace_id
  basalt.with_evaluators({ "block-eval" }, function()
    trace({
      name = "answer_question", feature_slug = "support-chat",
      identity = { user = { id = "u-1", name = "Ann" }, organization = { id = "org-9", name = "Acme" } },
      metadata = { plan = "enterprise", seats = 40, nested = { deep = true } },
      evaluators = { "own-eval" },
    }, function(span) trace_id = span:trace_id() end)
  end)
  T.truthy(seen, "policy called")
  T.eq(copy, {
    trace_id = trace_id, name = "answer_question", feature_slug = "support-chat",
    user_id = "u-1", user_name = "Ann", org_id = "org-9", org_name = "Acme",
    plan = "enterprise", seats = 40, nested = true,
    evaluators = { "global-eval", "block-eval", "own-eval" }, n_evaluators = 3,
    experiment = nil, sample_rate = 0.25,
  })
  T.eq(#mem:spans(), 1)
end)

T.test("the policy's sample_rate is the root's evaluation_config rate when given", function()
  local rate
  setup { sample_rate = 0.25, sampling_policy = function(t) rate = t.sample_rate end }
  trace({ evaluation_config = { sample_rate = 0.75 } })
  T.eq(rate, 0.75)
end)

T.test("the policy sees an identity returned by an identity function", function()
  local user
  setup { sampling_policy = function(t) user = t.identity.user and t.identity.user.id end }
  trace({ identity = function(req) return { user = { id = req.user } } end }, nil, { user = "u-42" })
  T.eq(user, "u-42")
end)

T.test("the policy's table iterates with pairs and ipairs", function()
  local keys, evals = {}, {}
  setup {
    evaluators = { "a", "b" },
    sampling_policy = function(t)
      for k in pairs(t) do keys[#keys + 1] = k end
      for _, e in ipairs(t.evaluators) do evals[#evals + 1] = e end
    end,
  }
  trace({ metadata = { k = 1 } })
  table.sort(keys)
  T.eq(keys, { "evaluators", "feature_slug", "identity", "metadata", "name", "sample_rate", "trace_id" })
  T.eq(evals, { "a", "b" })
end)

-- ---- results ---------------------------------------------------------------------------

T.test("a policy returning true evaluates every span of the trace despite rate 0", function()
  local mem = setup { sample_rate = 0.0, sampling_policy = function() return true end }
  trace({}, function() basalt.observe("child", function() end) end)
  T.eq(mem:find("request").attributes[EVAL], true)
  T.eq(mem:find("child").attributes[EVAL], true)
end)

T.test("a policy returning false evaluates nothing despite rate 1", function()
  local mem = setup { sample_rate = 1.0, sampling_policy = function() return false end }
  trace({ evaluation_config = { sample_rate = 1.0 } }, function() basalt.observe("child", function() end) end)
  T.eq(mem:find("request").attributes[EVAL], false)
  T.eq(mem:find("child").attributes[EVAL], false)
end)

T.test("a policy returning nil leaves the decision to the configured rate", function()
  local mem = setup { sample_rate = 1.0, sampling_policy = function() return nil end }
  trace({})
  T.eq(mem:find("request").attributes[EVAL], true)
  mem = setup { sample_rate = 0.0, sampling_policy = function() end }
  trace({})
  T.eq(mem:find("request").attributes[EVAL], false)
  mem = setup { sample_rate = 0.0, sampling_policy = function() end }
  trace({ evaluation_config = { sample_rate = 1.0 } })
  T.eq(mem:find("request").attributes[EVAL], true)
end)

T.test("a policy returning a rate decides from the trace id (rates 1 and 0 are absolute)", function()
  local r = 1.0
  local mem = setup { sample_rate = 0.0, sampling_policy = function() return r end }
  for i = 1, 50 do trace({ name = "one" .. i }) end
  r = 0.0
  for i = 1, 50 do trace({ name = "zero" .. i }) end
  r = 0.5
  for i = 1, 200 do trace({ name = "half" .. i }) end
  for _, s in ipairs(mem:spans()) do
    if s.name:find("^one") then T.eq(s.attributes[EVAL], true, s.name) end
    if s.name:find("^zero") then T.eq(s.attributes[EVAL], false, s.name) end
    if s.name:find("^half") then
      T.eq(s.attributes[EVAL], expected_decision(s.trace_id, 0.5), s.name .. " " .. s.trace_id)
    end
  end
end)

T.test("the policy runs once per trace, at its root, never for nested start_observe", function()
  local calls = 0
  local mem = setup { sampling_policy = function() calls = calls + 1; return true end }
  for _ = 1, 3 do
    trace({}, function()
      basalt.observe("child", function()
        trace({ name = "nested", feature_slug = "inner", evaluation_config = { sample_rate = 0.0 } },
          function() basalt.observe("deep", function() end) end)
      end)
    end)
  end
  T.eq(calls, 3)
  T.eq(mem:find("nested").attributes[EVAL], true, "nested inherits the root's decision")
  T.eq(mem:find("deep").attributes[EVAL], true)
end)

T.test("an experiment forces evaluation and the policy is not called", function()
  local calls = 0
  local mem = setup { sample_rate = 0.0, sampling_policy = function() calls = calls + 1; return false end }
  trace({ experiment = "exp-1" }, function() basalt.observe("child", function() end) end)
  trace({ name = "rich", experiment = { id = "exp-2", name = "A/B", feature_slug = "checkout" } })
  T.eq(calls, 0)
  T.eq(mem:find("request").attributes[EVAL], true)
  T.eq(mem:find("child").attributes[EVAL], true)
  T.eq(mem:find("rich").attributes[EVAL], true)
  trace({ name = "no-exp", experiment = "" })
  T.eq(calls, 1, "an empty experiment is no experiment: the policy decides")
  T.eq(mem:find("no-exp").attributes[EVAL], false)
end)

T.test("global metadata does not change the configured rate", function()
  local mem = setup { metadata = { env = "prod" }, sample_rate = 1.0, sampling_policy = function() end }
  trace({})
  T.eq(mem:find("request").attributes[EVAL], true)
  T.eq(mem:find("request").attributes["basalt.meta.env"], "prod")
end)

-- ---- failing, runaway and misbehaving policies ----------------------------------------

T.test("a policy in an infinite loop returns control within the budget and the configured rate decides", function()
  local mem, logs = setup { sample_rate = 1.0, sampling_policy = function() while true do end end }
  local t0 = os.clock()
  local ran = trace({}, function() return "block ran" end)
  T.eq(ran, "block ran")
  T.truthy(os.clock() - t0 < 10, "returned quickly")
  T.eq(mem:find("request").attributes[EVAL], true)
  trace({ name = "again" })
  T.eq(mem:find("again").attributes[EVAL], true)
  local warned = matching(logs, "instruction budget")
  T.eq(#warned, 1, "one warning for both traces")
  T.truthy(warned[1].msg:find("sampling policy", 1, true), "names the policy")
  T.truthy(warned[1].msg:find("stack traceback", 1, true), "carries a traceback")
  mem = setup { sample_rate = 0.0, sampling_policy = function() while true do end end }
  trace({})
  T.eq(mem:find("request").attributes[EVAL], false)
end)

T.test("a runaway policy that catches the budget error with pcall is still stopped", function()
  local mem = setup {
    sample_rate = 1.0,
    sampling_policy = function()
      while true do pcall(function() while true do end end) end
    end,
  }
  local t0 = os.clock()
  trace({})
  T.truthy(os.clock() - t0 < 10, "returned quickly")
  T.eq(mem:find("request").attributes[EVAL], true)
end)

T.test("a runaway policy cannot escape the budget through coroutines it creates", function()
  local mem = setup {
    sample_rate = 1.0,
    sampling_policy = function()
      while true do
        coroutine.wrap(function() for _ = 1, 50 do end end)()
      end
    end,
  }
  local t0 = os.clock()
  trace({})
  T.truthy(os.clock() - t0 < 10, "returned quickly")
  T.eq(mem:find("request").attributes[EVAL], true)
end)

T.test("policy_instruction_limit sets the budget", function()
  local function policy()
    local n = 0
    for i = 1, 20000 do n = n + i end
    return n > 0
  end
  local mem = setup { sample_rate = 0.0, policy_instruction_limit = 1000, sampling_policy = policy }
  trace({ name = "small-budget" })
  T.eq(mem:find("small-budget").attributes[EVAL], false, "cut off: the rate decides")
  mem = setup { sample_rate = 0.0, policy_instruction_limit = 10000000, sampling_policy = policy }
  trace({ name = "large-budget" })
  T.eq(mem:find("large-budget").attributes[EVAL], true, "completed: the policy decides")
end)

T.test("the default budget lets a real policy finish and stops a long one", function()
  local iterations
  local mem = setup {
    sample_rate = 0.0,
    sampling_policy = function()
      local n = 0
      for i = 1, iterations do n = n + i end
      return true
    end,
  }
  iterations = 1000
  trace({ name = "short" })
  iterations = 10000000
  trace({ name = "long" })
  T.eq(mem:find("short").attributes[EVAL], true)
  T.eq(mem:find("long").attributes[EVAL], false)
end)

T.test("init rejects a bad sampling_policy or policy_instruction_limit", function()
  T.raises("sampling_policy", basalt.init, { sampling_policy = 42 })
  T.raises("policy_instruction_limit", basalt.init, { policy_instruction_limit = 0 })
  T.raises("policy_instruction_limit", basalt.init, { policy_instruction_limit = "many" })
end)

T.test("a policy that raises is logged once per distinct error, not once per trace, with its traceback", function()
  local which = "first"
  local mem, logs = setup {
    sample_rate = 1.0,
    sampling_policy = function() error("policy-boom-" .. which) end,
  }
  for _ = 1, 20 do trace({}, function() end) end
  which = "second"
  for _ = 1, 20 do trace({}, function() end) end
  T.eq(#matching(logs, "policy-boom-first"), 1)
  T.eq(#matching(logs, "policy-boom-second"), 1)
  local line = matching(logs, "policy-boom-first")[1]
  T.eq(line.level, "warn")
  T.truthy(line.msg:find("sampling policy", 1, true), "names the policy: " .. line.msg)
  T.truthy(line.msg:find("stack traceback", 1, true), "traceback: " .. line.msg)
  T.truthy(line.msg:find("test_policies.lua", 1, true), "traceback points at the policy: " .. line.msg)
  T.eq(#mem:spans(), 40, "every trace recorded")
  for _, s in ipairs(mem:spans()) do T.eq(s.attributes[EVAL], true) end
end)

T.test("a policy raising a non-string error is logged and ignored", function()
  local mem, logs = setup { sample_rate = 0.0, sampling_policy = function() error({ code = 7 }) end }
  trace({})
  T.eq(mem:find("request").attributes[EVAL], false)
  T.eq(#matching(logs, "error object is a table value"), 1)
end)

T.test("the traced block runs and returns normally when the policy fails", function()
  setup { sampling_policy = function() error("policy-fails-block-runs") end }
  local a, b = trace({}, function(_, x) return x, "second" end, "first")
  T.eq({ a, b }, { "first", "second" })
end)

T.test("a wrong return type is logged and ignored", function()
  local value
  local mem, logs = setup { sample_rate = 1.0, sampling_policy = function() return value end }
  local cases = {
    { "yes-please", "returned a string" },
    { { true }, "returned a table" },
    { 1.5, "out-of-range number 1.5" },
    { -0.25, "out-of-range number -0.25" },
  }
  for i, c in ipairs(cases) do
    value = c[1]
    trace({ name = "case" .. i })
    T.eq(mem:find("case" .. i).attributes[EVAL], true, "configured rate decides for case " .. i)
    local warned = matching(logs, c[2])
    T.eq(#warned, 1, c[2])
    T.truthy(warned[1].msg:find("sampling policy", 1, true), "names the policy: " .. warned[1].msg)
    T.truthy(warned[1].msg:find("test_policies.lua:", 1, true), "says where the policy is: " .. warned[1].msg)
    T.truthy(warned[1].msg:find("stack traceback", 1, true), "carries a traceback: " .. warned[1].msg)
  end
end)

T.test("a policy cannot yield, not even inside a coroutine", function()
  local mem, logs = setup { sample_rate = 1.0, sampling_policy = function() coroutine.yield("nope") return false end }
  local co = coroutine.wrap(function()
    local r = trace({}, function() return "inside" end)
    return "finished " .. r
  end)
  T.eq(co(), "finished inside", "the yield did not suspend the caller's coroutine")
  T.eq(mem:find("request").attributes[EVAL], true, "configured rate decides")
  T.eq(#matching(logs, "yield"), 1)
end)

T.test("a policy cannot mutate the trace through its argument", function()
  local attempts = {}
  local metadata = { plan = "free" }
  local mem = setup {
    sampling_policy = function(t)
      local function try(what, fn) attempts[what] = pcall(fn) end
      try("name", function() t.name = "renamed" end)
      try("new key", function() t.extra = 1 end)
      try("identity", function() t.identity.user.id = "intruder" end)
      try("metadata", function() t.metadata.plan = "enterprise" end)
      try("evaluators", function() table.insert(t.evaluators, "injected") end)
      try("setmetatable", function() setmetatable(t, nil) end)
      rawset(t, "feature_slug", "rawset") -- lands on the view, never on the trace
      rawset(t.metadata, "plan", "rawset")
      return true
    end,
  }
  trace({ identity = { user = { id = "u-1" } }, metadata = metadata, evaluators = { "own" } },
    function() basalt.observe("child", function() end) end)
  T.eq(attempts, { name = false, ["new key"] = false, identity = false, metadata = false,
    evaluators = false, setmetatable = false })
  local root = mem:find("request")
  T.eq(root.attributes["basalt.span.feature_slug"], "checkout")
  T.eq(root.attributes["basalt.user.id"], "u-1")
  T.eq(root.attributes["basalt.span.evaluators"], { "own" })
  T.eq(root.attributes["basalt.metadata"], '{"plan":"free"}')
  T.eq(mem:find("child").attributes["basalt.span.feature_slug"], "checkout")
  T.eq(metadata, { plan = "free" }, "the caller's metadata table is untouched")
  T.eq(root.attributes[EVAL], true, "the policy's answer still counts")
end)

T.test("a view kept after the call answers only with what the policy read", function()
  local kept, kept_identity
  setup { sampling_policy = function(t)
    kept, kept_identity = t, t.identity
    return t.feature_slug == "checkout"
  end }
  trace({ identity = { user = { id = "u-1" } }, metadata = { plan = "pro" } })
  collectgarbage()
  T.eq(kept.feature_slug, "checkout", "read during the call")
  T.eq(kept.name, nil, "not read during the call: the input is gone")
  T.eq(kept.metadata, nil)
  T.eq(kept_identity.user, nil)
  T.raises("read-only", function() kept.name = "x" end)
end)

-- ---- determinism and distribution -------------------------------------------------------

T.test("with rate r over 10,000 traces the fraction decided true is within 2 points of r", function()
  local mem = setup { sample_rate = 0.0, sampling_policy = function(t) return t.metadata.rate end }
  for _, r in ipairs({ 0.1, 0.5, 0.9 }) do
    local yes = 0
    for _ = 1, 10000 do
      trace({ metadata = { rate = r } })
      local s = mem:spans()[1]
      if s.attributes[EVAL] then yes = yes + 1 end
      T.eq(s.attributes[EVAL], expected_decision(s.trace_id, r), "TraceIdRatioBased for " .. s.trace_id)
      mem:clear()
    end
    T.near(yes / 10000, r, 0.02, "fraction at rate " .. r)
  end
end)

T.test("the configured rate without a policy follows the same trace-id rule", function()
  local mem = setup { sample_rate = 0.3 }
  local yes = 0
  for _ = 1, 10000 do
    trace({})
    local s = mem:spans()[1]
    if s.attributes[EVAL] then yes = yes + 1 end
    T.eq(s.attributes[EVAL], expected_decision(s.trace_id, 0.3), s.trace_id)
    mem:clear()
  end
  T.near(yes / 10000, 0.3, 0.02)
end)

-- Traces continued from fixed traceparent headers: every service that sees the
-- same trace id decides alike. Needs W3C extraction (src/core/propagation.c).
local function propagation_landed()
  local dir = os.getenv("BASALT_SOURCE_DIR")
  local f = dir and io.open(dir .. "/src/core/propagation.c", "r")
  if f then f:close() return true end
  return false
end

local FIXED_IDS = {
  "4bf92f3577b34da6a3ce929d0e0e4736", "0af7651916cd43dd8448eb211c80319c",
  "00000000000000000000000000000001", "ffffffffffffffffffffffffffffffff",
  "11111111111111111080000000000000", "22222222222222222200000000000000",
  "3333333333333333337fffffffffffff", "deadbeefdeadbeefdeadbeefdeadbeef",
  "0123456789abcdef0123456789abcdef", "fedcba9876543210fedcba9876543210",
}

local function continued(trace_id, name)
  local ctx = basalt.extract { traceparent = "00-" .. trace_id .. "-00f067aa0ba902b7-01" }
  T.truthy(ctx, "extract accepted the traceparent for " .. trace_id)
  trace({ name = name, parent = ctx })
end

T.test("the same trace id (continued from fixed traceparent headers) always decides the same", function()
  if not propagation_landed() then
    io.stderr:write("SKIP the W3C propagation component has not landed (src/core/propagation.c)\n")
    return
  end
  local rates = { 0.05, 0.3, 0.5, 0.7, 0.95 }
  local seen_ids = {}
  local mem = setup { sampling_policy = function(t)
    seen_ids[#seen_ids + 1] = t.trace_id
    return t.metadata and t.metadata.rate or tonumber(t.name:match("@(.*)$"))
  end }
  for round = 1, 3 do
    for _, id in ipairs(FIXED_IDS) do
      for _, r in ipairs(rates) do continued(id, ("%s#%d@%s"):format(id, round, r)) end
    end
  end
  for _, s in ipairs(mem:spans()) do
    local id, r = s.name:match("^(%x+)#%d@(.*)$")
    r = tonumber(r)
    T.eq(s.trace_id, id, "continued the remote trace id")
    T.eq(s.attributes[EVAL], expected_decision(id, r), s.name)
  end
  T.eq(seen_ids[1], FIXED_IDS[1], "the policy sees the remote trace id")
  -- The same headers with the configured rate instead of a policy decide alike too.
  mem = setup { sample_rate = 0.5 }
  for _, id in ipairs(FIXED_IDS) do continued(id, id) end
  for _, s in ipairs(mem:spans()) do
    T.eq(s.attributes[EVAL], expected_decision(s.name, 0.5), s.name)
  end
end)

T.run()

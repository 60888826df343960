-- Evaluators, evaluation config and experiments (semantics.md 10.1-10.4 and
-- Decisions 3, 4 and 5).
local T = require("testlib")
local basalt = require("basalt")

local EVALS = "basalt.span.evaluators"
local CONFIG = "basalt.span.evaluation.config"
local EVAL = "basalt.span.should_evaluate"
local EXP_ID, EXP_NAME, EXP_SLUG = "basalt.experiment.id", "basalt.experiment.name",
  "basalt.experiment.feature_slug"

local function setup(opts)
  opts = opts or {}
  basalt.stats()
  local mem = basalt.memory_exporter()
  opts.exporters = { mem }
  opts.logger = function() end
  basalt.init(opts)
  return mem
end

local function root(opts, fn, ...)
  opts.name = opts.name or "root"
  opts.feature_slug = opts.feature_slug or "support"
  return basalt.start_observe(opts, fn or function() end, ...)
end

-- ---- the union of Decisions 4 ------------------------------------------------------------

T.test("evaluators are the union in order: global, with_evaluators outer first, then the span's own", function()
  local mem = setup { evaluators = { "g1", "g2" } }
  basalt.with_evaluators({ "w1", "g1" }, function()
    basalt.with_evaluators({ "w2", "w1" }, function()
      root({ evaluators = { "own1", "w2" } }, function(span)
        span:add_evaluator("own2")
        span:add_evaluator("g2")
        basalt.observe({ name = "child", evaluators = { "c1" } }, function(child)
          child:add_evaluators("c2", "c1")
        end)
      end)
    end)
  end)
  T.eq(mem:find("root").attributes[EVALS], { "g1", "g2", "w1", "w2", "own1", "own2" })
  T.eq(mem:find("child").attributes[EVALS], { "g1", "g2", "w1", "w2", "c1", "c2" },
    "a span's own evaluators do not propagate to its children")
end)

T.test("slugs are trimmed before they are compared", function()
  local mem = setup { evaluators = { " g1 " } }
  basalt.with_evaluators({ "\tw1  ", "g1" }, function()
    root({ evaluators = { "  own ", "w1 " } }, function(span) span:add_evaluator(" own") end)
  end)
  T.eq(mem:find("root").attributes[EVALS], { "g1", "w1", "own" })
end)

T.test("with_evaluators propagates into every span of its block and is gone after it", function()
  local mem = setup()
  root({}, function()
    basalt.with_evaluators("quality", function()
      basalt.observe("inside", function()
        basalt.observe("deeper", function() end)
      end)
      root({ name = "nested-trace" }, function() end)
    end)
    basalt.observe("after", function() end)
  end)
  T.eq(mem:find("inside").attributes[EVALS], { "quality" })
  T.eq(mem:find("deeper").attributes[EVALS], { "quality" })
  T.eq(mem:find("nested-trace").attributes[EVALS], { "quality" })
  T.eq(mem:find("after").attributes[EVALS], nil)
  T.eq(mem:find("root").attributes[EVALS], nil)
end)

T.test("with_evaluators restores the context when its block raises", function()
  local mem = setup()
  root({}, function()
    local err = { "same table" }
    local ok, got = pcall(basalt.with_evaluators, { "e" }, function() error(err) end)
    T.falsy(ok)
    T.eq(rawequal(got, err), true, "the very same error value")
    basalt.observe("after", function() end)
  end)
  T.eq(mem:find("after").attributes[EVALS], nil)
end)

T.test("with_evaluators passes the block's arguments and returns its results", function()
  setup()
  local a, b = basalt.with_evaluators({ "e" }, function(x, y) return y, x end, 1, 2)
  T.eq({ a, b }, { 2, 1 })
end)

T.test("basalt.add_evaluator writes the current span only", function()
  local mem = setup()
  root({}, function()
    basalt.observe("current", function()
      basalt.add_evaluator("just-here")
      basalt.observe("child", function() end)
    end)
  end)
  T.eq(mem:find("current").attributes[EVALS], { "just-here" })
  T.eq(mem:find("child").attributes[EVALS], nil)
  T.eq(mem:find("root").attributes[EVALS], nil)
end)

T.test("global evaluators reach every span of every trace", function()
  local mem = setup { evaluators = "everywhere" }
  root({}, function() basalt.observe("child", function() end) end)
  T.eq(mem:find("root").attributes[EVALS], { "everywhere" })
  T.eq(mem:find("child").attributes[EVALS], { "everywhere" })
end)

T.test("evaluators are written as a string array", function()
  local mem = setup()
  root({ evaluators = { "a", "b" } })
  local v = mem:find("root").attributes[EVALS]
  T.eq(type(v), "table")
  T.eq(v, { "a", "b" })
end)

-- ---- specification shapes (10.1, Decisions 3) ----------------------------------------------

local shapes = {
  { "a bare string is one evaluator", "helpfulness", { "helpfulness" } },
  { "a map with slug is one evaluator", { slug = "toxicity" }, { "toxicity" } },
  { "a map with slug and metadata", { slug = "toxicity", metadata = { threshold = 0.5 } }, { "toxicity" } },
  { "a map's slug may be a number", { slug = 7 }, { "7" } },
  { "a list of strings and maps", { "a", { slug = "b" }, "c" }, { "a", "b", "c" } },
  { "nested lists are flattened", { { "a", { "b", { { slug = "c" } } } }, "d" }, { "a", "b", "c", "d" } },
  { "duplicates are dropped keeping the first", { "a", "b", "a", { slug = " b " } }, { "a", "b" } },
  { "an empty list is no evaluators", {}, nil },
}

for _, case in ipairs(shapes) do
  T.test("evaluator spec: " .. case[1], function()
    for _, form in ipairs({ "start_observe", "observe", "with_evaluators", "add_evaluator", "init" }) do
      local mem
      if form == "init" then
        mem = setup { evaluators = case[2] }
        root({ name = "x" })
      else
        mem = setup()
        root({ name = form == "start_observe" and "x" or "root",
               evaluators = form == "start_observe" and case[2] or nil }, function()
          if form == "observe" then
            basalt.observe({ name = "x", evaluators = case[2] }, function() end)
          elseif form == "with_evaluators" then
            basalt.with_evaluators(case[2], function() basalt.observe("x", function() end) end)
          elseif form == "add_evaluator" then
            basalt.observe("x", function(span) span:add_evaluator(case[2]) end)
          end
        end)
      end
      T.eq(mem:find("x").attributes[EVALS], case[3], form)
    end
  end)
end

local bad = {
  { "", "Evaluator slug must be a non-empty string." },
  { "   ", "Evaluator slug must be a non-empty string." },
  { { "ok", " " }, "Evaluator slug must be a non-empty string." },
  { { slug = "" }, "Evaluator slug must be a non-empty string." },
  { { slug = "  " }, "Evaluator slug must be a non-empty string." },
  { { name = "no slug" }, "Evaluator mapping must include a 'slug' key." },
  { { { metadata = {} } }, "Evaluator mapping must include a 'slug' key." },
  { { slug = "x", metadata = "not a map" }, "Evaluator metadata must be a mapping." },
  { 42, "Unsupported evaluator specification: 42" },
  { { true }, "Unsupported evaluator specification: true" },
}

T.test("invalid evaluator specs raise the 10.1 messages before any span opens", function()
  for _, case in ipairs(bad) do
    local mem = setup()
    local ran = false
    T.raises(case[2], basalt.start_observe, { name = "bad", feature_slug = "f", evaluators = case[1] },
      function() ran = true end)
    T.falsy(ran, "start_observe block not run")
    T.eq(#mem:spans(), 0, "no span")
    root({}, function(outer)
      T.raises(case[2], basalt.observe, { name = "bad-child", evaluators = case[1] }, function() ran = true end)
      T.raises(case[2], basalt.with_evaluators, case[1], function() ran = true end)
      T.raises(case[2], outer.add_evaluator, outer, case[1])
      T.raises(case[2], basalt.add_evaluator, case[1])
      T.eq(basalt.current_span():span_id(), outer:span_id(), "context restored")
      basalt.observe("after", function() end)
    end)
    T.falsy(ran, "no block ran")
    T.eq(mem:find("bad-child"), nil)
    T.eq(mem:find("after").attributes[EVALS], nil, "nothing left in the context")
    T.raises(case[2], basalt.init, { evaluators = case[1] })
  end
end)

-- ---- evaluation_config (10.3) ---------------------------------------------------------------

T.test("evaluation_config is written on the root as basalt.span.evaluation.config JSON", function()
  local mem = setup()
  root({ evaluation_config = { sample_rate = 0.25 } }, function() basalt.observe("child", function() end) end)
  T.eq(mem:find("root").attributes[CONFIG], '{"sample_rate":0.25}')
  T.eq(mem:find("child").attributes[CONFIG], nil, "not propagated")
  mem = setup()
  root({ evaluation_config = { sample_rate = 1 } })
  T.eq(mem:find("root").attributes[CONFIG], '{"sample_rate":1}')
end)

T.test("evaluation_config's sample_rate drives the root decision over the global rate", function()
  local mem = setup { sample_rate = 0.0 }
  root({ name = "one", evaluation_config = { sample_rate = 1.0 } }, function() basalt.observe("c1", function() end) end)
  T.eq(mem:find("one").attributes[EVAL], true)
  T.eq(mem:find("c1").attributes[EVAL], true)
  mem = setup { sample_rate = 1.0 }
  root({ name = "zero", evaluation_config = { sample_rate = 0.0 } }, function() basalt.observe("c0", function() end) end)
  T.eq(mem:find("zero").attributes[EVAL], false)
  T.eq(mem:find("c0").attributes[EVAL], false)
  mem = setup { sample_rate = 1.0 }
  root({ name = "no-rate", evaluation_config = {} })
  T.eq(mem:find("no-rate").attributes[EVAL], true, "a config without a rate leaves the global rate")
end)

T.test("without any configuration nothing is evaluated", function()
  local mem = setup()
  for i = 1, 20 do root({ name = "t" .. i }) end
  for _, s in ipairs(mem:spans()) do T.eq(s.attributes[EVAL], false) end
end)

T.test("an evaluation_config rate outside [0, 1] raises before any span opens", function()
  local mem = setup()
  for _, r in ipairs({ -0.1, 1.5, "half" }) do
    T.raises("sample_rate must be within [0.0, 1.0].", basalt.start_observe,
      { name = "r", feature_slug = "f", evaluation_config = { sample_rate = r } }, function() end)
  end
  T.eq(#mem:spans(), 0)
  T.falsy(basalt.current_span():is_recording())
end)

-- ---- experiments (10.4, Decisions 3 and 5) ----------------------------------------------------

T.test("a string experiment is written on every span of the trace and forces evaluation", function()
  local mem = setup { sample_rate = 0.0 }
  root({ experiment = "exp-42" }, function()
    basalt.observe("child", function() basalt.observe("grandchild", function() end) end)
  end)
  for _, name in ipairs({ "root", "child", "grandchild" }) do
    local a = mem:find(name).attributes
    T.eq(a[EXP_ID], "exp-42", name)
    T.eq(a[EXP_NAME], nil, name)
    T.eq(a[EVAL], true, name)
  end
end)

T.test("a rich experiment keeps id, name and feature_slug on every span, in every form", function()
  local exp = { id = "exp-7", name = "Prompt B", feature_slug = "support" }
  local mem = setup()
  root({ experiment = exp }, function() basalt.observe("child", function() end) end)
  local wrapped = basalt.start_observe_wrap({ name = "wrapped", feature_slug = "f", experiment = exp },
    function() basalt.observe("wrapped-child", function() end) end)
  wrapped()
  for _, name in ipairs({ "root", "child", "wrapped", "wrapped-child" }) do
    local a = mem:find(name).attributes
    T.eq({ a[EXP_ID], a[EXP_NAME], a[EXP_SLUG], a[EVAL] }, { "exp-7", "Prompt B", "support", true }, name)
  end
end)

T.test("an empty experiment is no experiment", function()
  local mem = setup { sample_rate = 0.0 }
  root({ name = "empty", experiment = "" })
  root({ name = "empty-id", experiment = { id = "" } })
  for _, name in ipairs({ "empty", "empty-id" }) do
    T.eq(mem:find(name).attributes[EXP_ID], nil, name)
    T.eq(mem:find(name).attributes[EVAL], false, name)
  end
end)

T.test("a nested start_observe never re-decides, whatever its experiment or config", function()
  local mem = setup { sample_rate = 0.0 }
  root({}, function()
    root({ name = "nested", experiment = "exp-inner", evaluation_config = { sample_rate = 1.0 } }, function()
      basalt.observe("inner-child", function() end)
    end)
    basalt.observe("after", function() end)
  end)
  T.eq(mem:find("root").attributes[EVAL], false)
  T.eq(mem:find("nested").attributes[EVAL], false, "inherits the root's decision")
  T.eq(mem:find("inner-child").attributes[EVAL], false)
  T.eq(mem:find("nested").attributes[EXP_ID], "exp-inner", "but its experiment applies to its subtree")
  T.eq(mem:find("inner-child").attributes[EXP_ID], "exp-inner")
  T.eq(mem:find("after").attributes[EXP_ID], nil, "and is gone after it")
  T.eq(mem:find("root").attributes[EXP_ID], nil)
  -- and the other way: a root experiment forces true and nested scopes keep it
  mem = setup { sample_rate = 0.0 }
  root({ experiment = "exp-outer" }, function()
    root({ name = "nested", evaluation_config = { sample_rate = 0.0 } }, function() end)
  end)
  T.eq(mem:find("nested").attributes[EVAL], true)
  T.eq(mem:find("nested").attributes[EXP_ID], "exp-outer", "inherited")
end)

T.test("span:set_experiment and set_evaluation_config act on root spans only and do not re-decide", function()
  local mem = setup { sample_rate = 0.0 }
  root({}, function(span)
    span:set_experiment("late-exp")
    span:set_evaluation_config({ sample_rate = 1.0 })
    basalt.observe("child", function(child)
      child:set_experiment("child-exp")
      child:set_evaluation_config({ sample_rate = 1.0 })
    end)
  end)
  local r, c = mem:find("root").attributes, mem:find("child").attributes
  T.eq(r[EXP_ID], "late-exp")
  T.eq(r[CONFIG], '{"sample_rate":1.0}')
  T.eq(r[EVAL], false, "decided at start")
  T.eq(c[EXP_ID], nil)
  T.eq(c[CONFIG], nil)
end)

T.run()

-- A sampling policy keyed on the feature slug, and what experiments do.
--
--   build/basalt-lua examples/policy_feature.lua
--
-- Each feature has its own evaluation rate; a feature the table does not know
-- falls back to the configured sample_rate (the policy returns nil). A trace
-- that belongs to an experiment is always evaluated: the experiment forces the
-- decision before any policy is asked (semantics Decisions 5), so the policy
-- below never sees those traces, and a nested start_observe never re-decides.
local basalt = require("basalt")

local RATES = {
  ["checkout-assistant"] = 1.0, -- new and risky: evaluate everything
  ["support-chat"] = 0.25,
  ["search-suggestions"] = 0.0, -- high volume, evaluated offline instead
}

local asked = {}
local function feature_policy(t)
  asked[t.feature_slug] = (asked[t.feature_slug] or 0) + 1
  -- t.experiment is part of the table, but a trace with an experiment is
  -- decided (true) before the policy runs, so this branch is only a safeguard.
  if t.experiment then return true end
  return RATES[t.feature_slug] -- nil for an unknown feature: sample_rate decides
end

local spans = basalt.memory_exporter()
basalt.init {
  service_name = "policy-feature-example",
  exporters = { spans },
  sample_rate = 0.05,
  sampling_policy = feature_policy,
}

local features = { "checkout-assistant", "support-chat", "search-suggestions", "onboarding-tips" }
local N = 400
for _, feature in ipairs(features) do
  for i = 1, N do
    -- one trace in ten is part of the "short-answers" experiment
    local experiment = i % 10 == 0 and { id = "exp-short-answers", name = "Short answers",
      feature_slug = feature } or nil
    basalt.start_observe({ name = "request", feature_slug = feature, experiment = experiment },
      function()
        basalt.observe({ name = "llm", kind = "generation" }, function() end)
      end)
  end
end

local rows = {}
for _, s in ipairs(spans:spans()) do
  local a = s.attributes
  if a["basalt.root"] then
    local key = a["basalt.span.feature_slug"] .. (a["basalt.experiment.id"] and " +exp" or "")
    local row = rows[key] or { traces = 0, evaluated = 0 }
    rows[key] = row
    row.traces = row.traces + 1
    if a["basalt.span.should_evaluate"] then row.evaluated = row.evaluated + 1 end
  end
end

print(string.format("%-24s %6s %7s %10s %12s", "feature", "rate", "traces", "evaluated", "policy asked"))
for _, feature in ipairs(features) do
  for _, key in ipairs({ feature, feature .. " +exp" }) do
    local row = rows[key]
    local exp = key ~= feature
    local rate = exp and "exp" or (RATES[feature] and string.format("%.2f", RATES[feature]) or "0.05*")
    print(string.format("%-24s %6s %7d %10d %12s", key, rate, row.traces, row.evaluated,
      exp and "-" or tostring(asked[feature] or 0)))
  end
end
print("* no entry in RATES: the policy returned nil and init{ sample_rate = 0.05 } decided")
print("+exp: traces of the experiment, always evaluated, the policy was not asked")
basalt.shutdown()

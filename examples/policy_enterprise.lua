-- A sampling policy: evaluate every trace of enterprise organisations and 10%
-- of the others.
--
--   build/basalt-lua examples/policy_enterprise.lua
--
-- The policy runs once per trace, when its root span starts, and sees a
-- read-only table: trace_id, name, feature_slug, identity, experiment,
-- metadata, evaluators, sample_rate. It returns true / false for the whole
-- trace, a rate in [0, 1], or nil to let the configured rate decide. A rate is
-- turned into a decision from the trace id, so every service that sees this
-- trace decides the same way.
local basalt = require("basalt")

-- Who is an enterprise customer: here a fixed set; in a real service this is
-- a table loaded at start-up (the policy must stay cheap and must not do I/O).
local ENTERPRISE = { ["org-acme"] = true, ["org-globex"] = true }

local function enterprise_policy(t)
  local org = t.identity.organization
  if org and ENTERPRISE[org.id] then return true end
  if t.metadata and t.metadata.plan == "enterprise" then return true end
  return 0.10
end

local spans = basalt.memory_exporter()
basalt.init {
  service_name = "policy-enterprise-example",
  exporters = { spans },
  evaluators = { "helpfulness" },
  sampling_policy = enterprise_policy,
}

local customers = {
  { id = "org-acme", name = "Acme Corp" },
  { id = "org-globex", name = "Globex" },
  { id = "org-tiny", name = "Tiny Startup" },
  { id = "org-hobby", name = "Hobby Project" },
}

local function answer_question(span, question)
  basalt.observe({ name = "retrieve", kind = "retrieval" }, function(s) s:set_query(question) end)
  return basalt.observe({ name = "generate", kind = "generation" }, function(s)
    s:set_model("gpt-4o-mini")
    return "an answer to " .. question
  end)
end

local N = 2000
for i = 1, N do
  local org = customers[(i - 1) % #customers + 1]
  basalt.start_observe({
    name = "answer_question",
    feature_slug = "support-chat",
    identity = { user = { id = "user-" .. i }, organization = org },
  }, answer_question, "question " .. i)
end

-- Tally the decisions per organisation (every span of a trace carries it).
local tally = {}
for _, s in ipairs(spans:spans()) do
  if s.attributes["basalt.root"] then
    local org = s.attributes["basalt.organization.id"]
    local row = tally[org] or { traces = 0, evaluated = 0 }
    tally[org] = row
    row.traces = row.traces + 1
    if s.attributes["basalt.span.should_evaluate"] then row.evaluated = row.evaluated + 1 end
  end
end

print(string.format("%-12s %-11s %7s %10s", "organisation", "plan", "traces", "evaluated"))
for _, org in ipairs(customers) do
  local row = tally[org.id]
  print(string.format("%-12s %-11s %7d %10d (%.1f%%)", org.id,
    ENTERPRISE[org.id] and "enterprise" or "other", row.traces, row.evaluated,
    100 * row.evaluated / row.traces))
end
basalt.shutdown()

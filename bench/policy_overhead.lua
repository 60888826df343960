-- What a Lua sampling policy adds to each trace: ns per trace (one root span
-- with one child) with no policy, with a simple policy keyed on the feature
-- slug, and with the enterprise policy of examples/policy_enterprise.lua
-- (identity and metadata lookups), reported as ratios to the no-policy run.
--
--   build/basalt-lua bench/policy_overhead.lua [traces]
--
-- Not a test: run it with LUA_PATH / LUA_CPATH pointing at the build tree (see
-- tests/CMakeLists.txt, BASALT_LUA_ENV). No exporter is configured (the spans
-- are dropped at end), so the figures are the application thread's cost.
local basalt = require("basalt")

local N = tonumber(arg and arg[1]) or 100000
local ROUNDS = 5

local policies = {
  ["no policy"] = false,
  ["simple policy"] = function(t)
    if t.feature_slug == "checkout" then return true end
    return 0.1
  end,
  ["enterprise policy"] = function(t)
    local org = t.identity.organization
    if org and (org.id == "org-acme" or org.id == "org-globex") then return true end
    if t.metadata and t.metadata.plan == "enterprise" then return true end
    return 0.10
  end,
}
local order = { "no policy", "simple policy", "enterprise policy" }

local opts = {
  name = "request", feature_slug = "support-chat",
  identity = { user = { id = "u-1" }, organization = { id = "org-tiny" } },
  metadata = { plan = "free" },
}
local function child() end
local function block() basalt.observe("child", child) end

local function run_once(policy)
  basalt.init { exporters = {}, sample_rate = 0.1, sampling_policy = policy or nil }
  collectgarbage("collect")
  local t0 = os.clock()
  for _ = 1, N do basalt.start_observe(opts, block) end
  local dt = os.clock() - t0
  return dt * 1e9 / N
end

-- Interleave the variants and keep each one's best round: the least disturbed.
local best = {}
for _ = 1, ROUNDS do
  for _, name in ipairs(order) do
    local ns = run_once(policies[name])
    if not best[name] or ns < best[name] then best[name] = ns end
  end
end

print(("policy overhead, %d traces x %d rounds (best round), one root + one child span per trace")
  :format(N, ROUNDS))
local base = best["no policy"]
for _, name in ipairs(order) do
  print(("%-18s %8.0f ns/trace   ratio %.2f   added %6.0f ns"):format(name, best[name],
    best[name] / base, best[name] - base))
end
basalt.shutdown()

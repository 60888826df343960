-- The policy and identity examples run and print what they claim (so they
-- cannot rot): each one is run by the project's host, like a user would.
local T = require("testlib")

local host = assert(os.getenv("BASALT_HOST"), "BASALT_HOST is set by ctest")
local src = assert(os.getenv("BASALT_SOURCE_DIR"), "BASALT_SOURCE_DIR is set by ctest")

local function run(example)
  local p = assert(io.popen(("%q %q 2>&1"):format(host, src .. "/examples/" .. example)))
  local out = p:read("a")
  local ok, how, code = p:close()
  T.eq({ ok, how, code }, { true, "exit", 0 }, example .. " exit status; output:\n" .. out)
  return out
end

local function row(out, first)
  for line in out:gmatch("[^\n]+") do
    local fields = {}
    for f in line:gmatch("%S+") do fields[#fields + 1] = f end
    if fields[1] == first then return fields end
  end
  error("no row " .. first .. " in:\n" .. out)
end

T.test("policy_enterprise.lua evaluates every enterprise trace and about 10% of the others", function()
  local out = run("policy_enterprise.lua")
  for _, org in ipairs({ "org-acme", "org-globex" }) do
    local r = row(out, org)
    T.eq({ r[2], r[3], r[4] }, { "enterprise", "500", "500" }, org)
  end
  for _, org in ipairs({ "org-tiny", "org-hobby" }) do
    local r = row(out, org)
    T.eq(r[2], "other")
    local share = tonumber(r[4]) / tonumber(r[3])
    T.truthy(share > 0.03 and share < 0.2, org .. " share " .. share)
  end
end)

T.test("policy_feature.lua applies per-feature rates and experiments bypass the policy", function()
  local out = run("policy_feature.lua")
  T.eq(row(out, "checkout-assistant"), { "checkout-assistant", "1.00", "360", "360", "360" })
  T.eq(row(out, "search-suggestions"), { "search-suggestions", "0.00", "360", "0", "360" })
  local support = row(out, "support-chat")
  T.truthy(tonumber(support[4]) > 36 and tonumber(support[4]) < 144, "support-chat near 25%")
  for _, f in ipairs({ "checkout-assistant", "support-chat", "search-suggestions", "onboarding-tips" }) do
    local exp_row
    for line in out:gmatch("[^\n]+") do
      if line:find(f .. " +exp", 1, true) == 1 then exp_row = line end
    end
    T.truthy(exp_row and exp_row:find("exp%s+40%s+40%s+%-"), "experiment row of " .. f .. ": " .. tostring(exp_row))
  end
end)

T.test("identity_from_request.lua reads user and tenant from the headers", function()
  local out = run("identity_from_request.lua")
  T.truthy(out:find("POST /v1/answer  u-1001       Ann      t-acme     Acme", 1, true), out)
  T.truthy(out:find("POST /v1/answer  u-1002       -        t-globex", 1, true), out)
  T.truthy(out:find("POST /v1/answer  -            -        t-acme", 1, true), out)
  T.truthy(out:find("search_docs      u-1001       Ann      t-acme     Acme", 1, true), "children inherit")
  T.truthy(out:find("[warn] identity function failed and was ignored", 1, true), "the broken extractor is logged")
  T.truthy(out:find("200 ok (identity function failed, request served)", 1, true), out)
  local served = select(2, out:gsub("\n200 ", "\n200 ")) + (out:find("^200 ") and 1 or 0)
  T.eq(served, 6, "every request served")
end)

T.run()

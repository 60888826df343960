-- Prompt fetch cost with a cache hit, and how many requests the API sees.
--   LUA_PATH="build/lua/?.lua;tests/support/?.lua;;" LUA_CPATH="build/lua/?.so;;" \
--     build/basalt-lua bench/prompt_fetch.lua
-- Starts the mock Basalt API (Node), fetches one prompt once (the miss), then
-- times cache hits: plain, with variables (rendered per call), and inside a trace
-- (each get also records a prompt.get span; memory exporter, cleared as it goes).
local basalt = require("basalt")
local mock = require("mock_api").start()
local mem = basalt.memory_exporter()
basalt.init { api_url = mock.url, api_key = "bench-key", exporters = { mem } }

local function per_call_us(n, fn)
  fn() -- warm
  local t0 = os.clock()
  for _ = 1, n do fn() end
  return (os.clock() - t0) / n * 1e6
end

local N = 100000
local miss_t0 = os.clock()
assert(basalt.prompts.get("qa-system", { tag = "production" }))
local miss_us = (os.clock() - miss_t0) * 1e6

local plain = per_call_us(N, function() return basalt.prompts.get("qa-system", { tag = "production" }) end)
local vars = { question = "Where is my order?", company = { name = "Acme" },
  context = { { title = "Shipping", body = "3 days" } } }
local rendered = per_call_us(N, function()
  return basalt.prompts.get("qa-system", { tag = "production", variables = vars })
end)
local traced
local i = 0
basalt.start_observe({ name = "bench", feature_slug = "bench" }, function()
  traced = per_call_us(N, function()
    local p = basalt.prompts.get("qa-system", { tag = "production" })
    i = i + 1
    if i % 1000 == 0 then mem:clear() end
    return p
  end)
end)

-- Another API key empties the caches (they belong to one url + key): a cold start.
basalt.init { api_url = mock.url, api_key = "bench-key-2", exporters = { mem } }
mock:control { reset_stats = true }
for _ = 1, 1000 do assert(basalt.prompts.get("qa-system", { tag = "production" })) end
local seen = mock:stats().requests

print(string.format("first fetch (cache miss, HTTP to the mock): %.0f us CPU", miss_us))
print(string.format("cache hit, no variables:            %.2f us per get", plain))
print(string.format("cache hit, rendering 3 variables:   %.2f us per get", rendered))
print(string.format("cache hit inside a trace (+span):   %.2f us per get", traced))
print(string.format("requests the mock saw for 1,000 gets of the same prompt: %d", seen))
basalt.shutdown()
mock:stop()

-- basalt.prompts against the project's mock Basalt API (tests/support/mock_basalt_api.js):
-- requests, errors, caching and fallback, templates, tracing, and the API key's secrecy.
local T = require("testlib")
local basalt = require("basalt")
local mock = require("mock_api").start()

local mem = basalt.memory_exporter()
local logs = {}
local n = 0
local KEY_PREFIX = "sk-secret-key-"
local key

-- A fresh runtime per test. A new API key per test also empties the prompt caches
-- (they belong to one API url + key), so tests do not see each other's entries.
local function fresh(extra)
  mock:reset()
  mem:clear()
  logs = {}
  n = n + 1
  key = KEY_PREFIX .. n
  local opts = { api_url = mock.url, api_key = key, exporters = { mem },
    logger = function(level, msg) logs[#logs + 1] = { level = level, msg = msg } end }
  for k, v in pairs(extra or {}) do opts[k] = v end
  basalt.init(opts)
end

local function sleep(s) os.execute("sleep " .. s) end

local function requests() return mock:stats().requests end

-- Every string a span carries, for secrecy checks.
local function span_text()
  local parts = {}
  for _, s in ipairs(mem:spans()) do
    parts[#parts + 1] = s.name
    for k, v in pairs(s.attributes) do parts[#parts + 1] = k .. "=" .. tostring(v) end
    for _, e in ipairs(s.events or {}) do
      for k, v in pairs(e.attributes or {}) do parts[#parts + 1] = k .. "=" .. tostring(v) end
    end
    if s.status and s.status.message then parts[#parts + 1] = s.status.message end
  end
  return table.concat(parts, "\n")
end

local function log_text()
  local parts = {}
  for _, l in ipairs(logs) do parts[#parts + 1] = l.msg end
  return table.concat(parts, "\n")
end

local PROMPT_KEYS = { "basalt.prompt.slug", "basalt.prompt.version", "basalt.prompt.tag",
  "basalt.prompt.model.provider", "basalt.prompt.model.model", "basalt.prompt.from_cache" }

local QA_VARS = { question = "Where is my order?", company = { name = "Acme" },
  context = { { title = "Shipping", body = "3 days" } } }

---------------------------------------------------------------------------------------------
-- The prompt object and the request

T.test("get returns every prompt field of lua-api.md, variables substituted", function()
  fresh()
  local p, err = basalt.prompts.get("qa-system", { tag = "production", variables = QA_VARS })
  T.eq(err, nil)
  T.eq(p.slug, "qa-system")
  T.eq(p.version, "3")
  T.eq(p.tag, "production")
  T.eq(p.text, "Answer the question using the context.\nContext:\n- Shipping: 3 days\n" ..
    "Question: Where is my order?")
  T.eq(p.system_text, "You are the support assistant of Acme.")
  T.truthy(p.raw_text:find("{{ question }}", 1, true), "raw_text keeps the template")
  T.eq(p.raw_system_text, "You are the support assistant of {{ company.name }}.")
  T.eq(p.model.provider, "openai")
  T.eq(p.model.model, "gpt-4o-mini")
  T.eq(p.model.version, "latest")
  T.eq(p.model.parameters, { temperature = 0.2, max_length = 800, response_format = "text",
    top_p = 0.9, frequency_penalty = 0.0, presence_penalty = 0.0 })
  T.eq(math.type(p.model.parameters.max_length), "integer")
  T.eq(p.variables, QA_VARS)
  T.eq(p.tools, { { type = "function", ["function"] = { name = "search_docs" } } })
  T.eq(p.tool_choice, { type = "auto" })
  T.eq(p.from_cache, false)
  T.truthy(tostring(p):find("qa-system", 1, true), "tostring names the prompt")
end)

T.test("get sends GET /prompts/{slug} with version, tag and the Basalt headers", function()
  fresh()
  assert(basalt.prompts.get("qa-system", { version = 2, tag = "staging" }))
  local last = mock:stats().last
  T.eq(last.method, "GET")
  T.eq(last.path, "/prompts/qa-system")
  T.eq(last.query, "?version=2&tag=staging")
  T.eq(last.headers["authorization"], "Bearer " .. key)
  T.eq(last.headers["content-type"], "application/json")
  T.eq(last.headers["x-basalt-sdk-type"], "lua")
  T.eq(last.headers["x-basalt-sdk-version"], basalt.version)
end)

T.test("get without variables leaves the templates untouched", function()
  fresh()
  local p = assert(basalt.prompts.get("greeting"))
  T.eq(p.text, "Hello {{ name }}!")
  T.eq(p.raw_text, "Hello {{ name }}!")
  T.eq(p.variables, nil)
  T.eq(p.tag, nil)
  T.eq(p.tools, {})
end)

T.test("the version the API returned and the requested tag are on the prompt", function()
  fresh()
  local p = assert(basalt.prompts.get("qa-system", { version = "1" }))
  T.eq(p.version, "1")
  T.eq(p.text, "Q: {{ question }}")
  p = assert(basalt.prompts.get("qa-system", { tag = "production" }))
  T.eq(p.version, "3")
  T.eq(p.tag, "production")
end)

T.test("describe returns slug, status, name, description, versions, tags, variables", function()
  fresh()
  local d, err = basalt.prompts.describe("qa-system")
  T.eq(err, nil)
  T.eq(d.slug, "qa-system")
  T.eq(d.status, "live")
  T.eq(d.name, "QA system")
  T.eq(d.description, "Answers support questions")
  T.eq(d.available_versions, { "1", "2", "3" })
  T.eq(d.available_tags, { "production", "staging" })
  T.eq(d.variables[1], { label = "question", type = "string" })
  T.eq(mock:stats().last.path, "/prompts/qa-system/describe")
end)

T.test("list returns the prompts without variables, filtered by feature_slug", function()
  fresh()
  local all = assert(basalt.prompts.list())
  T.eq(#all, 3)
  T.eq(all[1].variables, nil)
  local some = assert(basalt.prompts.list { feature_slug = "onboarding" })
  T.eq(mock:stats().last.query, "?featureSlug=onboarding")
  T.eq(#some, 2)
  for _, item in ipairs(some) do T.truthy(item.slug == "greeting" or item.slug == "bad-template") end
end)

T.test("a wrong argument raises naming it", function()
  fresh()
  T.raises("bad argument #1", basalt.prompts.get)
  T.raises("blank", basalt.prompts.get, "  ")
  T.raises("bad argument #2", basalt.prompts.get, "greeting", 5)
  T.raises("'version' must be a string", basalt.prompts.get, "greeting", { version = {} })
  T.raises("'tag' must be a string", basalt.prompts.get, "greeting", { tag = true })
  T.raises("'variables' must be a table", basalt.prompts.get, "greeting", { variables = "x" })
  T.raises("'cache' must be a boolean", basalt.prompts.get, "greeting", { cache = "no" })
  T.raises("bad argument #3", basalt.prompts.get, "greeting", {}, 5)
  T.raises("bad argument #1", basalt.prompts.describe, nil)
  T.raises("bad argument #1", basalt.prompts.list, 5)
  T.raises("bad argument #2", (assert(basalt.prompts.get("greeting"))).compile,
    assert(basalt.prompts.get("greeting")), 5)
  T.eq(requests(), 1, "nothing was requested for the bad calls")
end)

---------------------------------------------------------------------------------------------
-- HTTP errors (section 16)

local ERROR_CASES = {
  { mode = "404", code = "not_found", status = 404, message = "Prompt not found" },
  { mode = "500", code = "http_500", status = 500, message = "Internal server error" },
  { mode = "text500", code = "http_500", status = 500, message = "upstream exploded" },
  { mode = "status:400", code = "bad_request", status = 400, message = "mock status 400" },
  { mode = "status:401", code = "unauthorized", status = 401, message = "mock status 401" },
  { mode = "status:403", code = "forbidden", status = 403, message = "mock status 403" },
  { mode = "status:418", code = "http_418", status = 418, message = "mock status 418" },
  { mode = "status:503", code = "http_503", status = 503, message = "mock status 503" },
  { mode = "invalid_json", code = "invalid_json", status = nil, message = "Invalid JSON response" },
}

T.test("HTTP statuses map to stable error codes with the API's message", function()
  for _, c in ipairs(ERROR_CASES) do
    fresh()
    mock:control { mode = c.mode }
    local p, err = basalt.prompts.get("greeting")
    T.eq(p, nil, c.mode)
    T.eq({ err.code, err.status, err.message }, { c.code, c.status, c.message }, c.mode)
    T.eq(requests(), 1, c.mode .. ": statuses are not retried")
  end
end)

T.test("an unknown prompt is not_found with the API's error text", function()
  fresh()
  local p, err = basalt.prompts.get("no-such-prompt")
  T.eq(p, nil)
  T.eq(err.code, "not_found")
  T.eq(err.status, 404)
  T.eq(err.message, "Prompt 'no-such-prompt' not found")
  local d, derr = basalt.prompts.describe("no-such-prompt")
  T.eq(d, nil)
  T.eq(derr.code, "not_found")
end)

T.test("transport errors are tried 3 times with 0.5 s then 1 s backoff, then network", function()
  fresh()
  mock:control { mode = "drop" }
  local p, err
  basalt.start_observe({ name = "root", feature_slug = "f" }, function()
    p, err = basalt.prompts.get("greeting")
  end)
  T.eq(p, nil)
  T.eq(err.code, "network")
  T.eq(err.status, nil)
  T.truthy(err.message:find("Request failed after 3 attempts", 1, true), err.message)
  -- 3 attempts; libcurl may resend the first once on its own when the kept-alive
  -- connection it reused turns out dead, so the mock sees 3 or 4.
  local seen = requests()
  T.truthy(seen == 3 or seen == 4, "requests seen: " .. seen)
  local ms = mem:find("prompt.get").attributes["basalt.request.duration_ms"]
  T.truthy(ms >= 1450 and ms < 3000, "backoff 0.5 s + 1 s; took " .. ms .. " ms")
end)

T.test("a slow API times out per attempt: 3 attempts, then timeout", function()
  fresh { api_timeout_ms = 200 }
  mock:control { mode = "slow", delay_ms = 1500 }
  local p, err = basalt.prompts.get("greeting")
  T.eq(p, nil)
  T.eq(err.code, "timeout")
  T.truthy(err.message:find("after 3 attempts", 1, true), err.message)
  T.eq(requests(), 3)
end)

T.test("a transport error followed by success is retried transparently", function()
  fresh()
  mock:control { fail_times = 2 }
  local p, err = basalt.prompts.get("greeting")
  T.eq(err, nil)
  T.eq(p.slug, "greeting")
  T.eq(requests(), 3)
end)

---------------------------------------------------------------------------------------------
-- Caching and fallback (Decision 12)

T.test("a cache hit makes no request and says from_cache", function()
  fresh()
  local a = assert(basalt.prompts.get("greeting", { variables = { name = "A" } }))
  local b = assert(basalt.prompts.get("greeting", { variables = { name = "B" } }))
  T.eq(requests(), 1)
  T.eq(a.from_cache, false)
  T.eq(b.from_cache, true)
  T.eq(b.text, "Hello B!", "the cache holds the template, rendered per call")
end)

T.test("1000 gets of the same prompt make one request", function()
  fresh()
  for _ = 1, 1000 do assert(basalt.prompts.get("qa-system", { tag = "production" })) end
  T.eq(requests(), 1)
end)

T.test("the cache key is (slug, version, tag)", function()
  fresh()
  assert(basalt.prompts.get("qa-system"))
  assert(basalt.prompts.get("qa-system", { version = "2" }))
  assert(basalt.prompts.get("qa-system", { tag = "production" }))
  assert(basalt.prompts.get("qa-system", { version = "2", tag = "production" }))
  T.eq(requests(), 4)
  assert(basalt.prompts.get("qa-system", { version = "2" }))
  assert(basalt.prompts.get("qa-system", { variables = { question = "other" } }))
  T.eq(requests(), 4, "variables are not part of the key")
end)

T.test("cache = false always requests and leaves the cache alone", function()
  fresh()
  local p = assert(basalt.prompts.get("greeting", { cache = false }))
  T.eq(p.from_cache, false)
  assert(basalt.prompts.get("greeting", { cache = false }))
  T.eq(requests(), 2)
  p = assert(basalt.prompts.get("greeting"))
  T.eq(p.from_cache, false, "cache = false wrote nothing")
  T.eq(requests(), 3)
end)

T.test("entries expire after prompt_cache_ttl", function()
  fresh { prompt_cache_ttl = 0.2 }
  assert(basalt.prompts.get("greeting"))
  assert(basalt.prompts.get("greeting"))
  T.eq(requests(), 1)
  sleep(0.3)
  local p = assert(basalt.prompts.get("greeting"))
  T.eq(p.from_cache, false)
  T.eq(requests(), 2)
end)

-- Primes the fallback copy, lets the primary entry expire, then fails the API.
local function with_fallback(mode, extra)
  local opts = { prompt_cache_ttl = 0.1 }
  for k, v in pairs(extra or {}) do opts[k] = v end
  fresh(opts)
  local first = assert(basalt.prompts.get("greeting", { variables = { name = "Ada" } }))
  T.eq(first.from_cache, false)
  sleep(0.2)
  mock:control(mode)
  return basalt.prompts.get("greeting", { variables = { name = "Bob" } })
end

T.test("fallback serves the last good copy on a 500, with one warning", function()
  local p, err = with_fallback { mode = "500" }
  T.eq(err, nil)
  T.eq(p.from_cache, true)
  T.eq(p.text, "Hello Bob!")
  T.eq(requests(), 2)
  T.truthy(log_text():find("fallback", 1, true), "a warning says the fallback served")
  local warnings = #logs
  mem:clear()
  p = assert(basalt.prompts.get("greeting"))
  T.eq(p.from_cache, true)
  T.eq(#logs, warnings, "the same failure is not logged again")
end)

T.test("fallback serves on a 404", function()
  local p, err = with_fallback { mode = "404" }
  T.eq(err, nil)
  T.eq(p.from_cache, true)
  T.eq(p.slug, "greeting")
end)

T.test("fallback serves on a timeout", function()
  local p, err = with_fallback({ mode = "slow", delay_ms = 1000 }, { api_timeout_ms = 100 })
  T.eq(err, nil)
  T.eq(p.from_cache, true)
end)

T.test("fallback serves on invalid JSON", function()
  local p, err = with_fallback { mode = "invalid_json" }
  T.eq(err, nil)
  T.eq(p.from_cache, true)
end)

T.test("without a fallback entry a failure returns nil, err", function()
  fresh()
  mock:control { mode = "500" }
  local p, err = basalt.prompts.get("greeting")
  T.eq(p, nil)
  T.eq(err.code, "http_500")
end)

T.test("cache = false gets no fallback", function()
  fresh { prompt_cache_ttl = 0.1 }
  assert(basalt.prompts.get("greeting"))
  sleep(0.2)
  mock:control { mode = "500" }
  local p, err = basalt.prompts.get("greeting", { cache = false })
  T.eq(p, nil)
  T.eq(err.code, "http_500")
end)

T.test("the fallback copy expires after prompt_fallback_ttl", function()
  local p, err = with_fallback({ mode = "500" }, { prompt_fallback_ttl = 0.15 })
  T.eq(p, nil)
  T.eq(err.code, "http_500")
end)

---------------------------------------------------------------------------------------------
-- Templates (Decision 13) and compile

T.test("an unsupported template is an error naming the position", function()
  fresh()
  local p, err = basalt.prompts.get("bad-template", { variables = { name = "x" } })
  T.eq(p, nil)
  T.eq(err.code, "template_unsupported")
  T.eq({ err.line, err.column }, { 1, 12 })
  T.truthy(err.message:find("line 1, column 12", 1, true), err.message)
  T.truthy(err.message:find("filters", 1, true), err.message)
end)

T.test("compile renders a new prompt from the raw templates", function()
  fresh()
  local p = assert(basalt.prompts.get("greeting", { variables = { name = "Ada" } }))
  local q = assert(p:compile { name = "Bob" })
  T.eq(q.text, "Hello Bob!")
  T.eq(q.variables, { name = "Bob" })
  T.eq(p.text, "Hello Ada!", "the original is unchanged")
  T.eq(q.slug, "greeting")
  T.eq(q.model, p.model)
  local r = assert(q:compile { name = "Cy" })
  T.eq(r.text, "Hello Cy!", "compiled prompts compile again")
  local bad = assert(basalt.prompts.get("bad-template"))
  local none, err = bad:compile { name = "x" }
  T.eq(none, nil)
  T.eq(err.code, "template_unsupported")
end)

T.test("template variables: missing names, nested tables, lists, if/else", function()
  fresh()
  mock:add_prompts { tmpl = { featureSlug = "t", name = "t", description = "", status = "live",
    latest = "1", versions = { ["1"] = { text =
      "{% if user.vip %}VIP {% elif user %}User {% else %}Guest {% endif %}" ..
      "{{ user.name }}{# hidden #}{{ missing }}:{% for t in tags %} {{ loop.index }}.{{ t }}{% endfor %}\n" } } } }
  local p = assert(basalt.prompts.get("tmpl", { variables = { user = { name = "Ann", vip = true },
    tags = { "a", "b" } } }))
  T.eq(p.text, "VIP Ann: 1.a 2.b")
  T.eq(assert(p:compile { user = { name = "Bo" } }).text, "User Bo:")
  T.eq(assert(p:compile {}).text, "Guest :")
end)

---------------------------------------------------------------------------------------------
-- Tracing (Decision 11)

T.test("outside a trace get, describe and list record nothing", function()
  fresh()
  assert(basalt.prompts.get("greeting"))
  assert(basalt.prompts.describe("greeting"))
  assert(basalt.prompts.list())
  T.eq(#mem:spans(), 0)
end)

T.test("inside a trace get records a prompt.get child span with request attributes", function()
  fresh()
  local root_id
  basalt.start_observe({ name = "root", feature_slug = "payments" }, function(root)
    root_id = root:span_id()
    assert(basalt.prompts.get("qa-system", { tag = "production", variables = { question = "q" } }))
  end)
  local s = mem:find("prompt.get")
  T.truthy(s, "a prompt.get span")
  T.eq(s.parent_span_id, root_id)
  local a = s.attributes
  T.eq(a["basalt.span.kind"], "span")
  T.eq(a["basalt.prompt.slug"], "qa-system")
  T.eq(a["basalt.prompt.version"], "3")
  T.eq(a["basalt.prompt.tag"], "production")
  T.eq(a["basalt.prompt.variables"], '{"question":"q"}')
  T.eq(a["basalt.prompt.model.provider"], "openai")
  T.eq(a["basalt.prompt.model.model"], "gpt-4o-mini")
  T.eq(a["basalt.prompt.from_cache"], false)
  T.eq(a["http.method"], "GET")
  T.eq(a["http.url"], mock.url .. "/prompts/qa-system", "the url without its query")
  T.eq(a["http.status_code"], 200)
  T.eq(type(a["basalt.request.duration_ms"]), "number")
  T.eq(a["basalt.request.success"], true)
  T.eq(s.status.code, "unset")
end)

T.test("a cache hit still records prompt.get, from_cache and no request attributes", function()
  fresh()
  assert(basalt.prompts.get("greeting"))
  basalt.start_observe({ name = "root", feature_slug = "f" }, function()
    assert(basalt.prompts.get("greeting"))
  end)
  local a = mem:find("prompt.get").attributes
  T.eq(a["basalt.prompt.from_cache"], true)
  T.eq(a["basalt.prompt.slug"], "greeting")
  T.eq(a["http.method"], nil)
  T.eq(a["http.status_code"], nil)
  T.eq(a["basalt.request.duration_ms"], nil)
end)

T.test("a failed get marks prompt.get as an error with the status", function()
  fresh()
  basalt.start_observe({ name = "root", feature_slug = "f" }, function()
    local p, err = basalt.prompts.get("no-such-prompt")
    T.eq(p, nil)
    T.eq(err.code, "not_found")
  end)
  local s = mem:find("prompt.get")
  T.eq(s.status.code, "error")
  T.eq(s.attributes["http.status_code"], 404)
  T.eq(s.attributes["basalt.request.success"], false)
  T.eq(s.attributes["basalt.prompt.slug"], "no-such-prompt")
end)

T.test("a fallback get records the failed request and from_cache", function()
  fresh { prompt_cache_ttl = 0.1 }
  assert(basalt.prompts.get("greeting"))
  sleep(0.2)
  mock:control { mode = "500" }
  basalt.start_observe({ name = "root", feature_slug = "f" }, function()
    assert(basalt.prompts.get("greeting"))
  end)
  local a = mem:find("prompt.get").attributes
  T.eq(a["basalt.prompt.from_cache"], true)
  T.eq(a["http.status_code"], 500)
  T.eq(a["basalt.request.success"], false)
end)

T.test("seed: feature_slug reaches prompt.get and every span inside the prompt block", function()
  fresh()
  local inside = 0
  basalt.start_observe({ name = "qa", feature_slug = "payments" }, function()
    basalt.prompts.get("qa-system", { variables = QA_VARS }, function(prompt)
      basalt.observe({ name = "generation", kind = "generation" }, function()
        basalt.observe({ name = "inner", kind = "tool" }, function() inside = inside + 1 end)
      end)
      basalt.observe_wrap({ name = "wrapped" }, function() inside = inside + 1 end)()
      local co = coroutine.wrap(function()
        basalt.observe({ name = "in-coroutine" }, function() inside = inside + 1 end)
      end)
      co()
      return prompt
    end)
  end)
  T.eq(inside, 3)
  for _, name in ipairs { "prompt.get", "generation", "inner", "wrapped", "in-coroutine" } do
    local s = mem:find(name)
    T.truthy(s, name)
    T.eq(s.attributes["basalt.span.feature_slug"], "payments", name)
  end
end)

T.test("request spans inherit identity, experiment, evaluators and should_evaluate", function()
  fresh()
  basalt.start_observe({ name = "root", feature_slug = "payments",
    identity = { user = { id = "u1", name = "Ann" }, organization = { id = "o1" } },
    experiment = { id = "exp-1", name = "E" }, evaluators = { "quality" } }, function()
    basalt.with_evaluators({ "tone" }, function()
      assert(basalt.prompts.get("greeting"))
      assert(basalt.prompts.describe("greeting"))
      assert(basalt.prompts.list())
    end)
  end)
  for _, name in ipairs { "prompt.get", "basalt.sdk.prompts.describe", "basalt.sdk.prompts.list" } do
    local a = mem:find(name).attributes
    T.eq(a["basalt.span.feature_slug"], "payments", name)
    T.eq(a["basalt.user.id"], "u1", name)
    T.eq(a["basalt.organization.id"], "o1", name)
    T.eq(a["basalt.experiment.id"], "exp-1", name)
    T.eq(a["basalt.span.should_evaluate"], true, name .. " (the experiment forces evaluation)")
    T.eq(a["basalt.span.evaluators"], { "tone" }, name)
  end
end)

T.test("describe and list record section 15 request spans", function()
  fresh()
  basalt.start_observe({ name = "root", feature_slug = "f" }, function()
    assert(basalt.prompts.describe("qa-system", { version = "2" }))
    assert(basalt.prompts.list { feature_slug = "support" })
  end)
  local d = mem:find("basalt.sdk.prompts.describe")
  T.eq(d.attributes["basalt.span.kind"], "span")
  T.eq(d.attributes["http.status_code"], 200)
  T.eq(d.attributes["basalt.request.success"], true)
  T.eq(type(d.attributes["basalt.request.duration_ms"]), "number")
  T.eq(type(d.attributes["http.response_time_ms"]), "number")
  T.eq(d.attributes["http.method"], nil, "http.method only inside basalt.metadata")
  T.eq(d.attributes["http.url"], nil, "http.url only inside basalt.metadata")
  local meta = d.attributes["basalt.metadata"]
  for _, frag in ipairs { '"basalt.api.client":"prompts"', '"basalt.api.operation":"describe"',
    '"basalt.internal.api":true', '"http.method":"GET"', '"basalt.prompt.slug":"qa-system"',
    '"basalt.prompt.version":"2"', '"http.url":"' .. mock.url .. '/prompts/qa-system/describe"' } do
    T.truthy(meta:find(frag, 1, true), frag .. " in " .. meta)
  end
  T.eq(d.attributes["basalt.span.output"], '{"status_code":200}')
  local l = mem:find("basalt.sdk.prompts.list")
  T.truthy(l.attributes["basalt.metadata"]:find('"basalt.prompt.feature_slug":"support"', 1, true))
  T.truthy(l.attributes["basalt.metadata"]:find('"basalt.api.operation":"list"', 1, true))
end)

T.test("a failed describe records the error on its request span", function()
  fresh()
  mock:control { mode = "500" }
  basalt.start_observe({ name = "root", feature_slug = "f" }, function()
    local d, err = basalt.prompts.describe("qa-system")
    T.eq(d, nil)
    T.eq(err.code, "http_500")
  end)
  local s = mem:find("basalt.sdk.prompts.describe")
  T.eq(s.status.code, "error")
  T.eq(s.attributes["basalt.request.success"], false)
  T.eq(s.attributes["http.status_code"], 500)
  T.eq(s.attributes["basalt.span.output"], '{"error":"Internal server error","status_code":500}')
end)

---------------------------------------------------------------------------------------------
-- The block form

T.test("spans inside the block carry basalt.prompt.*, spans after it do not", function()
  fresh()
  basalt.start_observe({ name = "root", feature_slug = "f" }, function()
    local r1, r2 = basalt.prompts.get("qa-system", { tag = "production", variables = QA_VARS },
      function(prompt)
        basalt.observe({ name = "gen", kind = "generation" }, function(g)
          g:set_model(prompt.model.model)
        end)
        return "answer", 42
      end)
    T.eq({ r1, r2 }, { "answer", 42 }, "the block's results are returned")
    basalt.observe({ name = "after" }, function() end)
  end)
  local gen = mem:find("gen").attributes
  T.eq(gen["basalt.prompt.slug"], "qa-system")
  T.eq(gen["basalt.prompt.version"], "3")
  T.eq(gen["basalt.prompt.tag"], "production")
  T.eq(gen["basalt.prompt.model.provider"], "openai")
  T.eq(gen["basalt.prompt.model.model"], "gpt-4o-mini")
  T.eq(gen["basalt.prompt.from_cache"], false)
  T.truthy(gen["basalt.prompt.variables"]:find('"question":"Where is my order?"', 1, true))
  local after = mem:find("after").attributes
  for _, k in ipairs(PROMPT_KEYS) do T.eq(after[k], nil, k .. " after the block") end
  T.eq(mem:find("root").attributes["basalt.prompt.slug"], nil)
end)

T.test("an error inside the block propagates the same value and restores the context", function()
  fresh()
  local boom = { reason = "boom" }
  basalt.start_observe({ name = "root", feature_slug = "f" }, function()
    local ok, err = pcall(basalt.prompts.get, "greeting", {}, function()
      basalt.observe({ name = "inside" }, function() end)
      error(boom)
    end)
    T.eq(ok, false)
    T.truthy(rawequal(err, boom), "the very same error value")
    basalt.observe({ name = "after-error" }, function() end)
  end)
  T.eq(mem:find("inside").attributes["basalt.prompt.slug"], "greeting")
  T.eq(mem:find("after-error").attributes["basalt.prompt.slug"], nil)
end)

T.test("nested prompt blocks: the inner prompt wins inside, the outer returns after", function()
  fresh()
  basalt.start_observe({ name = "root", feature_slug = "f" }, function()
    basalt.prompts.get("qa-system", {}, function()
      basalt.prompts.get("greeting", {}, function()
        basalt.observe({ name = "in-inner" }, function() end)
      end)
      basalt.observe({ name = "in-outer" }, function() end)
    end)
  end)
  T.eq(mem:find("in-inner").attributes["basalt.prompt.slug"], "greeting")
  T.eq(mem:find("in-outer").attributes["basalt.prompt.slug"], "qa-system")
  local gets = {}
  for _, s in ipairs(mem:spans()) do
    if s.name == "prompt.get" then gets[#gets + 1] = s.attributes["basalt.prompt.slug"] end
  end
  table.sort(gets)
  T.eq(gets, { "greeting", "qa-system" }, "each prompt.get names its own prompt")
end)

T.test("a failed get in block form returns nil, err and does not run the block", function()
  fresh()
  local ran = false
  local p, err = basalt.prompts.get("no-such-prompt", {}, function() ran = true end)
  T.eq(p, nil)
  T.eq(err.code, "not_found")
  T.eq(ran, false)
end)

T.test("a prompt object passed to observe{prompt=} writes its attributes", function()
  fresh()
  local p = assert(basalt.prompts.get("greeting", { variables = { name = "Ada" } }))
  basalt.start_observe({ name = "root", feature_slug = "f" }, function()
    basalt.observe({ name = "gen", kind = "generation", prompt = p }, function() end)
  end)
  local a = mem:find("gen").attributes
  T.eq(a["basalt.prompt.slug"], "greeting")
  T.eq(a["basalt.prompt.version"], "1")
  T.eq(a["basalt.prompt.model.provider"], "anthropic")
end)

---------------------------------------------------------------------------------------------
-- The API key stays secret

T.test("the API key never appears in spans, errors or logs", function()
  fresh { prompt_cache_ttl = 0.1 }
  basalt.start_observe({ name = "root", feature_slug = "f" }, function()
    assert(basalt.prompts.get("greeting"))
    assert(basalt.prompts.describe("greeting"))
    assert(basalt.prompts.list())
    sleep(0.2)
    mock:control { mode = "echo_auth" }
    local p = assert(basalt.prompts.get("greeting"), "served by the fallback")
    T.eq(p.from_cache, true)
    local d, err = basalt.prompts.describe("greeting")
    T.eq(d, nil)
    T.eq(err.code, "unauthorized")
    T.falsy(err.message:find(KEY_PREFIX, 1, true), "error message: " .. err.message)
    T.truthy(err.message:find("[redacted]", 1, true), err.message)
    local _, lerr = basalt.prompts.list()
    T.falsy(lerr.message:find(KEY_PREFIX, 1, true))
  end)
  T.eq(mock:stats().last.headers["authorization"], "Bearer " .. key, "the key was sent")
  T.falsy(span_text():find(KEY_PREFIX, 1, true), "no span carries the key")
  T.truthy(#logs > 0, "something was logged")
  T.falsy(log_text():find(KEY_PREFIX, 1, true), "no log line carries the key")
end)

---------------------------------------------------------------------------------------------
-- The example

T.test("examples/qa_system.lua runs against its own mock and prints the QA trace", function()
  local host, src = os.getenv("BASALT_HOST"), os.getenv("BASALT_SOURCE_DIR")
  if not (host and src) then return end -- only under ctest
  local p = assert(io.popen("'" .. host .. "' '" .. src .. "/examples/qa_system.lua' 2>&1", "r"))
  local out = p:read("a")
  local ok = p:close()
  T.truthy(ok, "exit status 0: " .. out)
  for _, want in ipairs { "qa_request", "retrieve_docs", "prompt.get", "llm.generate",
    "According to our shipping policy" } do
    T.truthy(out:find(want, 1, true), want .. " in:\n" .. out)
  end
end)

local ok, err = pcall(T.run)
mock:stop()
if not ok then error(err, 0) end

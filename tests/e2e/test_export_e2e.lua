-- OTLP/HTTP export seen from a Lua program, end to end: spans go through
-- basalt.init{ exporters = ..., batch = ... } to the shared sink (node, --strict
-- --proto: every request is round-tripped through the official OTLP protobuf
-- schema) or to a header recorder on 127.0.0.1, and the program checks what
-- arrived and what basalt.stats() says. Environment-dependent behaviour runs in
-- child processes of the project's host ($BASALT_HOST).
local T = require("testlib")
local S = require("sink")
local basalt = require("basalt")

local available, why = S.available()
if not available then
  io.stderr:write("skip: ", why, "\n")
  io.stdout:write("0 passed, 0 failed (skipped: ", why, ")\n")
  return
end

-- ---- helpers ----------------------------------------------------------------------------

local function otlp(url, extra)
  local e = { type = "otlp", endpoint = url }
  for k, v in pairs(extra or {}) do e[k] = v end
  return e
end

-- n traces of `per` spans (a root and per-1 children); returns the span ids
-- (in end order) and the set of them.
local function make_traces(n, per, name)
  local ids, set = {}, {}
  local function note(s)
    local id = s:span_id()
    ids[#ids + 1] = id
    set[id] = true
  end
  for i = 1, n do
    basalt.start_observe({ name = name or "trace", feature_slug = "e2e" }, function(root)
      for c = 1, per - 1 do
        basalt.observe({ name = "child" }, function(s)
          s:set_attribute("i", i * 100 + c)
          note(s)
        end)
      end
      note(root)
    end)
  end
  return ids, set
end

-- Every id of `set` arrives exactly once and nothing else does.
local function check_exactly_once(records, set, expected)
  local seen, dups, strangers = {}, 0, 0
  for _, r in ipairs(records) do
    if seen[r.span_id] then dups = dups + 1 end
    if not set[r.span_id] then strangers = strangers + 1 end
    seen[r.span_id] = true
  end
  local missing = 0
  for id in pairs(set) do
    if not seen[id] then missing = missing + 1 end
  end
  T.eq(#records, expected, "spans received")
  T.eq(dups, 0, "spans received twice")
  T.eq(missing, 0, "spans missing")
  T.eq(strangers, 0, "spans nobody sent")
end

local function check_clean(c)
  T.eq(c.rejected, 0, "requests rejected by --strict --proto (first: " ..
    tostring(c.first_reject) .. ")")
  T.eq(c.proto_rejected, 0, "requests rejected by the protobuf schema")
  T.eq(c.unsupported, 0, "requests refused as unsupported")
  T.eq(c.accepted + c.injected, c.requests, "every request accepted (but injected faults)")
end

local function quiet_logger(store)
  return function(level, msg) store[#store + 1] = level .. ": " .. msg end
end

local function count_matching(list, plain)
  local n = 0
  for _, m in ipairs(list) do
    if m:find(plain, 1, true) then n = n + 1 end
  end
  return n
end

-- Runs `code` in a child process of the host with the given environment
-- (every OTLP/Basalt variable of ours unset first); returns its exit status and
-- its output (stdout and stderr).
local ENV_VARS = { "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
  "OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
  "BASALT_OTEL_EXPORTER_OTLP_ENDPOINT", "BASALT_OTEL_ENDPOINT", "BASALT_API_KEY",
  "OTEL_EXPORTER_OTLP_COMPRESSION", "OTEL_BSP_SCHEDULE_DELAY" }

local function run_child(env, code)
  local host = assert(os.getenv("BASALT_HOST"), "BASALT_HOST is not set")
  local path = S.tmpname(".lua")
  local f = assert(io.open(path, "w"))
  f:write(code)
  f:close()
  local parts = { "env" }
  for _, k in ipairs(ENV_VARS) do parts[#parts + 1] = "-u " .. k end
  for k, v in pairs(env) do parts[#parts + 1] = k .. "=" .. S.quote(v) end
  parts[#parts + 1] = S.quote(host) .. " " .. S.quote(path) .. " 2>&1"
  local p = assert(io.popen(table.concat(parts, " "), "r"))
  local out = p:read("a")
  local ok = p:close()
  os.remove(path)
  return ok, out
end

-- The part of a child script that makes spans and shuts down.
local CHILD_SPANS = [[
local basalt = require("basalt")
local n = tonumber(os.getenv("CHILD_SPANS") or "3")
for i = 1, n do
  basalt.start_observe({ name = os.getenv("CHILD_NAME") or "child-trace", feature_slug = "env" },
    function() end)
end
local ok, st = basalt.shutdown(10000)
io.write("ok=", tostring(ok), " exported=", st.spans_exported, " failures=", st.export_failures,
  "\n")
]]

-- ---- delivery ---------------------------------------------------------------------------

T.test("every span arrives exactly once and every request passes --strict --proto", function()
  local s = S.start()
  basalt.init {
    service_name = "e2e-svc", service_version = "1.2.3", environment = "test",
    exporters = { otlp(s.url) },
    batch = { schedule_delay_ms = 50, max_export_batch_size = 100 },
  }
  local _, set = make_traces(200, 3)
  local ok, st = basalt.shutdown(10000)
  T.eq(ok, true, "shutdown finished in time")
  T.eq(st.spans_started, 600)
  T.eq(st.spans_ended, 600)
  T.eq(st.spans_exported, 600)
  T.eq(st.spans_dropped, 0)
  T.eq(st.export_failures, 0)
  local c = s:stop()
  check_clean(c)
  T.eq(c.spans, 600)
  T.truthy(c.requests >= 6, "batches of at most 100 spans: " .. c.requests .. " requests")
  local recs = s:records()
  check_exactly_once(recs, set, 600)
  -- Parent links and the resource survive the trip.
  local by_id = {}
  for _, r in ipairs(recs) do by_id[r.span_id] = r end
  local orphans = 0
  for _, r in ipairs(recs) do
    if r.name == "child" then
      local p = by_id[r.parent_span_id]
      if not p or p.trace_id ~= r.trace_id or p.name ~= "trace" then orphans = orphans + 1 end
    end
  end
  T.eq(orphans, 0, "children whose parent did not arrive in the same trace")
  local res = recs[1].resource
  T.eq(res["service.name"], "e2e-svc")
  T.eq(res["service.version"], "1.2.3")
  T.eq(res["deployment.environment"], "test")
  T.eq(res["telemetry.sdk.language"], "lua")
  T.eq(res["telemetry.sdk.version"], basalt.version)
  s:remove()
end)

T.test("attribute types survive: int, double, bool, string and arrays of each", function()
  local s = S.start()
  basalt.init { exporters = { otlp(s.url) }, batch = { schedule_delay_ms = 50 } }
  basalt.start_observe({ name = "typed", feature_slug = "e2e" }, function(span)
    span:set_attribute("t.int", 42)
    span:set_attribute("t.negative", -7)
    span:set_attribute("t.int64_max", math.maxinteger)
    span:set_attribute("t.int64_min", math.mininteger)
    span:set_attribute("t.double", 0.25)
    span:set_attribute("t.integral_double", 2.0)
    span:set_attribute("t.true", true)
    span:set_attribute("t.false", false)
    span:set_attribute("t.string", "h\u{e9}llo \"w\"\n")
    span:set_attribute("t.strings", { "stop", "length" })
    span:set_attribute("t.ints", { 1, 2, 3 })
    span:set_attribute("t.doubles", { 0.5, 1.5 })
    span:set_attribute("t.bools", { true, false })
    span:set_attribute("t.table", { a = 1 })
    span:set_attributes { ["t.many.int"] = 5, ["t.many.str"] = "x" }
  end)
  T.eq(basalt.shutdown(5000), true)
  local c = s:stop()
  check_clean(c)
  local recs = s:records()
  T.eq(#recs, 1)
  local a, ty = recs[1].attributes, recs[1].attr_types or {}
  local expect = {
    { "t.int", 42, "int" }, { "t.negative", -7, "int" },
    { "t.int64_max", "9223372036854775807", "int" }, -- beyond 2^53: kept as a decimal string
    { "t.int64_min", "-9223372036854775808", "int" },
    { "t.double", 0.25, "double" }, { "t.integral_double", 2, "double" },
    { "t.true", true, "bool" }, { "t.false", false, "bool" },
    { "t.string", "h\u{e9}llo \"w\"\n", nil }, -- all-string attributes have no type entry
    { "t.strings", { "stop", "length" }, "array" }, { "t.ints", { 1, 2, 3 }, "array" },
    { "t.doubles", { 0.5, 1.5 }, "array" }, { "t.bools", { true, false }, "array" },
    { "t.table", '{"a":1}', nil }, { "t.many.int", 5, "int" }, { "t.many.str", "x", nil },
  }
  for _, e in ipairs(expect) do
    T.eq(a[e[1]], e[2], e[1])
    if e[3] then T.eq(ty[e[1]], e[3], e[1] .. " type") end
  end
  T.eq(ty["t.string"] or "string", "string", "t.string type")
  s:remove()
end)

T.test("compression = \"gzip\" is accepted by the collector", function()
  local s = S.start()
  basalt.init { exporters = { otlp(s.url, { compression = "gzip" }) },
    batch = { schedule_delay_ms = 50, max_export_batch_size = 50 } }
  local _, set = make_traces(100, 2)
  T.eq(basalt.shutdown(5000), true)
  local c = s:stop()
  check_clean(c)
  T.truthy(c.gzip_requests > 0, "gzip requests")
  T.eq(c.gzip_requests, c.requests, "every request gzipped")
  T.truthy(c.bytes_wire < c.bytes_json, "the body on the wire is smaller")
  check_exactly_once(s:records(), set, 200)
  s:remove()
end)

T.test("configured headers reach the collector, however many are given", function()
  local rec = S.recorder()
  local headers = {}
  for i = 1, 40 do headers["x-h" .. i] = "v" .. i end
  basalt.init { exporters = { otlp(rec.base .. "/v1/traces", { headers = headers }) },
    batch = { schedule_delay_ms = 50 } }
  make_traces(1, 1)
  T.eq(basalt.shutdown(5000), true)
  local reqs = rec:stop()
  T.eq(#reqs, 1)
  local got = 0
  for i = 1, 40 do
    if reqs[1].headers["x-h" .. i] == "v" .. i then got = got + 1 end
  end
  T.eq(got, 40, "configured headers received")
end)

T.test("wrong exporter options raise naming the option", function()
  local url = "http://127.0.0.1:9/v1/traces"
  local cases = {
    { 5, "field 'exporters' must be a list, got number" },
    { { { type = "otlp", endpoint = 4318 } }, "exporter endpoint must be a string, got number" },
    { { otlp(url, { headers = "x-a: b" }) }, "exporter headers must be a table, got string" },
    { { otlp(url, { headers = { ["x-a"] = 1 } }) }, "exporter headers must map strings to strings" },
    { { otlp(url, { timeout_ms = 1 << 40 }) }, "exporter timeout_ms must be a positive integer" },
    { { otlp(url, { timeout_ms = 0 }) }, "exporter timeout_ms must be a positive integer" },
    { { otlp(url, { compression = true }) }, "compression must be \"gzip\" or \"none\"" },
    { { otlp(url, { compression = "br" }) }, "compression must be \"gzip\" or \"none\"" },
    { { { type = "file" } }, "file exporter needs a path" },
    { { "zipkin" }, "unknown exporter 'zipkin'" },
    { { {} }, "each exporter must be a string, a table with a type, or a memory exporter" },
  }
  for _, c in ipairs(cases) do
    local err = T.raises("bad argument #1 to 'init' (", basalt.init, { exporters = c[1] })
    T.truthy(tostring(err):find(c[2], 1, true), tostring(err) .. " names " .. c[2])
  end
end)

-- ---- faults -------------------------------------------------------------------------------

T.test("collector down: the program goes on, stats count failures and drops, nothing raised",
  function()
    local url = S.dead_url()
    local logs = {}
    basalt.init { exporters = { otlp(url) }, logger = quiet_logger(logs),
      batch = { schedule_delay_ms = 20, export_timeout_ms = 500, max_queue_size = 8,
        max_export_batch_size = 8 } }
    local t0 = S.now_ms()
    local ids = make_traces(50, 1)
    T.truthy(S.now_ms() - t0 < 1000, "ending spans never waits for the collector")
    T.eq(#ids, 50)
    local ok, st = basalt.shutdown(3000)
    T.truthy(S.now_ms() - t0 < 4000, "shutdown returned by its deadline")
    T.eq(type(ok), "boolean")
    T.eq(st.spans_started, 50)
    T.eq(st.spans_exported, 0)
    T.truthy(st.export_failures >= 1, "export failures counted: " .. T.dump(st))
    T.truthy(st.spans_dropped >= 1, "drops counted: " .. T.dump(st))
    local x = st.exporters[1]
    T.eq(x.type, "otlp")
    T.truthy(x.spans_failed >= 1, "spans failed for good")
    T.eq(x.spans_exported + x.spans_failed + x.spans_dropped, 50, "every span accounted for")
    T.eq(x.export_failures, st.export_failures)
    T.eq(count_matching(logs, "failed"), 1, "the first failure is logged once: " .. T.dump(logs))
    T.eq(count_matching(logs, "dropping"), 1, "the first drop is logged once: " .. T.dump(logs))
  end)

T.test("collector down: a program that never calls shutdown still exits promptly", function()
  local url = S.dead_url()
  local t0 = S.now_ms()
  local ok, out = run_child({ DEAD_URL = url }, [[
local basalt = require("basalt")
basalt.init { exporters = { { type = "otlp", endpoint = os.getenv("DEAD_URL") } },
  logger = function() end }
for i = 1, 20 do basalt.start_observe({ name = "r", feature_slug = "f" }, function() end) end
print("done", basalt.stats().spans_ended)
]])
  local ms = S.now_ms() - t0
  T.eq(ok, true, "exit status; output: " .. out)
  T.truthy(out:find("done\t20", 1, true), out)
  -- The state-close flush waits at most 2 s; having timed out, the exit-time
  -- shutdown grants only a short grace instead of another 2 s.
  T.truthy(ms < 3600, "the child exited after " .. ms .. " ms")
end)

T.test("503 with Retry-After: spans are delivered after the retries", function()
  local s = S.start("--fail-rate 0.3 --retry-after 1")
  basalt.init { exporters = { otlp(s.url) },
    batch = { schedule_delay_ms = 20, max_export_batch_size = 20 } }
  local t0 = S.now_ms()
  local _, set = make_traces(50, 2)
  local ok, st = basalt.shutdown(20000)
  local ms = S.now_ms() - t0
  T.eq(ok, true)
  local c = s:stop()
  check_clean(c)
  T.truthy(c.injected > 0, "the sink refused some requests")
  T.eq(st.export_retries, c.injected, "one retry per refused request")
  T.eq(st.exporters[1].export_retries, st.export_retries)
  T.eq(st.export_failures, 0)
  T.eq(st.spans_exported, 100)
  T.truthy(ms >= c.injected * 1000 - 100, "Retry-After honoured: " .. ms .. " ms for " ..
    c.injected .. " retries")
  check_exactly_once(s:records(), set, 100)
  s:remove()
end)

T.test("a slow collector still gets everything", function()
  local s = S.start("--delay-ms 300")
  basalt.init { exporters = { otlp(s.url) },
    batch = { schedule_delay_ms = 20, max_export_batch_size = 50 } }
  local _, set = make_traces(50, 2)
  T.eq(basalt.force_flush(5000), true)
  local ok, st = basalt.shutdown(5000)
  T.eq(ok, true)
  T.eq(st.spans_exported, 100)
  local c = s:stop()
  check_clean(c)
  check_exactly_once(s:records(), set, 100)
  s:remove()
end)

T.test("a hanging collector: force_flush and shutdown(1000) return by their deadline", function()
  local s = S.start("--delay-ms 10000")
  basalt.init { exporters = { otlp(s.url) }, logger = function() end,
    batch = { schedule_delay_ms = 20, max_export_batch_size = 20 } }
  make_traces(30, 2)
  S.sleep(0.2) -- the first batch is in flight
  local t0 = S.now_ms()
  T.eq(basalt.force_flush(300), false, "force_flush timed out")
  local ms = S.now_ms() - t0
  T.truthy(ms >= 250 and ms < 800, "force_flush(300) took " .. ms .. " ms")
  t0 = S.now_ms()
  local ok, st = basalt.shutdown(1000)
  ms = S.now_ms() - t0
  T.eq(ok, false, "shutdown reports it did not finish")
  T.truthy(ms >= 900 and ms < 1500, "shutdown(1000) took " .. ms .. " ms")
  T.eq(st.spans_exported, 0)
  T.eq(st.spans_started, 60)
  -- Spans in flight or still queued at the deadline must show up as failed;
  -- shutdown takes its counters before the aborted worker has counted them.
  -- Spans abandoned at the shutdown deadline are counted in shutdown's stats.
  T.eq(st.spans_dropped + st.exporters[1].spans_failed, 60, "every span accounted for: " .. T.dump(st))
  T.eq(st.queue_size, 0, "nothing left queued after shutdown")
  s:stop()
  s:remove()
end)

-- ---- exporters ----------------------------------------------------------------------------

-- Span ids of every span in a file of OTLP JSON requests (one per line).
local function spans_in_otlp_lines(lines)
  local ids, n = {}, 0
  for _, line in ipairs(lines) do
    local req = S.decode(line)
    for _, rs in ipairs(req.resourceSpans) do
      for _, ss in ipairs(rs.scopeSpans) do
        for _, sp in ipairs(ss.spans) do
          T.truthy(sp.traceId:match("^%x+$") and #sp.traceId == 32, "traceId")
          T.truthy(#sp.spanId == 16, "spanId")
          T.eq(math.type(sp.kind), "integer", "kind is an integer enum")
          T.eq(type(sp.startTimeUnixNano), "string", "times are decimal strings")
          n = n + 1
          ids[n] = sp.spanId
        end
      end
    end
  end
  return ids
end

T.test("file exporter: every line is an OTLP JSON request the schema accepts, with all spans",
  function()
    local path = S.tmpname(".otlp.jsonl")
    basalt.init { exporters = { "file:" .. path },
      batch = { schedule_delay_ms = 20, max_export_batch_size = 40 } }
    local _, set = make_traces(50, 2)
    T.eq(basalt.shutdown(5000), true)
    local lines = S.read_lines(path)
    T.truthy(#lines >= 3, #lines .. " lines for 100 spans in batches of 40")
    local ids = spans_in_otlp_lines(lines)
    local got = {}
    for _, id in ipairs(ids) do got[#got + 1] = { span_id = id } end
    check_exactly_once(got, set, 100)
    -- Each line passes the same --strict protobuf check the sink applies.
    local check = S.shared_dir() .. "/bench/otlp-sink/proto-check.js"
    for i, line in ipairs(lines) do
      local one = S.tmpname(".json")
      local f = assert(io.open(one, "w"))
      f:write(line)
      f:close()
      local ok = os.execute("node " .. S.quote(check) .. " " .. S.quote(one) ..
        " --strict >/dev/null")
      os.remove(one)
      T.eq(ok, true, "line " .. i .. " passes proto-check --strict")
    end
    -- Appended: a second run adds lines, keeps the old ones.
    basalt.init { exporters = { { type = "file", path = path } },
      batch = { schedule_delay_ms = 20 } }
    make_traces(1, 1)
    T.eq(basalt.shutdown(5000), true)
    T.eq(#S.read_lines(path), #lines + 1)
    os.remove(path)
  end)

T.test("several exporters at once: each receives everything, stats list each", function()
  local s = S.start()
  local path = S.tmpname(".otlp.jsonl")
  local mem = basalt.memory_exporter()
  basalt.init { exporters = { otlp(s.url), "file:" .. path, mem },
    batch = { schedule_delay_ms = 20 } }
  local _, set = make_traces(100, 3)
  T.eq(basalt.force_flush(5000), true)
  local st = basalt.stats()
  T.eq(#st.exporters, 3)
  local types, sum = {}, 0
  for i, x in ipairs(st.exporters) do
    types[i] = x.type
    T.eq(x.spans_exported, 300, x.type .. " exported")
    T.eq(x.spans_failed, 0, x.type .. " failed")
    T.eq(x.spans_dropped, 0, x.type .. " dropped")
    sum = sum + x.spans_exported
  end
  T.eq(types, { "otlp", "file", "memory" })
  T.eq(st.spans_exported, sum, "top-level counters add up over exporters")
  T.eq(st.spans_started, 300)
  T.eq(basalt.shutdown(5000), true)
  local c = s:stop()
  check_clean(c)
  check_exactly_once(s:records(), set, 300)
  local got = {}
  for _, id in ipairs(spans_in_otlp_lines(S.read_lines(path))) do got[#got + 1] = { span_id = id } end
  check_exactly_once(got, set, 300)
  got = {}
  for _, r in ipairs(mem:spans()) do got[#got + 1] = r end
  check_exactly_once(got, set, 300)
  s:remove()
  os.remove(path)
end)

T.test("a failing exporter breaks none of the others", function()
  local s = S.start()
  local mem = basalt.memory_exporter()
  -- export_timeout_ms bounds every exporter's exports, the live sink's too: the
  -- first request to a fresh sink (node's JIT and the schema cold) can take well
  -- over 500 ms on a cold or busy machine. The dead one still fails each batch.
  basalt.init { exporters = { otlp((S.dead_url())), otlp(s.url), mem }, logger = function() end,
    batch = { schedule_delay_ms = 20, export_timeout_ms = 3000 } }
  local _, set = make_traces(40, 2)
  local ok, st = basalt.shutdown(10000)
  T.eq(type(ok), "boolean")
  T.eq(st.exporters[1].spans_exported, 0)
  T.eq(st.exporters[1].spans_failed, 80)
  T.eq(st.exporters[2].spans_exported, 80)
  T.eq(st.exporters[3].spans_exported, 80)
  T.eq(st.spans_exported, 160)
  local c = s:stop()
  check_clean(c)
  check_exactly_once(s:records(), set, 80)
  s:remove()
end)

-- ---- the queue -----------------------------------------------------------------------------

T.test("batch.blocking = true with a 64-span queue loses nothing of 10,000 spans", function()
  local s = S.start()
  basalt.init { exporters = { otlp(s.url) },
    batch = { blocking = true, max_queue_size = 64, schedule_delay_ms = 20 } }
  local _, set = make_traces(10000, 1)
  local ok, st = basalt.shutdown(20000)
  T.eq(ok, true)
  T.eq(st.spans_started, 10000)
  T.eq(st.spans_dropped, 0)
  T.eq(st.spans_exported, 10000)
  local c = s:stop()
  check_clean(c)
  T.truthy(c.requests >= 10000 // 64, c.requests .. " requests of at most 64 spans")
  check_exactly_once(s:records(), set, 10000)
  s:remove()
end)

T.test("a full non-blocking queue drops and counts exactly: started == exported + dropped",
  function()
    local s = S.start("--delay-ms 50")
    local logs = {}
    basalt.init { exporters = { otlp(s.url) }, logger = quiet_logger(logs),
      batch = { max_queue_size = 16, schedule_delay_ms = 20 } }
    local _, set = make_traces(2000, 1)
    local ok, st = basalt.shutdown(10000)
    T.eq(ok, true)
    T.eq(st.spans_started, 2000)
    T.truthy(st.spans_dropped > 0, "spans dropped")
    T.eq(st.spans_exported + st.spans_dropped, st.spans_started, T.dump(st))
    T.eq(st.exporters[1].spans_dropped, st.spans_dropped)
    T.eq(st.exporters[1].spans_failed, 0)
    -- (at most once per process: an earlier test may have had the first drop)
    T.truthy(count_matching(logs, "dropping") <= 1, "the first drop is logged, once")
    local c = s:stop()
    check_clean(c)
    T.eq(c.spans, st.spans_exported, "the sink got exactly the exported spans")
    local recs, seen, dups, strangers = s:records(), {}, 0, 0
    for _, r in ipairs(recs) do
      if seen[r.span_id] then dups = dups + 1 end
      if not set[r.span_id] then strangers = strangers + 1 end
      seen[r.span_id] = true
    end
    T.eq(dups, 0)
    T.eq(strangers, 0)
    s:remove()
  end)

-- ---- configuration from the environment ----------------------------------------------------

T.test("OTEL_EXPORTER_OTLP_ENDPOINT (+ /v1/traces) is used when init names no endpoint, " ..
  "and an init endpoint beats it", function()
    local a, b = S.start(), S.start()
    -- init{} with no exporters: the default exporter is OTLP because the variable is set.
    local ok, out = run_child({ OTEL_EXPORTER_OTLP_ENDPOINT = b.base, CHILD_SPANS = "5",
      CHILD_NAME = "from-env" }, "require('basalt').init { batch = { schedule_delay_ms = 20 } }\n"
      .. CHILD_SPANS)
    T.eq(ok, true, out)
    T.truthy(out:find("ok=true exported=5 failures=0", 1, true), out)
    -- "otlp" as a plain string takes the endpoint from the environment too.
    ok, out = run_child({ OTEL_EXPORTER_OTLP_ENDPOINT = b.base .. "/", CHILD_SPANS = "2",
      CHILD_NAME = "string-form" }, "require('basalt').init { exporters = { 'otlp' } }\n" ..
      CHILD_SPANS)
    T.eq(ok, true, out)
    T.truthy(out:find("exported=2 failures=0", 1, true), out)
    -- An endpoint given to init wins over the environment.
    ok, out = run_child({ OTEL_EXPORTER_OTLP_ENDPOINT = b.base, CHILD_SPANS = "7",
      CHILD_NAME = "from-init", INIT_URL = a.url },
      "require('basalt').init { exporters = { { type = 'otlp', endpoint = os.getenv('INIT_URL')" ..
      " } } }\n" .. CHILD_SPANS)
    T.eq(ok, true, out)
    T.truthy(out:find("exported=7 failures=0", 1, true), out)
    local ca, cb = a:stop(), b:stop()
    check_clean(ca)
    check_clean(cb)
    local names = {}
    for _, r in ipairs(b:records()) do names[r.name] = (names[r.name] or 0) + 1 end
    T.eq(names, { ["from-env"] = 5, ["string-form"] = 2 }, "spans at the environment's endpoint")
    names = {}
    for _, r in ipairs(a:records()) do names[r.name] = (names[r.name] or 0) + 1 end
    T.eq(names, { ["from-init"] = 7 }, "spans at init's endpoint")
    a:remove()
    b:remove()
  end)

T.test("the API key goes as authorization: Bearer to Basalt endpoints only", function()
  local rec = S.recorder()
  local init_key = "require('basalt').init { api_key = 'sk-init-key', " ..
      "batch = { schedule_delay_ms = 20 } }\n"
  -- BASALT_OTEL_EXPORTER_OTLP_ENDPOINT is a Basalt endpoint: the key is sent,
  -- init's key beating BASALT_API_KEY; it also beats OTEL_EXPORTER_OTLP_ENDPOINT.
  local ok, out = run_child({ BASALT_OTEL_EXPORTER_OTLP_ENDPOINT = rec.base .. "/basalt/v1/traces",
    OTEL_EXPORTER_OTLP_ENDPOINT = rec.base .. "/otel-loses", BASALT_API_KEY = "sk-env-key" },
    init_key .. CHILD_SPANS)
  T.eq(ok, true, out)
  -- The BASALT_API_KEY variable alone is enough.
  ok, out = run_child({ BASALT_OTEL_ENDPOINT = rec.base .. "/alias/v1/traces",
    BASALT_API_KEY = "sk-env-key" }, "require('basalt').init {}\n" .. CHILD_SPANS)
  T.eq(ok, true, out)
  -- An OTEL_* endpoint is a third party: no key, but OTEL_EXPORTER_OTLP_HEADERS.
  ok, out = run_child({ OTEL_EXPORTER_OTLP_ENDPOINT = rec.base .. "/otel",
    OTEL_EXPORTER_OTLP_HEADERS = "x-tenant=acme" }, init_key .. CHILD_SPANS)
  T.eq(ok, true, out)
  -- So is an endpoint given to init: no key, its own headers.
  ok, out = run_child({ BASALT_API_KEY = "sk-env-key", URL = rec.base .. "/explicit/v1/traces" },
    "require('basalt').init { api_key = 'sk-init-key', exporters = { { type = 'otlp', " ..
    "endpoint = os.getenv('URL'), headers = { ['x-team'] = 'qa' } } } }\n" .. CHILD_SPANS)
  T.eq(ok, true, out)
  local by_path = {}
  for _, r in ipairs(rec:stop()) do by_path[r.path] = r.headers end
  T.eq(by_path["/basalt/v1/traces"] and by_path["/basalt/v1/traces"].authorization,
    "Bearer sk-init-key", "Basalt endpoint from BASALT_OTEL_EXPORTER_OTLP_ENDPOINT")
  T.eq(by_path["/otel-loses/v1/traces"], nil, "the BASALT_ variable beats the OTEL_ one")
  T.eq(by_path["/alias/v1/traces"] and by_path["/alias/v1/traces"].authorization,
    "Bearer sk-env-key", "BASALT_OTEL_ENDPOINT with BASALT_API_KEY")
  local otel = by_path["/otel/v1/traces"]
  T.truthy(otel, "the OTEL_ endpoint got the spans: " .. T.dump(by_path))
  T.eq(otel and otel.authorization, nil, "no key to an OTEL_ endpoint")
  T.eq(otel and otel["x-tenant"], "acme", "OTEL_EXPORTER_OTLP_HEADERS sent")
  local explicit = by_path["/explicit/v1/traces"]
  T.truthy(explicit, "the init endpoint got the spans")
  T.eq(explicit and explicit.authorization, nil, "no key to init's own endpoint")
  T.eq(explicit and explicit["x-team"], "qa", "init's headers sent")
end)

T.run()

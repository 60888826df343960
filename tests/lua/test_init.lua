-- Module configuration and lifecycle: init, enabled, shutdown, force_flush,
-- stats, the logger, and wrong options.
local T = require("testlib")
local basalt = require("basalt")

T.test("version is MAJOR.MINOR.PATCH", function()
  T.truthy(basalt.version:match("^%d+%.%d+%.%d+$"), basalt.version)
end)

T.test("enabled = false turns spans into no-ops while blocks still run", function()
  local mem = basalt.memory_exporter()
  basalt.init { exporters = { basalt.memory_exporter() } }
  basalt.start_observe({ name = "earlier", feature_slug = "f" }, function() end)
  basalt.init { exporters = { mem }, enabled = false }
  T.eq(basalt.stats().spans_started, 0, "stats count from the disabling init")
  local v = basalt.start_observe({ name = "r", feature_slug = "f" }, function(s)
    T.falsy(s:is_recording())
    return basalt.observe("c", function() return 5 end)
  end)
  T.eq(v, 5)
  T.eq(#mem:spans(), 0)
end)

T.test("shutdown flushes, returns ok and stats, and later spans are no-ops until init", function()
  local mem = basalt.memory_exporter()
  basalt.init { exporters = { mem } }
  basalt.start_observe({ name = "before", feature_slug = "f" }, function() end)
  local ok, st = basalt.shutdown(1000)
  T.eq(ok, true)
  T.eq(st.spans_ended, 1)
  basalt.start_observe({ name = "after", feature_slug = "f" }, function() end)
  T.eq(mem:find("after"), nil)
  basalt.init { exporters = { mem } }
  basalt.start_observe({ name = "again", feature_slug = "f" }, function() end)
  T.truthy(mem:find("again"))
end)

T.test("init again replaces the pipeline: the old exporter receives nothing more", function()
  local a, b = basalt.memory_exporter(), basalt.memory_exporter()
  basalt.init { exporters = { a } }
  basalt.start_observe({ name = "one", feature_slug = "f" }, function() end)
  basalt.init { exporters = { b } }
  basalt.start_observe({ name = "two", feature_slug = "f" }, function() end)
  T.eq(#a:spans(), 1); T.eq(#b:spans(), 1)
  T.eq(basalt.stats().spans_started, 1, "counters since init")
end)

T.test("spans open across init or shutdown are dropped with a warning, and the program goes on", function()
  local a, b = basalt.memory_exporter(), basalt.memory_exporter()
  local logs = {}
  basalt.init { exporters = { a } }
  basalt.start_observe({ name = "outer", feature_slug = "f" }, function()
    basalt.observe({ name = "done-before" }, function() end)
    basalt.init { exporters = { b }, logger = function(_, msg) logs[#logs + 1] = msg end }
    basalt.observe({ name = "inner" }, function() end) -- the old trace's context: a no-op span
  end)
  T.truthy(a:find("done-before"))
  T.eq(a:find("outer"), nil); T.eq(b:find("outer"), nil)
  T.truthy(table.concat(logs, "\n"):find("dropped when they end", 1, true), table.concat(logs, "\n"))
  basalt.start_observe({ name = "later", feature_slug = "f" }, function() end)
  T.truthy(b:find("later"))
end)

T.test("several exporters at once each receive every span", function()
  local a, b = basalt.memory_exporter(), basalt.memory_exporter()
  basalt.init { exporters = { a, b } }
  basalt.start_observe({ name = "r", feature_slug = "f" }, function() basalt.observe("c", function() end) end)
  T.eq(#a:spans(), 2); T.eq(#b:spans(), 2)
  local st = basalt.stats()
  T.eq(#st.exporters, 2)
  T.eq(st.spans_exported, 4, "top-level counters add up over exporters")
end)

T.test("force_flush returns true when everything is exported", function()
  basalt.init { exporters = { basalt.memory_exporter() } }
  T.eq(basalt.force_flush(1000), true)
end)

T.test("the logger receives warnings as (level, message)", function()
  local got = {}
  local mem = basalt.memory_exporter()
  basalt.init { exporters = { mem }, logger = function(level, msg) got[#got + 1] = { level, msg } end }
  basalt.start_observe({ name = "r", feature_slug = "f" }, function(s) s:set_input { f = print } end)
  basalt.stats()
  T.truthy(#got >= 1, "a message arrived")
  T.eq(got[1][1], "warn")
  T.truthy(got[1][2]:find("function", 1, true), got[1][2])
end)

T.test("a warning reaches the logger as soon as the call that raised it returns", function()
  local got = {}
  basalt.init { exporters = { basalt.memory_exporter() }, logger = function(l, m) got[#got + 1] = l .. ":" .. m end }
  basalt.start_observe({ name = "r", feature_slug = "f" }, function(s)
    s:set_input { co = coroutine.create(print) } -- a thread cannot be serialised: one warning
    T.eq(#got, 1, "delivered before the block goes on")
    T.truthy(got[1]:find("thread", 1, true), got[1])
  end)
end)

T.test("a logger that raises does not break the program", function()
  local mem = basalt.memory_exporter()
  basalt.init { exporters = { mem }, logger = function() error("logger down") end }
  basalt.start_observe({ name = "r", feature_slug = "f" }, function(s) s:set_input { u = io.stderr } end)
  T.eq(type(basalt.stats()), "table")
  T.truthy(mem:find("r"))
end)

T.test("wrong option types raise naming the field", function()
  T.raises("field 'sample_rate' must be a number", basalt.init, { sample_rate = "high" })
  T.raises("sample_rate must be within [0.0, 1.0].", basalt.init, { sample_rate = 1.5 })
  T.raises("field 'enabled' must be a boolean", basalt.init, { enabled = "yes" })
  T.raises("field 'logger' must be a function", basalt.init, { logger = 1 })
  T.raises("unknown exporter 'kafka'", basalt.init, { exporters = { "kafka" } })
  T.raises("field 'batch' must be a table", basalt.init, { batch = 5 })
  T.raises("sampling_policy must be a function", basalt.init, { sampling_policy = 5 })
  T.raises("bad argument #1 to 'init'", basalt.init, 42)
end)

-- Runs a script in a child process of the host with extra environment; returns its output.
local function run_child(env, code)
  local script = os.tmpname()
  local f = assert(io.open(script, "w"))
  f:write(code)
  f:close()
  local p = assert(io.popen(env .. " '" .. os.getenv("BASALT_HOST") .. "' " .. script .. " 2>&1"))
  local out = p:read("a")
  p:close()
  os.remove(script)
  return out
end

local CONTENT_PROBE = [[
  local basalt = require("basalt")
  local mem = basalt.memory_exporter()
  basalt.init { exporters = { mem } %s }
  basalt.start_observe({ name = "r", feature_slug = "f" }, function(s) s:set_input("secret"):set_metadata { m = 1 } end)
  local a = mem:find("r").attributes
  print("input=" .. tostring(a["basalt.span.input"]) .. " metadata=" .. tostring(a["basalt.metadata"]))
]]

T.test("BASALT_TRACE_CONTENT and TRACELOOP_TRACE_CONTENT gate content; init beats them", function()
  local out = run_child("BASALT_TRACE_CONTENT=false", CONTENT_PROBE:format(""))
  T.truthy(out:find("input=nil metadata={\"m\":1}", 1, true), out)
  out = run_child("TRACELOOP_TRACE_CONTENT=off", CONTENT_PROBE:format(""))
  T.truthy(out:find("input=nil", 1, true), out)
  out = run_child("BASALT_TRACE_CONTENT=false", CONTENT_PROBE:format(", trace_content = true"))
  T.truthy(out:find("input=secret", 1, true), out)
  out = run_child("", CONTENT_PROBE:format(""))
  T.truthy(out:find("input=secret", 1, true), out)
end)

T.test("BASALT_TELEMETRY_ENABLED=false makes every span a no-op; BASALT_SAMPLE_RATE sets the rate", function()
  local out = run_child("BASALT_TELEMETRY_ENABLED=false", [[
    local basalt = require("basalt")
    print("recording=" .. tostring(basalt.start_observe({ name = "r", feature_slug = "f" },
      function(s) return s:is_recording() end)))
  ]])
  T.truthy(out:find("recording=false", 1, true), out)
  out = run_child("BASALT_SAMPLE_RATE=1.0", [[
    local basalt = require("basalt")
    local mem = basalt.memory_exporter()
    basalt.init { exporters = { mem } }
    basalt.start_observe({ name = "r", feature_slug = "f" }, function() end)
    print("should_evaluate=" .. tostring(mem:find("r").attributes["basalt.span.should_evaluate"]))
  ]])
  T.truthy(out:find("should_evaluate=true", 1, true), out)
end)

T.test("a program that never calls init gets the default runtime at first use", function()
  -- Run in a fresh process: the default is the console exporter printing a tree.
  local host = os.getenv("BASALT_HOST")
  local script = os.tmpname()
  local f = assert(io.open(script, "w"))
  f:write([[
    local basalt = require("basalt")
    basalt.start_observe({ name = "auto-root", feature_slug = "auto" }, function()
      basalt.observe({ name = "auto-child", kind = "tool" }, function() end)
    end)
  ]])
  f:close()
  local p = assert(io.popen("env -u BASALT_API_KEY -u OTEL_EXPORTER_OTLP_ENDPOINT '" .. host .. "' " .. script .. " 2>&1"))
  local out = p:read("a")
  p:close()
  os.remove(script)
  T.truthy(out:find("auto-root", 1, true), out)
  T.truthy(out:find("auto-child", 1, true), out)
end)

T.run()

-- The qa-trace reference workload (../shared/bench/WORKLOAD.md) on basalt-lua:
-- N traces of 4 spans, built with the tracer API so the payload is exactly the
-- workload's (30 attributes a trace), the children's feature slug and identity
-- coming from their context. Exported over OTLP/HTTP JSON by the batch
-- processor (queue 2048, batches of 512, every 200 ms).
--
--   build/basalt-lua bench/qa_trace.lua --traces N --endpoint http://127.0.0.1:PORT
--                    [--mode paced|free] [--gzip]
-- paced: batch.blocking = true, span end waits for queue room (nothing dropped);
-- free: a full queue drops and counts. Prints one JSON line, last.
local basalt = require("basalt")

local opts = { traces = 20000, mode = "paced", endpoint = "http://127.0.0.1:4318" }
local i = 1
while arg[i] do
  local a = arg[i]
  if a == "--traces" then opts.traces = tonumber(arg[i + 1]); i = i + 2
  elseif a == "--endpoint" then opts.endpoint = arg[i + 1]; i = i + 2
  elseif a == "--mode" then opts.mode = arg[i + 1]; i = i + 2
  elseif a == "--gzip" then opts.gzip = true; i = i + 1
  else error("unknown argument " .. a) end
end
assert(opts.mode == "paced" or opts.mode == "free", "--mode paced|free")
local endpoint = opts.endpoint:gsub("/+$", "")
if not endpoint:find("/v1/traces$") then endpoint = endpoint .. "/v1/traces" end

-- Process CPU (every thread) and memory from /proc, wall time from the clock.
local function proc_cpu()
  local f = assert(io.open("/proc/self/stat"))
  local stat = f:read("a")
  f:close()
  local fields = {}
  for w in stat:match("%) (.*)"):gmatch("%S+") do fields[#fields + 1] = w end
  return tonumber(fields[12]) / 100, tonumber(fields[13]) / 100 -- utime, stime (clock ticks)
end
-- CPU of each thread by name (before shutdown ends the export worker).
local function thread_cpu()
  local out = {}
  local sf = assert(io.open("/proc/self/stat"))
  local pid = sf:read("a"):match("^(%d+)")
  sf:close()
  local p = io.popen("ls /proc/" .. pid .. "/task 2>/dev/null")
  for tid in p:lines() do
    local f = io.open("/proc/" .. pid .. "/task/" .. tid .. "/stat")
    if f then
      local st = f:read("a")
      f:close()
      local comm, rest = st:match("%((.-)%) (.*)")
      local fields = {}
      for w in rest:gmatch("%S+") do fields[#fields + 1] = w end
      out[comm] = (out[comm] or 0) + (tonumber(fields[12]) + tonumber(fields[13])) / 100
    end
  end
  p:close()
  return out
end
local function peak_rss_mib()
  for line in io.lines("/proc/self/status") do
    local kb = line:match("^VmHWM:%s+(%d+) kB")
    if kb then return tonumber(kb) / 1024 end
  end
end
local function wall()
  local p = io.popen("date +%s%N")
  local ns = tonumber(p:read("l"))
  p:close()
  return ns / 1e9
end

basalt.init {
  service_name = "qa-trace-basalt-lua",
  exporters = { { type = "otlp", endpoint = endpoint, timeout_ms = 10000,
    compression = opts.gzip and "gzip" or "none" } },
  batch = { max_queue_size = 2048, max_export_batch_size = 512, schedule_delay_ms = 200,
    export_timeout_ms = 30000, blocking = opts.mode == "paced" },
}

local tracer = basalt.tracer("qa-trace", "1.0.0")
local start_span, context_with = tracer.start_span, basalt.context_with
local METADATA = '{"version":"2.0","environment":"prod"}'
local retrieval = { attributes = { ["basalt.span.kind"] = "retrieval",
  ["basalt.retrieval.query"] = "what is basalt?", ["basalt.retrieval.results.count"] = 5 } }
local prompt = { attributes = { ["basalt.prompt.slug"] = "qa-prompt", ["basalt.prompt.version"] = "1.2.0",
  ["basalt.prompt.variables"] = '{"query":"what is basalt?"}' } }
local generation = { attributes = { ["basalt.span.kind"] = "generation", ["gen_ai.request.model"] = "gpt-4o",
  ["gen_ai.usage.input_tokens"] = 120, ["gen_ai.usage.output_tokens"] = 48, ["gen_ai.provider.name"] = "openai" } }
-- The option tables are built once and refilled per trace, as Lua code on a hot
-- path does to spare the garbage collector: start_span and context_with copy
-- what they read, so reusing a table never changes a span already started.
local root_attrs = { ["basalt.span.feature_slug"] = "qa", ["basalt.user.id"] = "",
  ["basalt.user.name"] = "Alice", ["basalt.organization.id"] = "org-1", ["basalt.metadata"] = METADATA,
  ["basalt.span.kind"] = "span", ["basalt.in_trace"] = true }
local root_opts = { attributes = root_attrs }
local user = { id = "", name = "Alice" }
local values = { feature_slug = "qa", identity = { user = user, organization = { id = "org-1" } } }

local N = opts.traces
local w0, c0 = wall(), os.clock()
local u0, s0 = proc_cpu()
for n = 1, N do
  local user_id = "user-" .. (n % 1000)
  root_attrs["basalt.user.id"] = user_id
  local root = start_span(tracer, "QA System", root_opts)
  user.id = user_id
  local ctx = context_with(root:context(), values)
  retrieval.parent, prompt.parent, generation.parent = ctx, ctx, ctx
  start_span(tracer, "search_knowledge_base", retrieval):finish()
  start_span(tracer, "prompt.get", prompt):finish()
  start_span(tracer, "openai.chat.completions", generation):finish()
  root:finish()
end
local loop_wall, loop_cpu = wall() - w0, os.clock() - c0
local flushed = basalt.force_flush(30000)
local threads = thread_cpu()
local ok, st = basalt.shutdown(30000)
local wall_s, cpu_s = wall() - w0, os.clock() - c0
local u1, s1 = proc_cpu()

local created = st.spans_started
local exporter = st.exporters[1] or {}
local result = {
  runtime = "basalt-lua", workload = "qa-trace", mode = opts.mode, traces = N,
  spans_created = created, spans_exported = st.spans_exported, spans_failed = exporter.spans_failed,
  dropped = st.spans_dropped, export_failures = st.export_failures, export_retries = st.export_retries,
  wall_s = wall_s, cpu_s = cpu_s, cpu_user_s = u1 - u0, cpu_sys_s = s1 - s0,
  cpu_us_per_span = cpu_s * 1e6 / created,
  cpu_us_per_exported_span = st.spans_exported > 0 and cpu_s * 1e6 / st.spans_exported or nil,
  peak_rss_mib = peak_rss_mib(), loop_wall_s = loop_wall, loop_cpu_s = loop_cpu,
  spans_per_s = created / wall_s, exported_per_s = st.spans_exported / wall_s,
  compression = opts.gzip and "gzip" or "none", attributes_per_span = 7.5,
  app_thread_cpu_s = threads["basalt-lua"] or threads["lua5.4"], worker_cpu_s = threads["basalt-export"],
  flush_error = (not flushed or not ok) and "flush or shutdown timed out" or nil,
}
local keys = {}
for k in pairs(result) do keys[#keys + 1] = k end
table.sort(keys)
local parts = {}
for _, k in ipairs(keys) do
  local v = result[k]
  local s = type(v) == "string" and string.format("%q", v) or
      (math.type(v) == "float" and string.format("%.6g", v)) or tostring(v)
  parts[#parts + 1] = string.format("%q:%s", k, s)
end
print("{" .. table.concat(parts, ",") .. "}")

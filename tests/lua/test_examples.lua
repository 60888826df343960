-- The examples and the README's example run and print the trees they promise
-- (each in its own process, the way a user runs them).
local T = require("testlib")

local src = assert(os.getenv("BASALT_SOURCE_DIR"))
local host = assert(os.getenv("BASALT_HOST"))

local function run(script)
  local p = assert(io.popen(string.format("'%s' '%s' 2>&1; echo \"exit=$?\"", host, script)))
  local out = p:read("a")
  p:close()
  return out
end

local function expect(out, lines)
  T.truthy(out:find("exit=0", 1, true), out)
  for _, l in ipairs(lines) do T.truthy(out:find(l, 1, true), "missing " .. l .. " in\n" .. out) end
end

T.test("quickstart prints its trace tree and the answer", function()
  expect(run(src .. "/examples/quickstart.lua"), {
    "answer_question [basalt_trace]", "feature=qa user=user-42 org=acme",
    "├─ search_docs [retrieval]", "└─ llm_call [generation]", "evaluators=[helpfulness]",
    "Basalt traces LLM apps.",
  })
end)

T.test("nested_spans shows inherited and span-only evaluators and the nested trace", function()
  expect(run(src .. "/examples/nested_spans.lua"), {
    "support_chat [basalt_trace]", "evaluators=[toxicity, faithfulness]",
    "evaluators=[toxicity, faithfulness, tone]", "escalation [basalt_trace]", "feature=escalation user=agent-1",
    "notify_agent [tool]",
  })
end)

T.test("coroutines keeps interleaved jobs apart", function()
  expect(run(src .. "/examples/coroutines.lua"), {
    "├─ fetch_a [tool]", "│  ├─ fetch_a.step1", "│  └─ fetch_a.step2", "│  └─ fetch_b.step3", "└─ deferred",
  })
end)

T.test("identity_function reads the identity from the handler's arguments", function()
  expect(run(src .. "/examples/identity_function.lua"), {
    "user=u-1 org=tenant-9", "user=u-2 org=tenant-4", "hello u-1", "hello u-2",
  })
end)

T.test("the README example runs as written", function()
  local f = assert(io.open(src .. "/README.md"))
  local readme = f:read("a")
  f:close()
  local code = readme:match("## Example.-```lua\n(.-)```")
  T.truthy(code, "the README has a Lua example")
  local path = os.tmpname()
  f = assert(io.open(path, "w"))
  f:write(code)
  f:close()
  local out = run(path)
  os.remove(path)
  expect(out, { "chat_turn [basalt_trace]", "feature=support user=u-1 org=acme",
    "answer [generation]", "evaluators=[toxicity, faithfulness]", "Refunds take 5 days." })
end)

T.run()

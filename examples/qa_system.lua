-- The QA flow of the seed documentation: a root span per question, a retrieval
-- span, the prompt fetched from the Basalt API in block form, and a generation
-- span that inherits the prompt's attributes (basalt.prompt.slug, version, tag,
-- model, variables, from_cache) because it is opened inside the prompt block.
--
-- From the repository root, after building into build/:
--   LUA_PATH="build/lua/?.lua;;" LUA_CPATH="build/lua/?.so;;" build/basalt-lua examples/qa_system.lua
-- Without BASALT_API_URL it starts the project's mock Basalt API
-- (tests/support/mock_basalt_api.js, needs Node) on a free local port; with
-- BASALT_API_URL and BASALT_API_KEY it talks to that API instead. With no
-- exporter configured, each trace is printed as a tree when the program ends.
local here = (arg and arg[0] or ""):match("^(.*)/[^/]*$") or "."
package.path = here .. "/../tests/support/?.lua;" .. package.path
local basalt = require("basalt")

local mock
local api_url = os.getenv("BASALT_API_URL")
if not api_url then
  mock = require("mock_api").start()
  api_url = mock.url
end

basalt.init {
  service_name = "qa-system",
  api_url = api_url,
  api_key = os.getenv("BASALT_API_KEY") or "demo-key",
  -- Against the mock, print the traces; a real key exports to Basalt by default.
  exporters = mock and { "console" } or nil,
}

local DOCS = {
  { title = "Shipping", body = "Orders ship within 3 business days." },
  { title = "Returns", body = "Items can be returned within 30 days." },
  { title = "Payments", body = "We accept cards and bank transfers." },
}

local function retrieve(question)
  return basalt.observe({ name = "retrieve_docs", kind = "retrieval" }, function(span)
    span:set_query(question)
    local hits = {}
    for _, doc in ipairs(DOCS) do
      for word in question:lower():gmatch("%a+") do
        if #word > 3 and doc.body:lower():find(word:sub(1, 4), 1, true) then
          hits[#hits + 1] = doc
          break
        end
      end
    end
    span:set_results_count(#hits)
    return hits
  end)
end

-- Stands in for a real LLM client call.
local function fake_llm(prompt)
  local first = prompt.variables.context[1]
  return first and ("According to our " .. first.title:lower() .. " policy: " .. first.body)
      or "I do not know."
end

local function answer(user_id, question)
  return basalt.start_observe({ name = "qa_request", feature_slug = "support",
      identity = { user = { id = user_id } } },
    function(root)
      root:set_input(question)
      local docs = retrieve(question)
      local reply, err = basalt.prompts.get("qa-system", { tag = "production",
          variables = { question = question, context = docs, company = { name = "Acme" } } },
        function(prompt)
          return basalt.observe({ name = "llm.generate", kind = "generation" }, function(gen)
            local params = prompt.model.parameters
            gen:set_provider(prompt.model.provider):set_model(prompt.model.model)
                :set_temperature(params.temperature):set_max_tokens(params.max_length)
            gen:set_input(prompt.text)
            local text = fake_llm(prompt)
            gen:set_tokens { input = #prompt.system_text // 4 + #prompt.text // 4,
              output = #text // 4 }
            gen:set_output(text)
            return text
          end)
        end)
      if reply == nil then -- the API failed and no cached copy exists
        root:set_status("error", err.code .. ": " .. err.message)
        return nil, err
      end
      root:set_output(reply)
      return reply
    end)
end

print(answer("user-1", "When will my order ship?"))
print(answer("user-2", "Can I get a refund on returns?")) -- the prompt now comes from the cache

basalt.shutdown()
if mock then mock:stop() end

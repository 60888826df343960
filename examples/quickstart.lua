-- Quickstart: a traced request with a retrieval and a generation step.
-- With no exporter configured (no BASALT_API_KEY, no OTEL_EXPORTER_OTLP_ENDPOINT)
-- each finished trace is printed as a tree on stdout.
local basalt = require("basalt")

basalt.init { service_name = "quickstart" }

local function answer(question)
  return basalt.start_observe({ name = "answer_question", feature_slug = "qa",
      identity = { user = { id = "user-42", name = "Ada" }, organization = { id = "acme" } } },
    function(root)
      root:set_input(question)
      local docs = basalt.observe({ name = "search_docs", kind = "retrieval" }, function(span)
        span:set_query(question):set_results_count(3)
        return { "basalt traces LLM apps", "spans nest", "context propagates" }
      end)
      local reply = basalt.observe({ name = "llm_call", kind = "generation", evaluators = { "helpfulness" } },
        function(span)
          span:set_model("gpt-4o"):set_provider("openai"):set_tokens { input = 120, output = 48 }
          return "Basalt " .. docs[1]:sub(8) .. "."
        end)
      root:set_output(reply)
      return reply
    end)
end

print(answer("What is basalt?"))
basalt.shutdown()

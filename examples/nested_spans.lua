-- Nested spans with identity and evaluators: what each span inherits.
-- Run it and read the tree: feature slug and identity reach every span, the
-- propagating evaluators of with_evaluators reach the spans inside the block
-- only, and a span's own evaluators stay on that span.
local basalt = require("basalt")

basalt.init { service_name = "nested-example", evaluators = { "toxicity" } }

basalt.start_observe({ name = "support_chat", feature_slug = "support",
    identity = { user = { id = "u-7", name = "Grace" }, organization = { id = "org-3", name = "Initech" } },
    metadata = { channel = "web" } }, function()
  basalt.with_evaluators({ "faithfulness" }, function()
    basalt.observe({ name = "retrieve_policy", kind = "retrieval" }, function(span)
      span:set_query("refund policy"):set_results_count(2)
    end)
    basalt.observe({ name = "draft_reply", kind = "generation", evaluators = "tone" }, function(span)
      span:set_model("gpt-4o-mini"):set_tokens { input = 300, output = 90 }
    end)
  end)
  -- A nested start_observe opens a sub-trace with its own feature slug and user.
  basalt.start_observe({ name = "escalation", feature_slug = "escalation",
      identity = { user = { id = "agent-1" } } }, function()
    basalt.observe({ name = "notify_agent", kind = "tool" }, function(span) span:set_tool_name("pager") end)
  end)
end)

basalt.shutdown()

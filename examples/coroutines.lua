-- Context follows coroutines: a coroutine created inside a span is a child of
-- it, wherever it is resumed, and two interleaved coroutines keep separate
-- parent chains. A scheduler that creates coroutines from C uses basalt.bind.
local basalt = require("basalt")

basalt.init { service_name = "coroutine-example" }

basalt.start_observe({ name = "fan_out", feature_slug = "batch" }, function()
  local function job(name, steps)
    return coroutine.create(function()
      basalt.observe({ name = name, kind = "tool" }, function()
        for i = 1, steps do
          basalt.observe(name .. ".step" .. i, function() coroutine.yield() end)
        end
      end)
    end)
  end
  local jobs = { job("fetch_a", 2), job("fetch_b", 3) }
  -- A tiny round-robin scheduler: the jobs interleave, their spans do not mix.
  repeat
    local alive = false
    for _, co in ipairs(jobs) do
      if coroutine.status(co) ~= "dead" then
        assert(coroutine.resume(co))
        alive = true
      end
    end
  until not alive

  -- basalt.bind captures the current context for code run later elsewhere.
  local later = basalt.bind(function() basalt.observe("deferred", function() end) end)
  later()
end)

basalt.shutdown()

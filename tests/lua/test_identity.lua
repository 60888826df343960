-- Identity (semantics.md 9.1-9.2 and Decisions 6): tables and functions on
-- start_observe, start_observe_wrap and observe, validation before any span
-- opens, failing identity functions, basalt.set_identity and span:set_identity.
local T = require("testlib")
local basalt = require("basalt")

local USER, USER_NAME = "basalt.user.id", "basalt.user.name"
local ORG, ORG_NAME = "basalt.organization.id", "basalt.organization.name"

local function setup(opts)
  opts = opts or {}
  basalt.stats() -- deliver what the previous test's logger is still owed
  local mem = basalt.memory_exporter()
  local logs = {}
  opts.exporters = { mem }
  opts.logger = function(level, msg) logs[#logs + 1] = { level = level, msg = msg } end
  basalt.init(opts)
  return mem, logs
end

local function matching(logs, text)
  basalt.stats()
  local out = {}
  for _, l in ipairs(logs) do
    if l.msg:find(text, 1, true) then out[#out + 1] = l end
  end
  return out
end

local function ident(span)
  local a = span.attributes
  return { user = a[USER], user_name = a[USER_NAME], org = a[ORG], org_name = a[ORG_NAME] }
end

local function root(opts, fn, ...)
  opts.name = opts.name or "root"
  opts.feature_slug = opts.feature_slug or "support"
  return basalt.start_observe(opts, fn or function() end, ...)
end

-- ---- the shapes of 9.1 ------------------------------------------------------------------

local shapes = {
  { "canonical user and organization",
    { user = { id = "u1", name = "Ann" }, organization = { id = "o1", name = "Acme" } },
    { user = "u1", user_name = "Ann", org = "o1", org_name = "Acme" } },
  { "user part only", { user = { id = "u1" } }, { user = "u1" } },
  { "organization part only", { organization = { id = "o1", name = "Acme" } }, { org = "o1", org_name = "Acme" } },
  { "user as a string", { user = "u1" }, { user = "u1" } },
  { "user_id and user_name keys", { user_id = "u2", user_name = "Bob" }, { user = "u2", user_name = "Bob" } },
  { "userid key", { userid = "u3" }, { user = "u3" } },
  { "org key", { org = { id = "o2" } }, { org = "o2" } },
  { "organization_id and organization_name keys", { organization_id = "o3", organization_name = "Initech" },
    { org = "o3", org_name = "Initech" } },
  { "org_id and org_name keys", { user = "u4", org_id = "o4", org_name = "Globex" },
    { user = "u4", org = "o4", org_name = "Globex" } },
  { "keys compared case-insensitively", { User = { id = "u5" }, ORGANIZATION = { id = "o5" } }, { user = "u5", org = "o5" } },
  { "a map without user or organization is the user", { id = "u6", name = "Cy" }, { user = "u6", user_name = "Cy" } },
  { "numeric ids become strings", { user = { id = 42 }, organization = 7 }, { user = "42", org = "7" } },
  { "a sequence is user then organization", { "u7", { id = "o7", name = "Hooli" } },
    { user = "u7", org = "o7", org_name = "Hooli" } },
  { "a sequence with the user only", { { id = "u8" } }, { user = "u8" } },
  { "a bare string is the user, trimmed", "  u9  ", { user = "u9" } },
  { "a bare number is the user", 1234, { user = "1234" } },
  { "a blank string is no identity", "   ", {} },
  { "an empty name is not written", { user = { id = "u10", name = "" } }, { user = "u10" } },
}

for _, case in ipairs(shapes) do
  local label, value, want = case[1], case[2], case[3]
  T.test("identity shape on start_observe: " .. label, function()
    local mem = setup()
    root({ identity = value }, function() basalt.observe("child", function() end) end)
    T.eq(ident(mem:find("root")), want, "root")
    T.eq(ident(mem:find("child")), want, "child inherits")
  end)
end

T.test("every 9.1 shape works on observe and applies to its subtree", function()
  for _, case in ipairs(shapes) do
    local mem = setup()
    root({}, function()
      basalt.observe({ name = "with-id", identity = case[2] }, function()
        basalt.observe("below", function() end)
      end)
      basalt.observe("sibling", function() end)
    end)
    T.eq(ident(mem:find("with-id")), case[3], case[1])
    T.eq(ident(mem:find("below")), case[3], case[1] .. " (subtree)")
    T.eq(ident(mem:find("sibling")), {}, case[1] .. " (not the sibling)")
    T.eq(ident(mem:find("root")), {}, case[1] .. " (not the root)")
  end
end)

T.test("user and organization are independent: a nested scope setting the user keeps the inherited org", function()
  local mem = setup()
  root({ identity = { user = "outer-user", organization = "outer-org" } }, function()
    root({ name = "nested", identity = { user = "inner-user" } }, function()
      basalt.observe("leaf", function() end)
    end)
  end)
  T.eq(ident(mem:find("leaf")), { user = "inner-user", org = "outer-org" })
  T.eq(ident(mem:find("nested")), { user = "inner-user", org = "outer-org" })
end)

-- ---- identity functions -------------------------------------------------------------------

T.test("an identity function on start_observe gets the block's extra arguments", function()
  local got
  local mem = setup()
  local result = root({ identity = function(...)
    got = table.pack(...)
    return { user = { id = (...).user }, organization = { id = select(2, ...) } }
  end }, function(_, req, tenant) return req.user .. "@" .. tenant end, { user = "u-1" }, "t-9")
  T.eq(result, "u-1@t-9")
  T.eq(got.n, 2)
  T.eq(got[1], { user = "u-1" })
  T.eq(got[2], "t-9")
  T.eq(ident(mem:find("root")), { user = "u-1", org = "t-9" })
end)

T.test("an identity function on start_observe_wrap gets the wrapped call's arguments", function()
  local mem = setup()
  local handler = basalt.start_observe_wrap({
    name = "handle", feature_slug = "api",
    identity = function(req, extra)
      return { user = { id = req.headers["x-user"] }, organization = { id = extra } }
    end,
  }, function(req, extra) return "handled " .. req.headers["x-user"] .. " " .. extra end)
  T.eq(handler({ headers = { ["x-user"] = "alice" } }, "acme"), "handled alice acme")
  T.eq(handler({ headers = { ["x-user"] = "bob" } }, "initech"), "handled bob initech")
  local spans = mem:spans()
  T.eq(#spans, 2)
  T.eq(ident(spans[1]), { user = "alice", org = "acme" })
  T.eq(ident(spans[2]), { user = "bob", org = "initech" })
end)

T.test("an identity function on observe gets the block's extra arguments", function()
  local mem = setup()
  root({}, function()
    basalt.observe({ name = "step", identity = function(a, b) return { user = a, organization = b } end },
      function(_, a, b) basalt.observe("inner", function() end) return a .. b end, "u-2", "o-2")
  end)
  T.eq(ident(mem:find("step")), { user = "u-2", org = "o-2" })
  T.eq(ident(mem:find("inner")), { user = "u-2", org = "o-2" })
end)

T.test("an identity function on observe_wrap gets the wrapped call's arguments", function()
  local mem = setup()
  local fetch = basalt.observe_wrap({ name = "fetch", identity = function(user) return user end },
    function(user) return "fetched for " .. user end)
  root({}, function() T.eq(fetch("u-3"), "fetched for u-3") end)
  T.eq(ident(mem:find("fetch")), { user = "u-3" })
end)

T.test("an identity function returning nil means no identity, silently", function()
  local mem, logs = setup()
  local n = #logs
  root({ identity = function() return nil end })
  T.eq(ident(mem:find("root")), {})
  basalt.stats()
  T.eq(#logs, n, "nothing logged")
end)

T.test("an identity function is called once per entry", function()
  local calls = 0
  setup()
  local h = basalt.start_observe_wrap({ name = "h", feature_slug = "f",
    identity = function() calls = calls + 1 end }, function() end)
  h() h() h()
  T.eq(calls, 3)
end)

local failing = {
  { "raises", function() error("identity-fn-raised") end, "identity-fn-raised" },
  { "raises a table", function() error({ reason = "x" }) end, "error object is a table value" },
  { "returns an invalid identity", function() return { user = { name = "no id here" } } end,
    "Trace identity mapping requires a non-empty 'id'." },
  { "returns a name that is not a string", function() return { user = { id = "u", name = 5 } } end,
    "Trace identity 'name' must be a string." },
  { "returns a boolean", function() return true end, "Identity payload must be a mapping" },
  { "runs away", function() while true do end end, "instruction budget" },
  { "yields", function() coroutine.yield() end, "cannot yield" },
}

for _, case in ipairs(failing) do
  T.test("an identity function that " .. case[1] .. " is logged and the block still runs", function()
    local mem, logs = setup()
    local a, b = root({ name = "outer", identity = { user = "outer-user" } }, function()
      return root({ name = "r", identity = case[2] }, function(_, x)
        basalt.observe("child", function() end)
        return x, "ran"
      end, "arg")
    end)
    T.eq({ a, b }, { "arg", "ran" })
    local warned = matching(logs, case[3])
    T.eq(#warned, 1, "one warning containing " .. case[3])
    T.truthy(warned[1].msg:find("identity function", 1, true), "names the identity function: " .. warned[1].msg)
    T.truthy(warned[1].msg:find("stack traceback", 1, true), "with a traceback: " .. warned[1].msg)
    T.eq(ident(mem:find("r")), { user = "outer-user" }, "no identity from it; the enclosing one stays")
    T.eq(ident(mem:find("child")), { user = "outer-user" })
  end)
end

T.test("a failing identity function on a wrapped function lets the call return normally", function()
  local _, logs = setup()
  local h = basalt.start_observe_wrap({ name = "h", feature_slug = "f",
    identity = function(x) error("wrapped-identity-" .. x) end }, function(x) return x * 2 end)
  T.eq(h(21), 42)
  T.eq(h(21), 42)
  T.eq(#matching(logs, "wrapped-identity-21"), 1, "logged once for the same error")
end)

-- ---- validation (9.2): raised before any span opens, context restored ------------------

local invalid = {
  { { user = { name = "Ann" } }, "Trace identity mapping requires a non-empty 'id'." },
  { { user = { id = "" } }, "Trace identity mapping requires a non-empty 'id'." },
  { { organization = { id = false } }, "Trace identity mapping requires a non-empty 'id'." },
  { { user = { id = "u", name = 5 } }, "Trace identity 'name' must be a string." },
  { { user = true }, "Identity payload must be a mapping, TraceIdentity, or primitive identifier." },
  { true, "Identity payload must be a mapping, TraceIdentity, or primitive identifier." },
  -- the user part is valid, the organization part fails: nothing may be left behind
  { { user = { id = "u" }, organization = { name = "no id" } }, "Trace identity mapping requires a non-empty 'id'." },
}

T.test("an invalid identity on a top-level start_observe raises before any span opens", function()
  for _, case in ipairs(invalid) do
    local mem = setup()
    local ran = false
    T.raises(case[2], basalt.start_observe,
      { name = "r", feature_slug = "f", identity = case[1] }, function() ran = true end)
    T.falsy(ran, "the block did not run")
    T.eq(#mem:spans(), 0, "no span exported")
    T.falsy(basalt.current_span():is_recording(), "no current span left behind")
    -- the next trace starts clean
    root({ name = "after" })
    T.eq(ident(mem:find("after")), {})
    T.eq(mem:find("after").parent_span_id, nil)
  end
end)

T.test("an invalid identity inside a trace raises and the outer span stays current", function()
  for _, case in ipairs(invalid) do
    for _, form in ipairs({ "observe", "start_observe" }) do
      local mem = setup()
      root({ name = "outer", identity = { user = "outer-user" } }, function(outer)
        local ran = false
        T.raises(case[2], basalt[form], { name = "bad", feature_slug = "f", identity = case[1] },
          function() ran = true end)
        T.falsy(ran, form .. ": block did not run")
        T.eq(basalt.current_span():span_id(), outer:span_id(), form .. ": the outer span is current")
        basalt.observe("after", function() end)
      end)
      T.eq(mem:find("bad"), nil, form .. ": no span exported")
      T.eq(#mem:spans(), 2, form .. ": outer and after")
      T.eq(ident(mem:find("after")), { user = "outer-user" }, form .. ": context restored")
      T.eq(mem:find("after").parent_span_id, mem:find("outer").span_id)
    end
  end
end)

T.test("an invalid identity table on a wrapped function raises at the call, before any span", function()
  local mem = setup()
  local ran = false
  local h = basalt.start_observe_wrap({ name = "h", feature_slug = "f", identity = { user = { id = "" } } },
    function() ran = true end)
  T.raises("Trace identity mapping requires a non-empty 'id'.", h)
  T.falsy(ran)
  T.eq(#mem:spans(), 0)
  T.falsy(basalt.current_span():is_recording())
end)

-- ---- basalt.set_identity and span:set_identity (Decisions 6) -------------------------------

T.test("basalt.set_identity writes the current and the root span, and later spans inherit it", function()
  local mem = setup()
  root({ name = "root" }, function()
    basalt.observe("before", function() end)
    basalt.observe("current", function()
      basalt.set_identity({ user = { id = "dyn-user", name = "Dee" }, organization = { id = "dyn-org" } })
      basalt.observe("below-current", function() end)
    end)
    basalt.observe("later", function()
      basalt.observe("later-child", function() end)
    end)
    root({ name = "nested-own", identity = { user = "inner-user", organization = "inner-org" } }, function()
      basalt.observe("inner-leaf", function() end)
    end)
    root({ name = "nested-inherit" }, function()
      basalt.observe("nested-leaf", function() end)
    end)
  end)
  local dyn = { user = "dyn-user", user_name = "Dee", org = "dyn-org" }
  T.eq(ident(mem:find("current")), dyn, "current span")
  T.eq(ident(mem:find("root")), dyn, "root span")
  for _, name in ipairs({ "below-current", "later", "later-child", "nested-inherit", "nested-leaf" }) do
    T.eq(ident(mem:find(name)), dyn, name .. " inherits")
  end
  T.eq(ident(mem:find("before")), {}, "a span that ended before is untouched")
  local inner = { user = "inner-user", org = "inner-org" }
  T.eq(ident(mem:find("nested-own")), inner, "an inner start_observe with its own identity wins")
  T.eq(ident(mem:find("inner-leaf")), inner)
end)

T.test("basalt.set_identity reaches spans opened later in coroutines of the trace", function()
  local mem = setup()
  root({}, function()
    basalt.set_identity("co-user")
    local co = coroutine.wrap(function() basalt.observe("in-coroutine", function() end) end)
    co()
  end)
  T.eq(ident(mem:find("in-coroutine")), { user = "co-user" })
end)

T.test("basalt.set_identity does not leak into the next trace", function()
  local mem = setup()
  root({ name = "first" }, function() basalt.set_identity("u-first") end)
  root({ name = "second" }, function() basalt.observe("c", function() end) end)
  T.eq(ident(mem:find("first")), { user = "u-first" })
  T.eq(ident(mem:find("second")), {})
  T.eq(ident(mem:find("c")), {})
end)

T.test("basalt.set_identity validates like 9.2", function()
  setup()
  root({}, function()
    T.raises("Trace identity mapping requires a non-empty 'id'.", basalt.set_identity, { user = { id = "" } })
    T.raises("Trace identity 'name' must be a string.", basalt.set_identity, { user = { id = "u", name = {} } })
  end)
end)

T.test("span:set_identity writes that one span only", function()
  local mem = setup()
  root({ identity = { user = "base-user" } }, function()
    basalt.observe("target", function(span)
      span:set_identity({ user = { id = "span-user", name = "Sam" }, organization = { id = "span-org" } })
      basalt.observe("child-after", function() end)
    end)
    basalt.observe("sibling-after", function() end)
  end)
  T.eq(ident(mem:find("target")), { user = "span-user", user_name = "Sam", org = "span-org" })
  T.eq(ident(mem:find("child-after")), { user = "base-user" }, "children do not inherit it")
  T.eq(ident(mem:find("sibling-after")), { user = "base-user" })
  T.eq(ident(mem:find("root")), { user = "base-user" }, "the root is untouched")
end)

T.test("span:set_identity validates like 9.2", function()
  setup()
  root({}, function(span)
    T.raises("Trace identity mapping requires a non-empty 'id'.", span.set_identity, span, { user = { name = "x" } })
  end)
end)

T.run()

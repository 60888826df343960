-- An identity extractor: who made this request, read from an HTTP-request-like
-- table (headers carrying a user id and a tenant id).
--
--   build/basalt-lua examples/identity_from_request.lua
--
-- The identity function gets the same arguments as the handler (here the
-- request). It returns { user = {...}, organization = {...} } or nil. It runs
-- like a sampling policy: protected, with an instruction budget; if it raises
-- or returns something invalid, a warning is logged and the request is traced
-- without an identity, but it is still served.
local basalt = require("basalt")

-- HTTP header names are case-insensitive: look them up in lower case.
local function header(req, name)
  for k, v in pairs(req.headers or {}) do
    if type(k) == "string" and k:lower() == name then
      v = tostring(v):match("^%s*(.-)%s*$")
      if v ~= "" then return v end
    end
  end
  return nil
end

local function identity_from_request(req)
  local user, tenant = header(req, "x-user-id"), header(req, "x-tenant-id")
  if not user and not tenant then return nil end
  return {
    user = user and { id = user, name = header(req, "x-user-name") },
    organization = tenant and { id = tenant, name = header(req, "x-tenant-name") },
  }
end

local spans = basalt.memory_exporter()
basalt.init {
  service_name = "identity-example",
  exporters = { spans },
  logger = function(level, msg) print("[" .. level .. "] " .. msg:match("^[^\n]*")) end,
}

-- The request handler, traced: every call opens a root span whose identity
-- comes from the request, and every span below it inherits that identity.
local handle = basalt.start_observe_wrap({
  name = "POST /v1/answer",
  feature_slug = "support-chat",
  identity = identity_from_request,
}, function(req)
  local docs = basalt.observe({ name = "search_docs", kind = "retrieval" }, function(s)
    s:set_query(req.body.question)
    return 3
  end)
  return { status = 200, body = ("found %d documents"):format(docs) }
end)

local requests = {
  { headers = { ["X-User-Id"] = "u-1001", ["X-User-Name"] = "Ann", ["X-Tenant-Id"] = "t-acme",
                ["X-Tenant-Name"] = "Acme" }, body = { question = "How do I reset my password?" } },
  { headers = { ["x-user-id"] = "u-1002", ["x-tenant-id"] = "t-globex" }, body = { question = "Pricing?" } },
  { headers = { ["x-tenant-id"] = "t-acme" }, body = { question = "Anonymous question from Acme" } },
  { headers = { ["x-user-id"] = "   " }, body = { question = "Blank header: no identity" } },
  { headers = {}, body = { question = "No identity at all" } },
}

for _, req in ipairs(requests) do
  local res = handle(req)
  print(("%d %s"):format(res.status, res.body))
end

-- A broken extractor never breaks the request: it is logged once and ignored.
local fragile = basalt.start_observe_wrap({
  name = "GET /v1/health", feature_slug = "ops",
  identity = function(req) return { user = { id = req.headers["x-user-id"]:upper() } } end,
}, function() return { status = 200, body = "ok" } end)
local res = fragile({ headers = {} }) -- no x-user-id: the extractor raises
print(("%d %s (identity function failed, request served)"):format(res.status, res.body))
basalt.force_flush()

print()
print(string.format("%-16s %-12s %-8s %-10s %s", "span", "user", "name", "tenant", "tenant name"))
for _, s in ipairs(spans:spans()) do
  local a = s.attributes
  print(string.format("%-16s %-12s %-8s %-10s %s", s.name, a["basalt.user.id"] or "-",
    a["basalt.user.name"] or "-", a["basalt.organization.id"] or "-",
    a["basalt.organization.name"] or "-"))
end
basalt.shutdown()

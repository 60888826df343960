-- An identity function receives the handler's arguments: here an HTTP-like
-- request, from which it reads the user and tenant. The wrapped handler opens
-- a root span on every call.
local basalt = require("basalt")

basalt.init { service_name = "identity-example" }

local handle = basalt.start_observe_wrap({
  name = "http_request",
  feature_slug = "api",
  identity = function(request)
    local h = request.headers
    if not h["x-user-id"] then return nil end
    return { user = { id = h["x-user-id"] }, organization = { id = h["x-tenant-id"] } }
  end,
}, function(request)
  return basalt.observe({ name = "load_profile", kind = "function" }, function(span)
    span:set_function_name("load_profile")
    return "hello " .. request.headers["x-user-id"]
  end)
end)

print(handle { path = "/me", headers = { ["x-user-id"] = "u-1", ["x-tenant-id"] = "tenant-9" } })
print(handle { path = "/me", headers = { ["x-user-id"] = "u-2", ["x-tenant-id"] = "tenant-4" } })
basalt.shutdown()

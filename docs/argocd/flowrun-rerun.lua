-- Argo CD action "rerun" for appflow.flowrun.dev/FlowRun: creates a new FlowRun with the same
-- spec and labels, named <name>-<UTC time to the second>, which runs the flow again (a
-- FlowRun's spec is immutable, so running again means a new FlowRun). Left out on purpose:
-- annotations (the operator's start record belongs to the old FlowRun; Argo CD's tracking
-- annotation would make the new one look like part of the application and Argo CD would prune
-- it), the label app.kubernetes.io/instance (Argo CD's tracking label, for the same reason),
-- status and ownerReferences (deleting the old FlowRun must not delete the new one).
-- Written for Argo CD's Lua (gopher-lua, Lua 5.1, no string library) and later versions.
local os = require("os")

local name = obj.metadata.name .. "-" .. os.date("!%Y%m%d%H%M%S")
if #name > 253 then
  error("the FlowRun's name is too long to append a time to; create the new FlowRun by hand")
end

local labels = nil
if obj.metadata.labels ~= nil then
  for key, value in pairs(obj.metadata.labels) do
    if key ~= "app.kubernetes.io/instance" then
      labels = labels or {}
      labels[key] = value
    end
  end
end

local spec = {}
for key, value in pairs(obj.spec) do
  spec[key] = value
end

local flowrun = {
  apiVersion = obj.apiVersion,
  kind = obj.kind,
  metadata = { name = name, namespace = obj.metadata.namespace, labels = labels },
  spec = spec,
}
return { { operation = "create", resource = flowrun } }

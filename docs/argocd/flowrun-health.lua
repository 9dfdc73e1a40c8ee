-- Argo CD resource health check for appflow.flowrun.dev/FlowRun.
-- Healthy: Succeeded, Activated. Progressing: Pending, Starting, Running (and a FlowRun the
-- operator has not seen yet). Degraded: Failed, Canceled. Written for Lua 5.1 (gopher-lua, as
-- in Argo CD) and later.
local hs = { status = "Progressing", message = "Waiting for the operator to start the flow" }
if obj.status == nil or obj.status.phase == nil then
  return hs
end

local status = obj.status
local phase = status.phase
if status.message ~= nil and status.message ~= "" then
  hs.message = status.message
else
  hs.message = phase
end

if phase == "Succeeded" or phase == "Activated" then
  hs.status = "Healthy"
elseif phase == "Failed" or phase == "Canceled" then
  hs.status = "Degraded"
elseif phase == "Pending" or phase == "Starting" or phase == "Running" then
  hs.status = "Progressing"
else
  -- A phase newer than this check: say so rather than guess.
  hs.status = "Unknown"
  hs.message = "Unknown FlowRun phase " .. tostring(phase)
end
return hs

-- Argo CD resource health check for appflow.flowrun.dev/FlowRunSchedule.
-- Healthy: Ready (waiting for its next slot). Suspended: spec.suspend. Degraded: Stalled
-- (InvalidSchedule: the message names the field). Progressing: the operator has not seen the
-- schedule, or its latest change, yet. A schedule's own health does not follow its runs: each
-- FlowRun has its own (flowrun-health.lua). Written for Lua 5.1 (gopher-lua, as in Argo CD)
-- and later.
local hs = { status = "Progressing", message = "Waiting for the operator to read the schedule" }
local status = obj.status
if status == nil or status.conditions == nil then
  return hs
end
local generation = obj.metadata and obj.metadata.generation
if generation ~= nil and (status.observedGeneration == nil or status.observedGeneration < generation) then
  hs.message = "Waiting for the operator to read the latest change"
  return hs
end

local ready, stalled
for _, condition in ipairs(status.conditions) do
  if condition.type == "Ready" then
    ready = condition
  elseif condition.type == "Stalled" then
    stalled = condition
  end
end

if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = stalled.message or stalled.reason
elseif ready ~= nil and ready.status == "True" then
  if obj.spec ~= nil and obj.spec.suspend == true then
    hs.status = "Suspended"
  else
    hs.status = "Healthy"
  end
  hs.message = ready.message or ready.reason
elseif ready ~= nil then
  hs.message = ready.message or ready.reason
end
return hs

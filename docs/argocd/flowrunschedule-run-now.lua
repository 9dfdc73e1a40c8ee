-- Argo CD action "run-now" for appflow.flowrun.dev/FlowRunSchedule: sets the annotation
-- appflow.flowrun.dev/run-now to the UTC time to the second, so the operator creates one
-- FlowRun, <schedule>-now-<time>, from the template at once (see docs/schedules.md). Two
-- clicks within the same second ask for the same FlowRun, which is created once.
-- Written for Argo CD's Lua (gopher-lua, Lua 5.1, no string library) and later versions.
local os = require("os")
if obj.metadata.annotations == nil then
  obj.metadata.annotations = {}
end
obj.metadata.annotations["appflow.flowrun.dev/run-now"] = os.date("!%Y%m%d%H%M%S")
return obj

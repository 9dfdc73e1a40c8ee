-- Argo CD action discovery for appflow.flowrun.dev/FlowRunSchedule: "run-now" always, and
-- "suspend" or "resume", whichever changes spec.suspend.
-- Written for Argo CD's Lua (gopher-lua, Lua 5.1, no string library) and later versions.
local suspended = obj.spec ~= nil and obj.spec.suspend == true
local actions = {}
actions["run-now"] = { ["iconClass"] = "fa fa-fw fa-play", ["displayName"] = "Run now" }
actions["suspend"] = { ["iconClass"] = "fa fa-fw fa-pause", ["disabled"] = suspended }
actions["resume"] = { ["iconClass"] = "fa fa-fw fa-play-circle", ["disabled"] = not suspended }
return actions

-- Argo CD action discovery for appflow.flowrun.dev/FlowRun: "rerun" is always offered.
-- Written for Argo CD's Lua (gopher-lua, Lua 5.1, no string library) and later versions.
local actions = {}
actions["rerun"] = { ["iconClass"] = "fa fa-fw fa-redo", ["displayName"] = "Rerun the flow" }
return actions

-- Argo CD action "suspend" for appflow.flowrun.dev/FlowRunSchedule: spec.suspend = true (no
-- slot runs until it is resumed; runs already going are not touched). With automated sync
-- and selfHeal, Argo CD puts back what Git says: change Git instead.
obj.spec.suspend = true
return obj

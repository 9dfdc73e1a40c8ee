-- Argo CD action "resume" for appflow.flowrun.dev/FlowRunSchedule: spec.suspend = false
-- (slots that passed while suspended are not run). With automated sync and selfHeal, Argo CD
-- puts back what Git says: change Git instead.
obj.spec.suspend = false
return obj

{{/* The chart's name, or nameOverride. */}}
{{- define "flowrun-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's full name: the prefix of every object it creates. */}}
{{- define "flowrun-operator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Labels of every object. */}}
{{- define "flowrun-operator.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "flowrun-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: flowrun-operator
{{- end }}

{{/* The labels that select the operator's pods. */}}
{{- define "flowrun-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "flowrun-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "flowrun-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "flowrun-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "flowrun-operator.leaseName" -}}
{{- default (include "flowrun-operator.fullname" .) .Values.leaderElection.leaseName }}
{{- end }}

{{- define "flowrun-operator.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
What the operator does to FlowRuns, FlowRunSchedules and events, granted cluster-wide or per watched namespace.
Exactly the calls it makes (tests/rbac.rs proves it against an audit log):
- flowruns list, watch: the controller's watch (and the start-up check that the CRD exists);
- flowruns patch: its finalizer (server-side apply); delete: ttlSecondsAfterFinished, and a
  FlowRunSchedule's Replace and history limits; create: a FlowRunSchedule's slots and run-now;
- flowruns/status patch: the status (server-side apply);
- flowrunpolicies list, watch: the tenancy policies, read only;
- flowrunschedules list, watch: the schedules' watch; flowrunschedules/status patch: their status;
- events create, patch: events.k8s.io events, and their series counts.
*/}}
{{- define "flowrun-operator.rules" -}}
- apiGroups: [appflow.flowrun.dev]
  resources: [flowruns]
  verbs: [list, watch, create, patch, delete]
- apiGroups: [appflow.flowrun.dev]
  resources: [flowruns/status]
  verbs: [patch]
- apiGroups: [appflow.flowrun.dev]
  resources: [flowrunpolicies]
  verbs: [list, watch]
- apiGroups: [appflow.flowrun.dev]
  resources: [flowrunschedules]
  verbs: [list, watch]
- apiGroups: [appflow.flowrun.dev]
  resources: [flowrunschedules/status]
  verbs: [patch]
- apiGroups: [events.k8s.io]
  resources: [events]
  verbs: [create, patch]
{{- end }}

{{/*
The Lease of a shard, as the operator names it (flowrun_core::shard::lease_name): the base
name, '-', and the first 10 hex digits of the SHA-256 of the selector normalized: spaces
collapsed, none around , ( ) = !, and == written =. The RBAC grants exactly this name, so
a mismatch would leave the shard unable to lead (tests/rbac.rs runs a two-shard install).
*/}}
{{- define "flowrun-operator.shardLeaseName" -}}
{{- $normalized := regexReplaceAll "\\s+" (trim .selector) " " -}}
{{- $normalized = regexReplaceAll "\\s*([,()=!])\\s*" $normalized "${1}" -}}
{{- $normalized = replace "==" "=" $normalized -}}
{{- printf "%s-%s" .base (sha256sum $normalized | trunc 10) -}}
{{- end }}

{{/*
The operator's Deployments, as a YAML list: one without shards (sharding.shards empty), else
one per shard plus the catch-all. Each: name (the Deployment), shard, selector, replicas,
serviceAccount, lease, aws (region, roleArn).
*/}}
{{- define "flowrun-operator.instances" -}}
{{- $fullname := include "flowrun-operator.fullname" . -}}
{{- $base := include "flowrun-operator.leaseName" . -}}
{{- $sa := include "flowrun-operator.serviceAccountName" . -}}
{{- $sharding := .Values.sharding -}}
{{- $instances := list -}}
{{- if not $sharding.shards -}}
{{- $instances = append $instances (dict "name" $fullname "shard" "" "selector" "" "replicas" .Values.replicaCount "serviceAccount" $sa "lease" $base "aws" dict) -}}
{{- else -}}
{{- $label := required "sharding.label is required with sharding.shards: the label key the shards are chosen by" $sharding.label -}}
{{- $shards := $sharding.shards -}}
{{- if $sharding.catchAll.enabled -}}
{{- $shards = append $shards (dict "name" "catch-all" "selector" (printf "!%s" $label) "replicas" $sharding.catchAll.replicas "aws" ($sharding.catchAll.aws | default dict)) -}}
{{- end -}}
{{- $seen := dict -}}
{{- range $shards -}}
{{- if hasKey $seen .name -}}
{{- fail (printf "sharding.shards: the name %q is used twice" .name) -}}
{{- end -}}
{{- $_ := set $seen .name true -}}
{{- $selector := .selector | default (printf "%s=%s" $label .name) -}}
{{- if not (contains $label $selector) -}}
{{- fail (printf "sharding.shards[%s].selector %q does not read sharding.label %q: the catch-all (!%s) would serve its objects too" .name $selector $label $label) -}}
{{- end -}}
{{- $shardSa := $sa -}}
{{- if $.Values.serviceAccount.create -}}
{{- $shardSa = printf "%s-%s" $sa .name | trunc 63 | trimSuffix "-" -}}
{{- else if (.aws | default dict).roleArn -}}
{{- fail (printf "sharding.shards[%s].aws.roleArn needs serviceAccount.create: the role is the shard's own ServiceAccount's annotation" .name) -}}
{{- end -}}
{{- $replicas := .replicas -}}
{{- if kindIs "invalid" $replicas -}}
{{- $replicas = $.Values.replicaCount -}}
{{- end -}}
{{- $instances = append $instances (dict "name" (printf "%s-%s" $fullname .name | trunc 63 | trimSuffix "-") "shard" .name "selector" $selector "replicas" $replicas "serviceAccount" $shardSa "lease" (include "flowrun-operator.shardLeaseName" (dict "base" $base "selector" $selector)) "aws" (.aws | default dict)) -}}
{{- end -}}
{{- end -}}
{{- toYaml $instances -}}
{{- end }}

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

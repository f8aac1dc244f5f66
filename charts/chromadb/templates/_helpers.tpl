{{/* ---------------------------------------------------------------- names */}}

{{/* The chart's name, or nameOverride. */}}
{{- define "chromadb.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* <release>-chromadb, or the release name when it already contains the chart name. */}}
{{- define "chromadb.fullname" -}}
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

{{/* <chart>-<version>, for the helm.sh/chart label. */}}
{{- define "chromadb.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Name of the ServiceAccount the pods use: the created one, or serviceAccount.name. */}}
{{- define "chromadb.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "chromadb.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* --------------------------------------------------------------- labels */}}

{{- define "chromadb.selectorLabels" -}}
app.kubernetes.io/name: {{ include "chromadb.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Selects the pods that serve clients (not helm test or job pods of the release): Chroma's,
     or the gateway tier's with architecture: gateway. */}}
{{- define "chromadb.serverSelectorLabels" -}}
{{ include "chromadb.selectorLabels" . }}
app.kubernetes.io/component: {{ ternary "gateway" "server" (eq .Values.architecture "gateway") }}
{{- end }}

{{/* Labels every object of the release carries (selector labels, version, commonLabels). */}}
{{- define "chromadb.labels" -}}
helm.sh/chart: {{ include "chromadb.chart" . }}
{{ include "chromadb.selectorLabels" . }}
app.kubernetes.io/version: {{ include "chromadb.version" . | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: chromadb
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Object metadata every resource shares: name-independent labels and annotations.
     Call with (dict "ctx" $ "component" "server" "annotations" (dict ...)). */}}
{{- define "chromadb.metadata" -}}
namespace: {{ .ctx.Release.Namespace }}
labels:
  {{- include "chromadb.labels" .ctx | nindent 2 }}
  {{- with .component }}
  app.kubernetes.io/component: {{ . }}
  {{- end }}
{{- $annotations := merge (deepCopy (.annotations | default dict)) .ctx.Values.commonAnnotations }}
{{- with $annotations }}
annotations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* ------------------------------------------------------------- generic */}}

{{/* true/false given as a boolean or as "true"/"false". (dict "name" "key" "value" value) */}}
{{- define "chromadb.bool" -}}
{{- $v := .value -}}
{{- if kindIs "bool" $v -}}
{{- ternary "true" "false" $v -}}
{{- else if and (kindIs "string" $v) (has (lower $v) (list "true" "false")) -}}
{{- lower $v -}}
{{- else -}}
{{- fail (printf "%s must be true or false, got %v" .name $v) -}}
{{- end -}}
{{- end }}

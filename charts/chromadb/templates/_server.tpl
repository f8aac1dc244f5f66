{{/* ---------------------------------------------------------------- server
     The Chroma server: its version, config file, probes and Service address. */}}

{{/* The Chroma version being configured: chromadb.apiVersion or the appVersion. */}}
{{- define "chromadb.version" -}}
{{- $v := .Values.chromadb.apiVersion | default .Chart.AppVersion | toString -}}
{{- if not (regexMatch "^[0-9]+\\.[0-9]+\\.[0-9]+" $v) -}}
{{- fail (printf "chromadb.apiVersion must be a Chroma version like 1.5.9 or 0.6.3, got %q" $v) -}}
{{- end -}}
{{- if semverCompare "< 0.4.0-0" $v -}}
{{- fail (printf "chromadb.apiVersion %s is older than this chart supports (0.4.0 and newer); upgrade Chroma or use an older chart" $v) -}}
{{- end -}}
{{- $v -}}
{{- end }}

{{/* "true" when the configured Chroma is the legacy Python server (< 1.0). */}}
{{- define "chromadb.isLegacy" -}}
{{- semverCompare "< 1.0.0-0" (include "chromadb.version" .) -}}
{{- end }}

{{/* chromadb.allowReset as "true" or "false". */}}
{{- define "chromadb.allowReset" -}}
{{- include "chromadb.bool" (dict "name" "chromadb.allowReset" "value" .Values.chromadb.allowReset) -}}
{{- end }}

{{/* chromadb.isPersistent as "true" or "false". */}}
{{- define "chromadb.isPersistent" -}}
{{- include "chromadb.bool" (dict "name" "chromadb.isPersistent" "value" .Values.chromadb.isPersistent) -}}
{{- end }}

{{/* Chroma 1.x server config (YAML), extraConfig merged in deeply. */}}
{{- define "chromadb.serverConfig" -}}
{{- $c := .Values.chromadb -}}
{{- $config := dict
  "port" (include "chromadb.chromaPort" . | int)
  "listen_address" (include "chromadb.chromaHost" .)
  "persist_path" $c.persistDirectory
  "allow_reset" (eq (include "chromadb.allowReset" .) "true")
  "max_payload_size_bytes" (int64 $c.maxPayloadSizeBytes)
-}}
{{- with $c.corsAllowOrigins }}{{ $_ := set $config "cors_allow_origins" . }}{{ end -}}
{{- $config = mustMergeOverwrite $config (include "chromadb.openTelemetryConfig" . | fromYaml) -}}
{{- $config = mustMergeOverwrite $config (deepCopy $c.extraConfig) -}}
{{- toYaml $config -}}
{{- end }}

{{/* Path of the legacy log config inside the container (relative paths are under /chroma). */}}
{{- define "chromadb.legacyLogConfigPath" -}}
{{- $p := .Values.chromadb.logConfigFileLocation -}}
{{- ternary $p (printf "/chroma/%s" $p) (hasPrefix "/" $p) -}}
{{- end }}

{{/* HTTP path the probes use: /api/v2 from 0.6 on, /api/v1 before. (dict "ctx" $ "ready" bool) */}}
{{- define "chromadb.probePath" -}}
{{- $v := include "chromadb.version" .ctx -}}
{{- if semverCompare ">= 1.0.0-0" $v -}}
{{- ternary "/api/v2/healthcheck" "/api/v2/heartbeat" .ready -}}
{{- else if semverCompare ">= 0.6.0-0" $v -}}
/api/v2/heartbeat
{{- else -}}
/api/v1/heartbeat
{{- end -}}
{{- end }}

{{/* Port of the Service: service.port, or the Chroma port when unset. */}}
{{- define "chromadb.servicePort" -}}
{{- .Values.service.port | default .Values.chromadb.serverHttpPort | int -}}
{{- end }}

{{/* URL of Chroma through the Service, as other pods in the namespace reach it. */}}
{{- define "chromadb.serviceURL" -}}
{{- printf "%s://%s:%d" (include "chromadb.scheme" .) (include "chromadb.fullname" .) (include "chromadb.servicePort" . | int) -}}
{{- end }}

{{/* --------------------------------------------------------------- gateway
     The chromactl gateway in front of Chroma 1.x and the chromactl config it reads. */}}

{{/* "true" when the chromactl gateway runs in front of Chroma (1.x). */}}
{{- define "chromadb.gatewayOn" -}}
{{- and .Values.gateway.enabled (ne (include "chromadb.isLegacy" .) "true") -}}
{{- end }}

{{/* Port Chroma itself listens on: behind the gateway on 127.0.0.1, else the client port. */}}
{{- define "chromadb.chromaPort" -}}
{{- ternary .Values.gateway.chromaPort .Values.chromadb.serverHttpPort (eq (include "chromadb.gatewayOn" .) "true") | int -}}
{{- end }}

{{/* Address Chroma itself listens on: 127.0.0.1 behind the gateway, else chromadb.serverHost. */}}
{{- define "chromadb.chromaHost" -}}
{{- ternary "127.0.0.1" .Values.chromadb.serverHost (eq (include "chromadb.gatewayOn" .) "true") -}}
{{- end }}

{{/* The chromactl config file (chromactl.config.Settings) the gateway reads. */}}
{{- define "chromadb.chromactlConfig" -}}
{{- $c := .Values.chromadb -}}
{{- $auth := dict "enabled" (and $c.auth.enabled true) -}}
{{- if $c.auth.enabled -}}
{{- $tokens := list -}}
{{- if eq (include "chromadb.auth.hasToken" .) "true" -}}
{{- $tokens = append $tokens (dict "name" "admin" "role" "admin" "token_file" "/etc/chromactl/auth/token") -}}
{{- end -}}
{{- range $c.auth.credentials -}}
{{- $tokens = append $tokens (dict "name" .name "role" (.role | default "reader") "tenants" (.tenants | default (list "*")) "databases" (.databases | default (list "*")) "token_file" (printf "/etc/chromactl/credentials/%s/%s" .name (.key | default "token"))) -}}
{{- end -}}
{{- $tokens = concat $tokens (include "chromadb.backupAgentCredentials" . | fromYamlArray) -}}
{{- with $tokens -}}
{{- $_ := set $auth "token" (dict "credentials" .) -}}
{{- end -}}
{{- with (include "chromadb.auth.oidcConfig" . | fromYaml) -}}
{{- $_ := set $auth "oidc" . -}}
{{- end -}}
{{- with (include "chromadb.auth.clientCertConfig" . | fromYaml) -}}
{{- $_ := set $auth "client_cert" . -}}
{{- end -}}
{{- if eq $c.auth.type "basic" -}}
{{- $_ := set $auth "basic" (dict "users" (list (dict "role" "admin" "username_file" "/etc/chromactl/auth/username" "password_file" "/etc/chromactl/auth/password"))) -}}
{{- end -}}
{{- end -}}
{{- $gateway := dict
  "listen_address" $c.serverHost
  "port" (int $c.serverHttpPort)
  "metrics_port" (int .Values.gateway.metricsPort)
  "max_body_bytes" (int64 $c.maxPayloadSizeBytes)
  "allow_reset" (eq (include "chromadb.allowReset" .) "true")
  "write_wait_s" .Values.gateway.writeWaitSeconds
  "metrics" (include "chromadb.gatewayMetricsConfig" . | fromYaml)
  "auth" $auth
  "tls" (include "chromadb.tls.gatewayConfig" . | fromYaml)
  "audit" (dict "enabled" .Values.gateway.audit.enabled "reads" .Values.gateway.audit.reads)
-}}
{{- include "chromadb.gatewayClientLimits" (dict "ctx" . "gateway" $gateway) -}}
{{- with .Values.gateway.workers -}}
{{- $_ := set $gateway "workers" (int .) -}}
{{- end -}}
{{- if .Values.gateway.limits.enabled -}}
{{- $_ := set $gateway "limits" (dict "enabled" true "file" "/etc/chromactl/limits/limits.yaml") -}}
{{- end -}}
{{- $config := dict
  "chroma" (dict "url" (printf "http://127.0.0.1:%d" (int .Values.gateway.chromaPort)) "persist_path" $c.persistDirectory "version" (include "chromadb.version" .))
  "log" (dict "format" .Values.gateway.logFormat "level" "INFO")
  "gateway" $gateway
-}}
{{- toYaml $config -}}
{{- end }}

{{/* Slow-client limits of the gateway (gateway.clientLimits; docs/security.md): sets `client_limits`
     on the gateway section of chromactl's config.
       include "chromadb.gatewayClientLimits" (dict "ctx" . "gateway" $gateway) */}}
{{- define "chromadb.gatewayClientLimits" -}}
{{- $l := .ctx.Values.gateway.clientLimits -}}
{{- $_ := set .gateway "client_limits" (dict
  "header_timeout_s" $l.headerTimeoutSeconds
  "body_timeout_s" $l.bodyTimeoutSeconds
  "body_deadline_s" $l.bodyDeadlineSeconds
  "keep_alive_s" $l.keepAliveSeconds
  "max_connections" (int $l.maxConnections)
  "max_header_bytes" (int $l.maxHeaderBytes)
) -}}
{{- end }}

{{/* The rules of gateway.limits as chromactl reads them (snake_case keys), for the limits ConfigMap. */}}
{{- define "chromadb.gatewayLimitRules" -}}
{{- $keys := dict "requestsPerSecond" "requests_per_second" "burst" "burst" "concurrentRequests" "concurrent_requests" "recordsPerMinute" "records_per_minute" "maxCollections" "max_collections" "maxRecordsPerCollection" "max_records_per_collection" -}}
{{- $out := dict -}}
{{- range $section := list "credentials" "tenants" -}}
{{- $rules := dict -}}
{{- range $name, $rule := index $.Values.gateway.limits $section -}}
{{- $converted := dict -}}
{{- range $k, $v := $rule -}}
{{- $_ := set $converted (index $keys $k) $v -}}
{{- end -}}
{{- $_ := set $rules $name $converted -}}
{{- end -}}
{{- $_ := set $out $section $rules -}}
{{- end -}}
{{- toYaml $out -}}
{{- end }}

{{- /*
Slow-client limits of the gateway (values: gateway.clientLimits; docs/security.md).
Sets `client_limits` on the gateway section of chromactl's config:
  include "chromadb.gatewayClientLimits" (dict "ctx" . "gateway" $gateway)
*/ -}}
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

{{/* ------------------------------------------------------------- metrics
     Named templates of the observability feature (docs/observability.md). */}}

{{/* "true" when the gateway runs: it is what serves the metrics. */}}
{{- define "chromadb.metricsOn" -}}
{{- include "chromadb.gatewayOn" . -}}
{{- end }}

{{/* "true" when the OpenTelemetry Collector sidecar runs (1.x only: legacy Chroma has no OTLP config). */}}
{{- define "chromadb.otelCollectorOn" -}}
{{- and .Values.openTelemetry.enabled .Values.openTelemetry.collector.enabled (ne (include "chromadb.isLegacy" .) "true") -}}
{{- end }}

{{/* The `job` label Prometheus gives the release's metrics (the metrics Service's name). */}}
{{- define "chromadb.metricsJob" -}}
{{- include "chromadb.fullname" . }}-metrics
{{- end }}

{{/* Chroma 1.x `open_telemetry` settings, merged into the server config (empty when off). */}}
{{- define "chromadb.openTelemetryConfig" -}}
{{- $o := .Values.openTelemetry -}}
{{- if $o.enabled -}}
{{- $endpoint := $o.endpoint | default (ternary "http://127.0.0.1:4317" "" (eq (include "chromadb.otelCollectorOn" .) "true")) -}}
{{- if not $endpoint -}}
{{- fail "openTelemetry.enabled needs openTelemetry.endpoint (an OTLP gRPC URL such as http://otel-collector:4317) or openTelemetry.collector.enabled" -}}
{{- end -}}
{{- $otel := dict "endpoint" $endpoint "service_name" $o.serviceName -}}
{{- with $o.filters }}{{ $_ := set $otel "filters" . }}{{ end -}}
{{- toYaml (dict "open_telemetry" $otel) -}}
{{- end -}}
{{- end }}

{{/* The gateway's `metrics` section of the chromactl config: metrics' own settings passed through
     (chromadb.config.snakeKeys; the omitted keys are the chart's objects), and whether the data
     directory is in the pod. */}}
{{- define "chromadb.gatewayMetricsConfig" -}}
{{- $m := include "chromadb.config.snakeKeys" (omit .Values.metrics "service" "serviceMonitor" "podMonitor" "prometheusRule" "dashboard") | fromYaml -}}
{{- $_ := set $m "data_directory" (ne (include "chromadb.gatewayTier" .) "true") -}}
{{- toYaml $m -}}
{{- end }}

{{/* The ports the metrics Service and the monitors scrape. */}}
{{- define "chromadb.metricsPorts" -}}
- metrics
{{- if eq (include "chromadb.otelCollectorOn" .) "true" }}
- otel-metrics
{{- end }}
{{- end }}

{{/* One scrape endpoint of a ServiceMonitor/PodMonitor. (dict "ctx" $ "monitor" .Values.metrics.serviceMonitor "port" "metrics" "pod" bool) */}}
{{- define "chromadb.monitorEndpoint" -}}
{{- $m := .monitor -}}
- port: {{ .port }}
  path: /metrics
  scheme: {{ $m.scheme }}
  interval: {{ $m.interval }}
  scrapeTimeout: {{ $m.scrapeTimeout }}
  honorLabels: {{ $m.honorLabels }}
  {{- with $m.tlsConfig }}
  tlsConfig:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $m.basicAuth }}
  basicAuth:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $m.authorization }}
  authorization:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- $relabelings := $m.relabelings -}}
  {{- if .pod }}
  {{- /* A PodMonitor's job would be <namespace>/<name>: use the same job as the Service, so
         the alerts and the dashboard find the series either way. */}}
  {{- $relabelings = prepend $relabelings (dict "targetLabel" "job" "replacement" (include "chromadb.metricsJob" .ctx) "action" "replace") -}}
  {{- end }}
  {{- with $relabelings }}
  relabelings:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $m.metricRelabelings }}
  metricRelabelings:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}

{{/* Pod template annotation: restart the pod when the collector config changes. */}}
{{- define "chromadb.otelCollectorChecksum" -}}
{{- if eq (include "chromadb.otelCollectorOn" .) "true" }}
checksum/otel-collector: {{ include "chromadb.otelCollectorConfig" . | sha256sum }}
{{- end }}
{{- end }}

{{/* The collector's configuration: OTLP in from Chroma, Prometheus exporter out, traces on. */}}
{{- define "chromadb.otelCollectorConfig" -}}
{{- $c := .Values.openTelemetry.collector -}}
{{- $exporters := dict "prometheus" (dict "endpoint" (printf "0.0.0.0:%d" (int $c.metricsPort)) "resource_to_telemetry_conversion" (dict "enabled" true)) -}}
{{- $traceExporters := list -}}
{{- if $c.tracesEndpoint -}}
{{- $_ := set $exporters "otlp" (dict "endpoint" $c.tracesEndpoint "tls" (dict "insecure" $c.tracesInsecure)) -}}
{{- $traceExporters = list "otlp" -}}
{{- else -}}
{{- $_ := set $exporters "debug" (dict "verbosity" "basic") -}}
{{- $traceExporters = list "debug" -}}
{{- end -}}
{{- $config := dict
  "receivers" (dict "otlp" (dict "protocols" (dict "grpc" (dict "endpoint" "127.0.0.1:4317"))))
  "processors" (dict "batch" dict "memory_limiter" (dict "check_interval" "1s" "limit_percentage" 80 "spike_limit_percentage" 25))
  "exporters" $exporters
  "extensions" (dict "health_check" (dict "endpoint" "0.0.0.0:13133"))
  "service" (dict
    "extensions" (list "health_check")
    "telemetry" (dict "metrics" (dict "level" "none"))
    "pipelines" (dict
      "metrics" (dict "receivers" (list "otlp") "processors" (list "memory_limiter" "batch") "exporters" (list "prometheus"))
      "traces" (dict "receivers" (list "otlp") "processors" (list "memory_limiter" "batch") "exporters" $traceExporters)))
-}}
{{- toYaml $config -}}
{{- end }}

{{/* The collector sidecar container (included by statefulset.yaml). */}}
{{- define "chromadb.otelCollectorContainer" -}}
{{- if eq (include "chromadb.otelCollectorOn" .) "true" }}
{{- $c := .Values.openTelemetry.collector }}
- name: otel-collector
  image: {{ include "chromadb.imageRef" (dict "image" (merge (dict "registry" "" "digest" "") $c.image) "tag" $c.image.tag "global" .Values.global) }}
  imagePullPolicy: {{ $c.image.pullPolicy }}
  args: [--config=/etc/otel-collector/config.yaml]
  ports:
    - name: otel-metrics
      containerPort: {{ $c.metricsPort }}
      protocol: TCP
  livenessProbe:
    httpGet:
      path: /
      port: 13133
    periodSeconds: 10
  readinessProbe:
    httpGet:
      path: /
      port: 13133
    periodSeconds: 10
  resources:
    {{- toYaml $c.resources | nindent 4 }}
  securityContext:
    {{- toYaml .Values.securityContext | nindent 4 }}
  volumeMounts:
    - name: otel-collector-config
      mountPath: /etc/otel-collector
      readOnly: true
{{- end }}
{{- end }}

{{/* The collector's config volume (included by statefulset.yaml). */}}
{{- define "chromadb.otelCollectorVolume" -}}
{{- if eq (include "chromadb.otelCollectorOn" .) "true" }}
- name: otel-collector-config
  configMap:
    name: {{ include "chromadb.fullname" . }}-otel-collector
{{- end }}
{{- end }}

{{/* Metadata of the observability objects: the chart's, plus extra labels and another namespace.
     (dict "ctx" $ "component" "metrics" "labels" dict "annotations" dict "namespace" "") */}}
{{- define "chromadb.metricsMetadata" -}}
{{- $meta := include "chromadb.metadata" (dict "ctx" .ctx "component" .component "annotations" .annotations) | fromYaml -}}
{{- with .namespace }}{{ $_ := set $meta "namespace" . }}{{ end -}}
{{- with .labels }}{{ $_ := set $meta "labels" (merge (deepCopy .) $meta.labels) }}{{ end -}}
{{- toYaml $meta -}}
{{- end }}

{{/* NetworkPolicy ingress rules (a YAML list): Prometheus reaches the metrics ports (gateway,
     OpenTelemetry collector) from networkPolicy.metricsFrom (closed when empty). */}}
{{- define "chromadb.metricsNetworkPolicyIngress" -}}
{{- if and (eq (include "chromadb.gatewayOn" .) "true") .Values.networkPolicy.metricsFrom -}}
{{- $ports := list -}}
{{- range (include "chromadb.metricsPorts" . | fromYamlArray) }}{{ $ports = append $ports (dict "port" . "protocol" "TCP") }}{{ end -}}
{{- toYaml (list (dict "from" .Values.networkPolicy.metricsFrom "ports" $ports)) -}}
{{- end -}}
{{- end }}

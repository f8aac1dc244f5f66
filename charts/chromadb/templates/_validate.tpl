{{/* ------------------------------------------------------------ validation */}}

{{/* Checks across values that a schema cannot express; rendered once, by the StatefulSet. */}}
{{- define "chromadb.validate" -}}
{{- include "chromadb.haValidate" . -}}
{{- if eq (include "chromadb.gatewayTier" .) "true" -}}
{{- include "chromadb.validateGatewayTier" . -}}
{{- end -}}
{{- if gt (int .Values.replicaCount) 1 -}}
{{- fail (printf "replicaCount is %v, but single-node Chroma cannot run more than one replica on the same data: each replica would need its own volume and they would drift apart. Set replicaCount to 1 (or 0 to stop Chroma); for availability use backups and fast restarts, for more read throughput scale the pod's resources; past one node, run Chroma's distributed engine behind architecture: gateway (docs/scale-out.md)." .Values.replicaCount) -}}
{{- end -}}
{{- $path := .Values.chromadb.persistDirectory -}}
{{- if or (not (hasPrefix "/" $path)) (eq $path "/") -}}
{{- fail (printf "chromadb.persistDirectory must be an absolute directory other than /, got %q" $path) -}}
{{- end -}}
{{- if and (ne (include "chromadb.isLegacy" .) "true") .Values.chromadb.extraConfig -}}
{{- $known := list "port" "listen_address" "max_payload_size_bytes" "cors_allow_origins" "persist_path" "sqlite_filename" "allow_reset" "open_telemetry" "stdout_tracing" "circuit_breaker" "sqlitedb" "segment_manager" "sysdb" "mcmr_sysdb" "collections_with_segments_provider" "log" "executor" "cache" "default_knn_index" "enable_schema" "enable_span_indexing" "scorecard_enabled" "scorecard" "region" "tenants_to_migrate_immediately" "tenants_to_migrate_immediately_threshold" "min_records_for_invocation" "tenants_with_quantization_enabled" "tenants_with_maxscore_enabled" "enable_log_scouting" -}}
{{- range $key, $_ := .Values.chromadb.extraConfig -}}
{{- if not (has $key $known) -}}
{{- fail (printf "chromadb.extraConfig.%s is not a key of Chroma's server config, which would ignore it silently. Known keys: %s" $key (join ", " $known)) -}}
{{- end -}}
{{- end -}}
{{- range $key, $value := (dict "port" "chromadb.serverHttpPort" "persist_path" "chromadb.persistDirectory" "allow_reset" "chromadb.allowReset" "listen_address" "chromadb.serverHost") -}}
{{- if hasKey $.Values.chromadb.extraConfig $key -}}
{{- fail (printf "chromadb.extraConfig.%s is set by the chart: use %s instead" $key $value) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end }}

{{/* architecture: gateway runs no Chroma and holds no data: what needs either is refused. */}}
{{- define "chromadb.validateGatewayTier" -}}
{{- $why := "architecture is gateway: the release runs only gateway pods in front of scaleOut.chromaUrl, with no Chroma data directory of its own" -}}
{{- if not .Values.scaleOut.chromaUrl -}}
{{- fail (printf "%s. Set scaleOut.chromaUrl to the Chroma those pods forward to, e.g. http://chroma-frontend-service.chroma.svc.cluster.local:8000 (the frontend Service of Chroma's distributed chart)." $why) -}}
{{- end -}}
{{- if not (regexMatch "^https?://[^/]+/?$" .Values.scaleOut.chromaUrl) -}}
{{- fail (printf "scaleOut.chromaUrl is %q: give a URL of the form http(s)://host:port, without a path." .Values.scaleOut.chromaUrl) -}}
{{- end -}}
{{- if not .Values.gateway.enabled -}}
{{- fail (printf "%s, so gateway.enabled: false leaves nothing to run. Remove it, or use architecture: single-node." $why) -}}
{{- end -}}
{{- if .Values.podDisruptionBudget.enabled -}}
{{- fail (printf "%s; podDisruptionBudget is the Chroma pod's. The gateway pods' budget is scaleOut.minAvailable: remove podDisruptionBudget.enabled." $why) -}}
{{- end -}}
{{- $refused := dict
  "backup.enabled" .Values.backup.enabled
  "backup.restore.enabled" .Values.backup.restore.enabled
  "backup.continuous.enabled" .Values.backup.continuous.enabled
  "backup.drill.enabled" .Values.backup.drill.enabled
-}}
{{- range $key, $on := $refused -}}
{{- if $on -}}
{{- fail (printf "%s, so %s cannot apply: snapshots, the write log and restores work on a local data directory and the write hold on the Chroma beside it. Remove %s; back a distributed Chroma up with its object store's versioning and a backup of its system database (docs/scale-out.md#backups)." $why $key $key) -}}
{{- end -}}
{{- end -}}
{{- range $tenant, $rule := .Values.gateway.limits.tenants -}}
{{- range $cap := list "maxCollections" "maxRecordsPerCollection" -}}
{{- if hasKey $rule $cap -}}
{{- fail (printf "%s, so gateway.limits.tenants.%s.%s cannot be checked: caps are counted in Chroma's own database, which gateway pods cannot read. Remove it; rates and concurrency limits apply per gateway pod." $why $tenant $cap) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if and .Values.networkPolicy.enabled .Values.networkPolicy.egress.enabled (not .Values.networkPolicy.egress.rules) -}}
{{- fail (printf "%s, and networkPolicy.egress.enabled allows only DNS and the release's own pods: the gateway could not reach Chroma. Add a networkPolicy.egress.rules entry for Chroma's frontend (its namespace and port)." $why) -}}
{{- end -}}
{{- if and .Values.scaleOut.autoscaling.enabled (lt (int .Values.scaleOut.autoscaling.maxReplicas) (int .Values.scaleOut.autoscaling.minReplicas)) -}}
{{- fail (printf "scaleOut.autoscaling.maxReplicas (%v) is below minReplicas (%v): raise maxReplicas." .Values.scaleOut.autoscaling.maxReplicas .Values.scaleOut.autoscaling.minReplicas) -}}
{{- end -}}
{{- end }}

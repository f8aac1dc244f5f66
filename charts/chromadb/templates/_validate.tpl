{{/* ------------------------------------------------------------ validation */}}

{{/* Checks across values that a schema cannot express; rendered once, by the StatefulSet. */}}
{{- define "chromadb.validate" -}}
{{- if gt (int .Values.replicaCount) 1 -}}
{{- fail (printf "replicaCount is %v, but single-node Chroma cannot run more than one replica on the same data: each replica would need its own volume and they would drift apart. Set replicaCount to 1 (or 0 to stop Chroma); for availability use backups and fast restarts, for more read throughput scale the pod's resources." .Values.replicaCount) -}}
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

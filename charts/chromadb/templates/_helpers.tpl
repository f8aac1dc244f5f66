{{/* ---------------------------------------------------------------- names */}}

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

{{- define "chromadb.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

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

{{/* Selects the Chroma server pod only (not helm test or job pods of the release). */}}
{{- define "chromadb.serverSelectorLabels" -}}
{{ include "chromadb.selectorLabels" . }}
app.kubernetes.io/component: server
{{- end }}

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

{{/* --------------------------------------------------------------- images */}}

{{/* An image reference, registry/repository:tag or registry/repository@digest.
     global.imageRegistry replaces the image's own registry (a mirror keeps the repository path);
     an empty registry leaves the bare repository (Docker Hub).
     (dict "image" .Values.image "tag" <default tag> "global" .Values.global "key" "image") */}}
{{- define "chromadb.imageRef" -}}
{{- $registry := (.global).imageRegistry | default .image.registry | default "" | trimSuffix "/" -}}
{{- $repository := .image.repository | default "" -}}
{{- if not $repository -}}
{{- fail (printf "%s.repository is empty: set it to the image's repository, e.g. chroma-core/chroma" .key) -}}
{{- end -}}
{{- $first := regexFind "^[^/]+" $repository -}}
{{- if and $registry (contains "/" $repository) (or (contains "." $first) (contains ":" $first) (eq $first "localhost")) -}}
{{- fail (printf "%s.repository %q starts with a registry host (%s) while the registry is %q: put the host in %s.registry (or global.imageRegistry) and leave only the path in %s.repository" .key $repository $first $registry .key .key) -}}
{{- end -}}
{{- $ref := ternary (printf "%s/%s" $registry $repository) $repository (ne $registry "") -}}
{{- if .image.digest -}}
{{- printf "%s@%s" $ref .image.digest -}}
{{- else -}}
{{- printf "%s:%s" $ref (toString (.image.tag | default .tag)) -}}
{{- end -}}
{{- end }}

{{/* The Chroma server image. */}}
{{- define "chromadb.image" -}}
{{- include "chromadb.imageRef" (dict "image" .Values.image "tag" (include "chromadb.version" .) "global" .Values.global "key" "image") -}}
{{- end }}

{{/* The chromactl image (gateway, backup, restore, helm tests); its tag defaults to the chart version. */}}
{{- define "chromadb.chromactlImage" -}}
{{- include "chromadb.imageRef" (dict "image" .Values.chromactl.image "tag" .Chart.Version "global" .Values.global "key" "chromactl.image") -}}
{{- end }}

{{/* The `image:` and `imagePullPolicy:` lines of a chromactl container:
       - name: backup
         {{- include "chromadb.chromactlContainerImage" $ | nindent 10 }} */}}
{{- define "chromadb.chromactlContainerImage" -}}
image: {{ include "chromadb.chromactlImage" . }}
imagePullPolicy: {{ .Values.chromactl.image.pullPolicy }}
{{- end }}

{{/* The `imagePullSecrets:` block every pod spec of the chart includes (StatefulSet, hooks, Jobs,
     CronJobs, helm test pods): global.imagePullSecrets then image.pullSecrets, names deduplicated.
       spec:
         {{- include "chromadb.imagePullSecrets" $ | nindent 6 }}   (renders nothing when none) */}}
{{- define "chromadb.imagePullSecrets" -}}
{{- $secrets := list -}}
{{- range (concat ((.Values.global).imagePullSecrets | default list) (.Values.image.pullSecrets | default list)) -}}
{{- $name := ternary . (get (kindIs "map" . | ternary . dict) "name") (kindIs "string" .) -}}
{{- if not $name -}}
{{- fail (printf "global.imagePullSecrets / image.pullSecrets entries must be a Secret name or {name: ...}, got %v" .) -}}
{{- end -}}
{{- if not (has $name $secrets) }}{{ $secrets = append $secrets $name }}{{ end -}}
{{- end -}}
{{- with $secrets }}
imagePullSecrets:
{{- range . }}
  - name: {{ . }}
{{- end }}
{{- end }}
{{- end }}

{{/* ------------------------------------------------------------- versions */}}

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

{{/* ----------------------------------------------------------- validation */}}

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

{{- define "chromadb.allowReset" -}}
{{- include "chromadb.bool" (dict "name" "chromadb.allowReset" "value" .Values.chromadb.allowReset) -}}
{{- end }}

{{- define "chromadb.isPersistent" -}}
{{- include "chromadb.bool" (dict "name" "chromadb.isPersistent" "value" .Values.chromadb.isPersistent) -}}
{{- end }}

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

{{/* --------------------------------------------------------- server config */}}

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

{{- define "chromadb.servicePort" -}}
{{- .Values.service.port | default .Values.chromadb.serverHttpPort | int -}}
{{- end }}

{{/* URL of Chroma through the Service, as other pods in the namespace reach it. */}}
{{- define "chromadb.serviceURL" -}}
{{- printf "%s://%s:%d" (include "chromadb.scheme" .) (include "chromadb.fullname" .) (include "chromadb.servicePort" . | int) -}}
{{- end }}

{{/* A helm test pod running one `chromactl smoke` check. (dict "ctx" $ "check" "heartbeat") */}}
{{- define "chromadb.testPod" -}}
{{- $ := .ctx -}}
apiVersion: v1
kind: Pod
metadata:
  name: {{ include "chromadb.fullname" $ }}-test-{{ .check }}
  {{- include "chromadb.metadata" (dict "ctx" $ "component" "test" "annotations" (dict "helm.sh/hook" "test" "helm.sh/hook-weight" (toString .weight) "helm.sh/hook-delete-policy" "before-hook-creation,hook-succeeded")) | nindent 2 }}
spec:
  restartPolicy: Never
  automountServiceAccountToken: false
  enableServiceLinks: false
  securityContext:
    {{- toYaml $.Values.podSecurityContext | nindent 4 }}
  {{- with (include "chromadb.imagePullSecrets" $) }}{{ . | nindent 2 }}{{ end }}
  containers:
    - name: smoke
      {{- include "chromadb.chromactlContainerImage" $ | nindent 6 }}
      command: [chromactl, smoke, --check, {{ .check }}]
      env:
        - name: CHROMA_URL
          value: {{ include "chromadb.serviceURL" $ | quote }}
        {{- $auth := $.Values.chromadb.auth }}
        {{- if and (eq (include "chromadb.gatewayOn" $) "true") $auth.enabled }}
        {{- if eq (include "chromadb.auth.hasToken" $) "true" }}
        - name: CHROMA_TOKEN_FILE
          value: /etc/chromactl/auth/token
        - name: CHROMA_AUTH_TOKEN_TRANSPORT_HEADER
          value: {{ include "chromadb.tokenHeader" $ | quote }}
        {{- else }}
        - name: CHROMA_USERNAME_FILE
          value: /etc/chromactl/auth/username
        - name: CHROMA_PASSWORD_FILE
          value: /etc/chromactl/auth/password
        {{- end }}
        {{- end }}
        {{- with (include "chromadb.tls.trustEnv" $ | trim) }}{{ . | nindent 8 }}{{ end }}
      {{- $authOn := and (eq (include "chromadb.gatewayOn" $) "true") $.Values.chromadb.auth.enabled }}
      {{- if or $authOn (eq (include "chromadb.tls.on" $) "true") }}
      volumeMounts:
        {{- if $authOn }}
        - name: auth
          mountPath: /etc/chromactl/auth
          readOnly: true
        {{- end }}
        {{- with (include "chromadb.tls.trustVolumeMounts" $ | trim) }}{{ . | nindent 8 }}{{ end }}
      {{- end }}
      resources:
        requests:
          cpu: 10m
          memory: 32Mi
        limits:
          cpu: 200m
          memory: 128Mi
      securityContext:
        {{- toYaml $.Values.securityContext | nindent 8 }}
  {{- if or $authOn (eq (include "chromadb.tls.on" $) "true") }}
  volumes:
    {{- if $authOn }}
    - name: auth
      secret:
        secretName: {{ include "chromadb.authSecretName" $ }}
        defaultMode: 0440
    {{- end }}
    {{- with (include "chromadb.tls.trustVolumes" $ | trim) }}{{ . | nindent 4 }}{{ end }}
  {{- end }}
{{- end }}

{{/* -------------------------------------------------------------- gateway */}}

{{/* "true" when the chromactl gateway runs in front of Chroma (1.x). */}}
{{- define "chromadb.gatewayOn" -}}
{{- and .Values.gateway.enabled (ne (include "chromadb.isLegacy" .) "true") -}}
{{- end }}

{{/* Port Chroma itself listens on: behind the gateway on 127.0.0.1, else the client port. */}}
{{- define "chromadb.chromaPort" -}}
{{- ternary .Values.gateway.chromaPort .Values.chromadb.serverHttpPort (eq (include "chromadb.gatewayOn" .) "true") | int -}}
{{- end }}

{{- define "chromadb.chromaHost" -}}
{{- ternary "127.0.0.1" .Values.chromadb.serverHost (eq (include "chromadb.gatewayOn" .) "true") -}}
{{- end }}

{{/* Name of the Secret with the credentials: the user's, or the generated chromadb-auth. */}}
{{- define "chromadb.authSecretName" -}}
{{- .Values.chromadb.auth.existingSecret | default "chromadb-auth" -}}
{{- end }}

{{/* The header clients put the token in, as Chroma's clients name it. */}}
{{- define "chromadb.tokenHeader" -}}
{{- $t := .Values.chromadb.auth.token -}}
{{- $h := upper (replace "_" "-" ($t.headerType | default $t.tokenHeader)) -}}
{{- ternary "X-Chroma-Token" "Authorization" (eq $h "X-CHROMA-TOKEN") -}}
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
-}}
{{- include "chromadb.gatewayClientLimits" (dict "ctx" . "gateway" $gateway) -}}
{{- $config := dict
  "chroma" (dict "url" (printf "http://127.0.0.1:%d" (int .Values.gateway.chromaPort)) "persist_path" $c.persistDirectory "version" (include "chromadb.version" .))
  "log" (dict "format" .Values.gateway.logFormat "level" "INFO")
  "gateway" $gateway
-}}
{{- toYaml $config -}}
{{- end }}

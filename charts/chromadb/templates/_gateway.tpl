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
{{- $tokens = append $tokens (dict "name" "admin" "role" "admin" "token_file" (printf "%s/token" (include "chromadb.path" "auth"))) -}}
{{- end -}}
{{- range $c.auth.credentials -}}
{{- $token := include "chromadb.config.grant" (omit . "secretName" "key") | fromYaml -}}
{{- $_ := set $token "token_file" (printf "%s/%s/%s" (include "chromadb.path" "credentials") .name (.key | default "token")) -}}
{{- $tokens = append $tokens $token -}}
{{- end -}}
{{- $tokens = concat $tokens (include "chromadb.backupAgentCredentials" . | fromYamlArray) -}}
{{- $tokens = concat $tokens (include "chromadb.haCredentials" . | fromYamlArray) -}}
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
{{- $_ := set $auth "basic" (dict "users" (list (dict "role" "admin" "username_file" (printf "%s/username" (include "chromadb.path" "auth")) "password_file" (printf "%s/password" (include "chromadb.path" "auth"))))) -}}
{{- end -}}
{{- end -}}
{{- /* gateway's own settings pass through (chromadb.config.snakeKeys): metricsPort, writeWaitSeconds,
       workers, clientLimits, audit and any new one; the keys omitted are the chart's, or
       rendered below from other values. */ -}}
{{- $gateway := include "chromadb.config.snakeKeys" (omit .Values.gateway "enabled" "chromaPort" "logFormat" "limits" "resources" "console") | fromYaml -}}
{{- $_ := set $gateway "console" (include "chromadb.consoleConfig" . | fromYaml) -}}
{{- $_ = set $gateway "listen_address" $c.serverHost -}}
{{- $_ = set $gateway "port" (int $c.serverHttpPort) -}}
{{- $_ = set $gateway "max_body_bytes" (int64 $c.maxPayloadSizeBytes) -}}
{{- $_ = set $gateway "allow_reset" (eq (include "chromadb.allowReset" .) "true") -}}
{{- $_ = set $gateway "metrics" (include "chromadb.gatewayMetricsConfig" . | fromYaml) -}}
{{- $_ = set $gateway "auth" $auth -}}
{{- $_ = set $gateway "tls" (include "chromadb.tls.gatewayConfig" . | fromYaml) -}}
{{- /* With HA one process writes the replication log, in order (chromadb.haValidate refuses more). */ -}}
{{- if eq (include "chromadb.haOn" .) "true" }}{{ $_ = set $gateway "workers" 1 }}{{ end -}}
{{- if .Values.gateway.limits.enabled -}}
{{- $_ = set $gateway "limits" (dict "enabled" true "file" (printf "%s/limits.yaml" (include "chromadb.path" "limits")) "pause_refused_connections" .Values.gateway.limits.pauseRefusedConnections) -}}
{{- end -}}
{{- $config := dict
  "chroma" (include "chromadb.gatewayUpstream" . | fromYaml)
  "log" (dict "format" .Values.gateway.logFormat "level" "INFO")
  "gateway" $gateway
-}}
{{- toYaml $config -}}
{{- end }}

{{/* The `chroma` section of chromactl's config: the Chroma beside the gateway, or the one the
     gateway tier fronts (scaleOut.chromaUrl; no data directory to read). */}}
{{- define "chromadb.gatewayUpstream" -}}
{{- if eq (include "chromadb.gatewayTier" .) "true" -}}
{{- toYaml (dict "url" .Values.scaleOut.chromaUrl "version" (include "chromadb.version" .)) -}}
{{- else -}}
{{- toYaml (dict "url" (printf "http://127.0.0.1:%d" (int .Values.gateway.chromaPort)) "persist_path" .Values.chromadb.persistDirectory "version" (include "chromadb.version" .)) -}}
{{- end -}}
{{- end }}

{{/* The rules of gateway.limits as chromactl reads them, for the limits ConfigMap: by credential
     and by tenant name (kept as written), each rule passed through (chromadb.config.snakeKeys). */}}
{{- define "chromadb.gatewayLimitRules" -}}
{{- $out := dict -}}
{{- range $section := list "credentials" "tenants" -}}
{{- $rules := dict -}}
{{- range $name, $rule := index $.Values.gateway.limits $section -}}
{{- $_ := set $rules $name (include "chromadb.config.snakeKeys" $rule | fromYaml) -}}
{{- end -}}
{{- $_ := set $out $section $rules -}}
{{- end -}}
{{- toYaml $out -}}
{{- end }}

{{/* "true" with architecture: gateway (the gateway tier in front of a Chroma elsewhere). */}}
{{- define "chromadb.gatewayTier" -}}
{{- eq .Values.architecture "gateway" -}}
{{- end }}

{{/* The gateway container: beside Chroma in the StatefulSet's pod, or alone in the gateway
     tier's Deployment (no data directory, no backup agent there). */}}
{{- define "chromadb.gatewayContainer" -}}
{{- $c := .Values.chromadb -}}
{{- $tier := eq (include "chromadb.gatewayTier" .) "true" -}}
- name: gateway
  image: {{ include "chromadb.chromactlImage" . }}
  imagePullPolicy: {{ .Values.chromactl.image.pullPolicy }}
  command: [chromactl, gateway, --config, {{ include "chromadb.path.configFile" . }}]
  env:
    {{- /* Without gateway.workers, the workers follow the CPU limit (read from the
           cgroup) or else this request. */}}
    - name: CHROMACTL_CPU_REQUEST
      valueFrom:
        resourceFieldRef:
          containerName: gateway
          resource: requests.cpu
          divisor: 1m
    {{- with (include "chromadb.haGatewayEnv" . | trim) }}{{ . | nindent 4 }}{{ end }}
  ports:
    - name: http
      containerPort: {{ $c.serverHttpPort }}
      protocol: TCP
    - name: metrics
      containerPort: {{ .Values.gateway.metricsPort }}
      protocol: TCP
  {{- /* Readiness and start-up follow Chroma's (the gateway forwards the healthcheck);
         liveness is the gateway's own: it must not restart for a slow Chroma. */}}
  startupProbe:
    tcpSocket:
      port: http
    periodSeconds: 1
    failureThreshold: 60
  readinessProbe:
    {{- include "chromadb.tls.readinessAction" . | trim | nindent 4 }}
    periodSeconds: {{ .Values.readinessProbe.periodSeconds }}
    timeoutSeconds: {{ .Values.readinessProbe.timeoutSeconds }}
    failureThreshold: {{ .Values.readinessProbe.failureThreshold }}
  livenessProbe:
    tcpSocket:
      port: http
    periodSeconds: {{ .Values.livenessProbe.periodSeconds }}
    timeoutSeconds: {{ .Values.livenessProbe.timeoutSeconds }}
    failureThreshold: {{ .Values.livenessProbe.failureThreshold }}
  {{- with (include "chromadb.haGatewayLifecycle" . | trim) }}{{ . | nindent 2 }}{{ end }}
  resources:
    {{- toYaml .Values.gateway.resources | nindent 4 }}
  securityContext:
    {{- toYaml .Values.securityContext | nindent 4 }}
  volumeMounts:
    - name: chromactl-config
      mountPath: {{ include "chromadb.path" "config" }}
      readOnly: true
    {{- if not $tier }}
    - name: data
      mountPath: {{ $c.persistDirectory }}
    {{- end }}
    - name: tmp
      mountPath: /tmp
    {{- if $c.auth.enabled }}
    - name: auth
      mountPath: {{ include "chromadb.path" "auth" }}
      readOnly: true
    {{- range $c.auth.credentials }}
    - name: credential-{{ .name }}
      mountPath: {{ include "chromadb.path" "credentials" }}/{{ .name }}
      readOnly: true
    {{- end }}
    {{- end }}
    {{- with (include "chromadb.tls.volumeMounts" . | trim) }}{{ . | nindent 4 }}{{ end }}
    {{- with (include "chromadb.auth.volumeMounts" . | trim) }}{{ . | nindent 4 }}{{ end }}
    {{- if not $tier }}
    {{- with include "chromadb.backupGatewayVolumeMounts" . | trim }}{{ . | nindent 4 }}{{ end }}
    {{- with include "chromadb.haVolumeMounts" . | trim }}{{ . | nindent 4 }}{{ end }}
    {{- end }}
    {{- if .Values.gateway.limits.enabled }}
    - name: limits
      mountPath: {{ include "chromadb.path" "limits" }}
      readOnly: true
    {{- end }}
    {{- if eq (include "chromadb.consoleKey" .) "true" }}
    - name: console
      mountPath: {{ include "chromadb.path" "console" }}
      readOnly: true
    {{- end }}
{{- end }}

{{/* Volumes the gateway container mounts (its config, limits, credentials, TLS). */}}
{{- define "chromadb.gatewayVolumes" -}}
{{- $c := .Values.chromadb -}}
- name: chromactl-config
  configMap:
    name: {{ include "chromadb.fullname" . }}-chromactl
{{- if .Values.gateway.limits.enabled }}
- name: limits
  configMap:
    name: {{ include "chromadb.fullname" . }}-limits
{{- end }}
{{- if eq (include "chromadb.consoleKey" .) "true" }}
- name: console
  secret:
    secretName: {{ include "chromadb.consoleSecretName" . }}
    defaultMode: 0440
{{- end }}
{{- if $c.auth.enabled }}
- name: auth
  secret:
    secretName: {{ include "chromadb.authSecretName" . }}
    defaultMode: 0440
{{- range $c.auth.credentials }}
- name: credential-{{ .name }}
  secret:
    secretName: {{ .secretName }}
    defaultMode: 0440
{{- end }}
{{- end }}
{{- with (include "chromadb.tls.volumes" . | trim) }}{{ . | nindent 0 }}{{ end }}
{{- with (include "chromadb.auth.volumes" . | trim) }}{{ . | nindent 0 }}{{ end }}
{{- with (include "chromadb.haVolumes" . | trim) }}{{ . | nindent 0 }}{{ end }}
{{- end }}

{{/* gateway.console as chromactl's gateway.console: the session key from the chart's Secret
     (every pod of the release seals with it), OIDC only with a client id and OIDC auth. */}}
{{- define "chromadb.consoleConfig" -}}
{{- $v := .Values.gateway.console -}}
{{- $console := include "chromadb.config.snakeKeys" (omit $v "oidc" "sessionKeySecret") | fromYaml -}}
{{- if eq (include "chromadb.consoleKey" .) "true" -}}
{{- $_ := set $console "session_key_file" (printf "%s/key" (include "chromadb.path" "console")) -}}
{{- end -}}
{{- if $v.oidc.clientId -}}
{{- if not (and .Values.chromadb.auth.enabled (eq .Values.chromadb.auth.type "oidc")) -}}
{{- fail "gateway.console.oidc.clientId signs browsers in against chromadb.auth.oidc.issuer: set chromadb.auth.type: oidc (with chromadb.auth.oidc), or remove gateway.console.oidc.clientId" -}}
{{- end -}}
{{- $_ := set $console "oidc" (include "chromadb.config.snakeKeys" $v.oidc | fromYaml) -}}
{{- end -}}
{{- toYaml $console -}}
{{- end }}

{{/* Whether the release has a console session key: with auth on (sessions carry a credential);
     without it a session holds nothing and each pod seals with a key of its own. */}}
{{- define "chromadb.consoleKey" -}}
{{- and (eq (include "chromadb.gatewayOn" .) "true") .Values.gateway.console.enabled .Values.chromadb.auth.enabled -}}
{{- end }}

{{/* The Secret holding the console's session key: the user's, or the one the chart makes. */}}
{{- define "chromadb.consoleSecretName" -}}
{{- .Values.gateway.console.sessionKeySecret | default (printf "%s-console" (include "chromadb.fullname" .)) -}}
{{- end }}

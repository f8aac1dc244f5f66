{{/* ------------------------------------------------------ high availability
     highAvailability: several Chroma pods of the StatefulSet, each with its own data volume and
     gateway. A Lease names the primary; each pod labels itself chromactl.io/role (primary,
     standby) at run time, which the Services select. The shared templates include these with
     one line each; chromactl's side is src/chromactl/ha/ (docs/high-availability.md). */}}

{{/* "true" when highAvailability is on (single-node architecture only). */}}
{{- define "chromadb.haOn" -}}
{{- and .Values.highAvailability.enabled (ne (include "chromadb.gatewayTier" .) "true") -}}
{{- end }}

{{/* The StatefulSet's replicas: highAvailability.replicas with HA (replicaCount 0 still stops
     every pod), else replicaCount. */}}
{{- define "chromadb.replicas" -}}
{{- if and (eq (include "chromadb.haOn" .) "true") (ne (int .Values.replicaCount) 0) -}}
{{- int .Values.highAvailability.replicas -}}
{{- else -}}
{{- int .Values.replicaCount -}}
{{- end -}}
{{- end }}

{{/* The label each pod sets on itself at run time, and its values. */}}
{{- define "chromadb.haRoleLabel" -}}chromactl.io/role{{- end }}

{{/* The Lease whose holder is the primary. */}}
{{- define "chromadb.haLeaseName" -}}
{{- printf "%s-leader" (include "chromadb.fullname" .) -}}
{{- end }}

{{/* The generated Secret with the token standbys present to the primary. */}}
{{- define "chromadb.haSecretName" -}}
{{- printf "%s-ha" (include "chromadb.fullname" .) -}}
{{- end }}

{{/* Checks a schema cannot express; rendered by the StatefulSet (chromadb.validate). */}}
{{- define "chromadb.haValidate" -}}
{{- $ha := .Values.highAvailability -}}
{{- if $ha.enabled -}}
{{- if eq (include "chromadb.gatewayTier" .) "true" -}}
{{- fail "highAvailability.enabled runs several Chroma pods with their own data, but architecture is gateway (no Chroma in the release): remove highAvailability.enabled; a distributed Chroma behind scaleOut.chromaUrl has its own availability." -}}
{{- end -}}
{{- if eq (include "chromadb.isLegacy" .) "true" -}}
{{- fail (printf "highAvailability.enabled needs Chroma 1.x, but chromadb.apiVersion is %s (the legacy 0.x server): its writes cannot be replicated. Migrate to 1.x first (docs/migrate-from-amikos-chart.md), or remove highAvailability.enabled." (include "chromadb.version" .)) -}}
{{- end -}}
{{- if not .Values.gateway.enabled -}}
{{- fail "highAvailability.enabled needs the chromactl gateway in each pod (it takes part in the leader election and replicates the writes): set gateway.enabled=true, or remove highAvailability.enabled." -}}
{{- end -}}
{{- if ne (include "chromadb.isPersistent" .) "true" -}}
{{- fail "highAvailability.enabled needs chromadb.isPersistent=true: each pod keeps its copy of the data and its replication log on its own volume, and an emptyDir would lose both at every restart." -}}
{{- end -}}
{{- if not (has (int $ha.replicas) (list 2 3)) -}}
{{- fail (printf "highAvailability.replicas is %v: set it to 2 (a primary and a standby) or 3." $ha.replicas) -}}
{{- end -}}
{{- if and .Values.gateway.workers (gt (int .Values.gateway.workers) 1) -}}
{{- fail (printf "gateway.workers is %v, but with highAvailability.enabled the gateway runs one worker process: the replication log is written, in order, by one process. Remove gateway.workers (or set it to 1)." .Values.gateway.workers) -}}
{{- end -}}
{{- if eq (include "chromadb.serviceAccountName" .) "default" -}}
{{- fail "highAvailability.enabled binds a Role (the Lease, the pods' own labels) to the release's ServiceAccount, but the pods would run as the namespace's `default` one: set serviceAccount.create=true, or serviceAccount.name to a ServiceAccount of the release's own." -}}
{{- end -}}
{{- $l := $ha.lease -}}
{{- if ge (addf $l.renewDeadlineSeconds 2) (float64 $l.durationSeconds) -}}
{{- fail (printf "highAvailability.lease.durationSeconds (%v) must exceed renewDeadlineSeconds (%v) plus 2 seconds (the API timeout): otherwise a standby may take the lease while the old primary still takes writes. Raise durationSeconds or lower renewDeadlineSeconds." $l.durationSeconds $l.renewDeadlineSeconds) -}}
{{- end -}}
{{- if ge (mulf $l.retryPeriodSeconds 1.2) (float64 $l.renewDeadlineSeconds) -}}
{{- fail (printf "highAvailability.lease.renewDeadlineSeconds (%v) must exceed 1.2 x retryPeriodSeconds (%v): the primary needs more than one try to renew before it gives up. Raise renewDeadlineSeconds or lower retryPeriodSeconds." $l.renewDeadlineSeconds $l.retryPeriodSeconds) -}}
{{- end -}}
{{- end -}}
{{- end }}

{{/* The HA token's credential for the gateway config, as a YAML list (empty without HA or auth). */}}
{{- define "chromadb.haCredentials" -}}
{{- if and (eq (include "chromadb.haOn" .) "true") .Values.chromadb.auth.enabled -}}
- name: ha-replication
  role: admin
  token_file: {{ include "chromadb.path" "ha" }}/token
{{- end -}}
{{- end }}

{{/* The `ha:` section of the chromactl config (chromactl.config.HaSettings), as YAML (empty without HA). */}}
{{- define "chromadb.haChromactlConfig" -}}
{{- if eq (include "chromadb.haOn" .) "true" -}}
{{- $ha := .Values.highAvailability -}}
{{- $tls := eq (include "chromadb.tls.on" .) "true" -}}
{{- $config := dict
  "enabled" true
  "lease_name" (include "chromadb.haLeaseName" .)
  "peer_url" (printf "%s://{pod}.%s-headless:%d" (include "chromadb.scheme" .) (include "chromadb.fullname" .) (int .Values.chromadb.serverHttpPort))
  "token_file" (printf "%s/token" (include "chromadb.path" "ha"))
  "state_dir" (printf "%s/.chromactl-ha" (trimSuffix "/" .Values.chromadb.persistDirectory))
  "lease_duration_s" $ha.lease.durationSeconds
  "renew_deadline_s" $ha.lease.renewDeadlineSeconds
  "retry_period_s" $ha.lease.retryPeriodSeconds
  "max_lag_s" $ha.maxLagSeconds
  "maximum_lag_on_failover" (int64 $ha.maximumLagOnFailover)
  "synchronous" (and $ha.synchronous true)
  "synchronous_timeout_s" $ha.synchronousTimeoutSeconds
  "retained_log_bytes" (int64 $ha.retainedLogBytes)
-}}
{{- if $tls -}}
{{- /* ca.crt of the gateway's own TLS Secret: the peers serve certificates from the same one. */ -}}
{{- $_ := set $config "peer_ca_file" (printf "%s/ca.crt" (include "chromadb.path" "tls")) -}}
{{- end -}}
{{- toYaml (dict "ha" $config) -}}
{{- end -}}
{{- end }}

{{/* Env of the gateway container with HA (list items): the pod's name, the Lease's holder identity. */}}
{{- define "chromadb.haGatewayEnv" -}}
{{- if eq (include "chromadb.haOn" .) "true" }}
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
{{- end }}
{{- end }}

{{/* The gateway's preStop hook with HA: a primary that is stopped (helm upgrade, a drained
     node) hands over to a standby in sync first, so that a planned restart loses no write. */}}
{{- define "chromadb.haGatewayLifecycle" -}}
{{- if eq (include "chromadb.haOn" .) "true" }}
lifecycle:
  preStop:
    exec:
      command: [chromactl, ha, switchover, --if-primary, {{ printf "--config=%s" (include "chromadb.path.configFile" .) }}]
{{- end }}
{{- end }}

{{/* Volume mounts of the HA token (list items for the gateway and ha-init containers). */}}
{{- define "chromadb.haVolumeMounts" -}}
{{- if eq (include "chromadb.haOn" .) "true" }}
- name: ha-token
  mountPath: {{ include "chromadb.path" "ha" }}
  readOnly: true
{{- end }}
{{- end }}

{{/* Volumes of the pod for HA (list items). */}}
{{- define "chromadb.haVolumes" -}}
{{- if eq (include "chromadb.haOn" .) "true" }}
- name: ha-token
  secret:
    secretName: {{ include "chromadb.haSecretName" . }}
    defaultMode: 0440
{{- end }}
{{- end }}

{{/* The `ha-init` init container (a list item): before Chroma starts, rebuilds this pod's data
     from the primary when it cannot follow it (chromactl ha init; nothing to do otherwise). */}}
{{- define "chromadb.haInitContainer" -}}
{{- if eq (include "chromadb.haOn" .) "true" }}
- name: ha-init
  {{- include "chromadb.chromactlContainerImage" . | nindent 2 }}
  command:
    - chromactl
    - ha
    - init
    - --config={{ include "chromadb.path.configFile" . }}
  env:
    {{- include "chromadb.haGatewayEnv" . | trim | nindent 4 }}
  resources:
    {{- toYaml .Values.gateway.resources | nindent 4 }}
  securityContext:
    {{- toYaml .Values.securityContext | nindent 4 }}
  volumeMounts:
    - name: chromactl-config
      mountPath: {{ include "chromadb.path" "config" }}
      readOnly: true
    - name: data
      mountPath: {{ .Values.chromadb.persistDirectory }}
    - name: tmp
      mountPath: /tmp
    {{- include "chromadb.haVolumeMounts" . | trim | nindent 4 }}
    {{- with (include "chromadb.tls.volumeMounts" . | trim) }}{{ . | nindent 4 }}{{ end }}
{{- end }}
{{- end }}

{{/* The pod's default affinity with HA and an empty `affinity` (YAML, empty for none): the
     server pods apart on nodes, preferred or required (highAvailability.podAntiAffinity). */}}
{{- define "chromadb.haAffinity" -}}
{{- $mode := .Values.highAvailability.podAntiAffinity -}}
{{- if and (eq (include "chromadb.haOn" .) "true") (not .Values.affinity) (ne $mode "none") -}}
{{- $term := dict "labelSelector" (dict "matchLabels" (include "chromadb.serverSelectorLabels" . | fromYaml)) "topologyKey" "kubernetes.io/hostname" -}}
{{- if eq $mode "required" -}}
{{- toYaml (dict "podAntiAffinity" (dict "requiredDuringSchedulingIgnoredDuringExecution" (list $term))) -}}
{{- else -}}
{{- toYaml (dict "podAntiAffinity" (dict "preferredDuringSchedulingIgnoredDuringExecution" (list (dict "weight" 100 "podAffinityTerm" $term)))) -}}
{{- end -}}
{{- end -}}
{{- end }}

{{/* The pod's default topology spread with HA and empty `topologySpreadConstraints` (a YAML list). */}}
{{- define "chromadb.haTopologySpread" -}}
{{- if and (eq (include "chromadb.haOn" .) "true") (not .Values.topologySpreadConstraints) .Values.highAvailability.topologySpread -}}
{{- toYaml (list (dict "maxSkew" 1 "topologyKey" "topology.kubernetes.io/zone" "whenUnsatisfiable" "ScheduleAnyway")) -}}
{{- end -}}
{{- end }}

{{/* NetworkPolicy ingress rules (list items): the server pods reach each other's gateway. */}}
{{- define "chromadb.haNetworkPolicyIngress" -}}
{{- if eq (include "chromadb.haOn" .) "true" }}
- from:
    - podSelector:
        matchLabels:
          {{- include "chromadb.serverSelectorLabels" . | nindent 10 }}
  ports:
    - port: http
      protocol: TCP
{{- end -}}
{{- end }}

{{/* NetworkPolicy egress rules (list items): the Kubernetes API (the Lease, the pods' labels).
     The peers' gateway port is the release's own egress rule (chromadb.networkPolicy.releaseEgress). */}}
{{- define "chromadb.haNetworkPolicyEgress" -}}
{{- if eq (include "chromadb.haOn" .) "true" -}}
{{- $rule := dict "ports" (list (dict "port" 443 "protocol" "TCP") (dict "port" 6443 "protocol" "TCP")) -}}
{{- with .Values.networkPolicy.egress.kubernetesApiTo }}{{ $_ := set $rule "to" . }}{{ end -}}
{{- toYaml (list $rule) -}}
{{- end -}}
{{- end }}

{{/* NOTES.txt lines about HA (empty when off). */}}
{{- define "chromadb.haNotes" -}}
{{- if eq (include "chromadb.haOn" .) "true" -}}
{{- $ns := .Release.Namespace -}}
{{- $full := include "chromadb.fullname" . }}

High availability: {{ include "chromadb.replicas" . }} Chroma pods, one primary (the holder of Lease {{ include "chromadb.haLeaseName" . }}), the others standbys.
  Writes (and reads that must see them): Service {{ $full }} or {{ $full }}-rw (the primary only).
  Reads that may be up to {{ .Values.highAvailability.maxLagSeconds }}s stale: Service {{ $full }}-ro (the standbys in sync).
Which pod is primary, and how far behind each standby is:
  kubectl -n {{ $ns }} exec {{ $full }}-0 -c gateway -- chromactl ha status --config={{ include "chromadb.path.configFile" . }}
  kubectl -n {{ $ns }} get pods -l {{ include "chromadb.haRoleLabel" . }} -L {{ include "chromadb.haRoleLabel" . }}
{{- end -}}
{{- end }}

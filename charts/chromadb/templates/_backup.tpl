{{/* ---------------------------------------------------------------- backup
Scheduled snapshots (the CronJob asks the gateway's in-pod agent) and restore on start-up
(an init container). The shared templates include these with one line each. */}}

{{/* "true" when the restore init container runs (backup.restore.enabled). */}}
{{- define "chromadb.backupRestoreOn" -}}
{{- and .Values.backup.restore.enabled true -}}
{{- end }}

{{/* "true" when backups or the restore need the backup settings, volume and credentials. */}}
{{- define "chromadb.backupUsed" -}}
{{- or .Values.backup.enabled .Values.backup.restore.enabled -}}
{{- end }}

{{/* The snapshot repository: backup.target, or the backup volume's mount path. */}}
{{- define "chromadb.backupTarget" -}}
{{- $b := .Values.backup -}}
{{- $b.target | default (ternary $b.volume.mountPath "" $b.volume.enabled) -}}
{{- end }}

{{/* Where the restore reads from: backup.restore.from, else the backup target. */}}
{{- define "chromadb.backupRestoreFrom" -}}
{{- .Values.backup.restore.from | default (include "chromadb.backupTarget" .) -}}
{{- end }}

{{/* "true" when the CronJob must authenticate to the agent (gateway auth on). */}}
{{- define "chromadb.backupAgentAuth" -}}
{{- and .Values.backup.enabled (eq (include "chromadb.gatewayOn" .) "true") .Values.chromadb.auth.enabled -}}
{{- end }}

{{/* Name of the Secret with the backup agent's token: the user's, or <fullname>-backup-agent. */}}
{{- define "chromadb.backupAgentSecretName" -}}
{{- .Values.backup.agent.existingSecret | default (printf "%s-backup-agent" (include "chromadb.fullname" .)) -}}
{{- end }}

{{/* Name of the backup volume's PVC: the user's, or <fullname>-backup. */}}
{{- define "chromadb.backupClaimName" -}}
{{- .Values.backup.volume.existingClaim | default (printf "%s-backup" (include "chromadb.fullname" .)) -}}
{{- end }}

{{/* Labels of the backup job's pods (the NetworkPolicy lets them reach the agent). */}}
{{- define "chromadb.backupSelectorLabels" -}}
{{ include "chromadb.selectorLabels" . }}
app.kubernetes.io/component: backup
{{- end }}

{{/* A local (volume) URL must lie on the backup volume. (dict "ctx" $ "key" "backup.target" "url" url) */}}
{{- define "chromadb.backupCheckLocal" -}}
{{- $v := .ctx.Values.backup.volume -}}
{{- $path := trimPrefix "file://" .url -}}
{{- if not (contains "://" $path) -}}
{{- if not $v.enabled -}}
{{- fail (printf "%s %q is a local path, but no backup volume is mounted: set backup.volume.enabled=true (and a path under backup.volume.mountPath %s), or use an object store URL (s3://, gs://, az://)" .key .url $v.mountPath) -}}
{{- end -}}
{{- $root := trimSuffix "/" $v.mountPath -}}
{{- if not (or (eq (trimSuffix "/" $path) $root) (hasPrefix (printf "%s/" $root) $path)) -}}
{{- fail (printf "%s %q is not on the backup volume: use a path under backup.volume.mountPath %s" .key .url $v.mountPath) -}}
{{- end -}}
{{- end -}}
{{- end }}

{{/* Checks a schema cannot express; rendered by the StatefulSet and the CronJob. */}}
{{- define "chromadb.backupValidate" -}}
{{- if and .Values.backup.drill.enabled (not .Values.backup.enabled) -}}
{{- fail "backup.drill restores the snapshots backup.enabled takes: set backup.enabled=true and backup.target too" -}}
{{- end -}}
{{- if and .Values.backup.copies (not .Values.backup.enabled) -}}
{{- fail "backup.copies copies the snapshots backup.enabled takes: set backup.enabled=true and backup.target too" -}}
{{- end -}}
{{- if and .Values.backup.continuous.enabled (not .Values.backup.enabled) -}}
{{- fail "backup.continuous.enabled ships the journal beside the snapshots: set backup.enabled=true and backup.target too" -}}
{{- end -}}
{{- if and .Values.backup.restore.toTime (ne .Values.backup.restore.snapshot "latest") -}}
{{- fail "backup.restore.toTime and backup.restore.snapshot pick what to restore in two ways: set one (snapshot: latest with toTime)" -}}
{{- end -}}
{{- if eq (include "chromadb.backupUsed" .) "true" -}}
{{- if ne (include "chromadb.gatewayOn" .) "true" -}}
{{- fail "backup.enabled and backup.restore.enabled need the chromactl gateway in Chroma's pod (gateway.enabled=true, Chroma 1.x): it takes the snapshots and runs the restore" -}}
{{- end -}}
{{- if .Values.backup.enabled -}}
{{- $target := include "chromadb.backupTarget" . -}}
{{- if not $target -}}
{{- fail "backup.enabled needs somewhere to store snapshots: set backup.target to s3://bucket/prefix (or gs://, az://), or set backup.volume.enabled=true for a volume" -}}
{{- end -}}
{{- include "chromadb.backupCheckLocal" (dict "ctx" . "key" "backup.target" "url" $target) -}}
{{- if and (eq (include "chromadb.tls.on" .) "true") (eq .Values.chromadb.tls.clientAuth "required") (not .Values.backup.agent.clientCertSecret) -}}
{{- fail "chromadb.tls.clientAuth=required: the backup job must present a client certificate to the gateway: set backup.agent.clientCertSecret to a kubernetes.io/tls Secret signed by chromadb.tls.clientCA" -}}
{{- end -}}
{{- end -}}
{{- if .Values.backup.restore.enabled -}}
{{- $from := include "chromadb.backupRestoreFrom" . -}}
{{- if not $from -}}
{{- fail "backup.restore.enabled needs a snapshot repository: set backup.restore.from (or backup.target)" -}}
{{- end -}}
{{- include "chromadb.backupCheckLocal" (dict "ctx" . "key" "backup.restore.from" "url" $from) -}}
{{- end -}}
{{- end -}}
{{- end }}

{{/* The agent's token credential for the gateway config, as a YAML list (empty without backups). */}}
{{- define "chromadb.backupAgentCredentials" -}}
{{- if eq (include "chromadb.backupAgentAuth" .) "true" -}}
- name: backup-agent
  role: admin
  token_file: {{ include "chromadb.path" "backupAgent" }}/token
{{- end -}}
{{- end }}

{{/* The `backup:` section of the chromactl config (chromactl.config.BackupSettings): backup's own
     settings passed through (chromadb.config.snakeKeys), with what the chart works out: the
     target, the mount paths of the Secrets, and what only runs with backup.enabled. */}}
{{- define "chromadb.backupChromactlConfig" -}}
{{- if eq (include "chromadb.backupUsed" .) "true" -}}
{{- $b := .Values.backup -}}
{{- /* The chart's own keys of backup (the CronJobs, the volume, the restore, Secrets) and those
       rendered below; every other key of backup is a chromactl setting. */ -}}
{{- $config := include "chromadb.config.snakeKeys" (omit $b "enabled" "schedule" "timeZone" "target" "existingSecret" "volume" "agent" "cronJob" "encryption" "drill" "restore" "copies" "continuous" "retention") | fromYaml -}}
{{- $retention := omit $b.retention "enabled" -}}
{{- $_ := set $config "retention" (include "chromadb.config.snakeKeys" $retention | fromYaml) -}}
{{- $_ = set $config "staging_dir" "/tmp" -}}
{{- /* The target only when backups are on: a restore source never receives snapshots. */ -}}
{{- if $b.enabled }}{{ $_ = set $config "target" (include "chromadb.backupTarget" .) }}{{ end -}}
{{- if and $b.enabled $b.copies }}
{{- $copies := list }}
{{- range $i, $c := $b.copies }}
{{- $copy := include "chromadb.config.snakeKeys" (omit $c "existingSecret" "retention") | fromYaml }}
{{- if $c.existingSecret }}{{ $_ = set $copy "credentials_dir" (printf "%s/%d" (include "chromadb.path" "backupCopies") $i) }}{{ end }}
{{- with $c.retention }}
{{- /* A copy's retention is its own: a window it leaves out keeps nothing. */}}
{{- $r := deepCopy . }}
{{- range $window, $_ := $retention }}{{ if not (hasKey $r $window) }}{{ $_ = set $r $window 0 }}{{ end }}{{ end }}
{{- $_ = set $copy "retention" (include "chromadb.config.snakeKeys" $r | fromYaml) }}
{{- end }}
{{- $copies = append $copies $copy }}
{{- end }}
{{- $_ = set $config "copies" $copies }}
{{- end -}}
{{- if and $b.enabled $b.continuous.enabled }}
{{- $_ = set $config "continuous" (include "chromadb.config.snakeKeys" $b.continuous | fromYaml) }}
{{- end -}}
{{- if $b.existingSecret }}{{ $_ = set $config "credentials_dir" (include "chromadb.path" "backupCredentials") }}{{ end -}}
{{- if $b.encryption.existingSecret }}{{ $_ = set $config "encryption" (dict "key_file" (printf "%s/%s" (include "chromadb.path" "backupEncryption") $b.encryption.key)) }}{{ end -}}
{{- toYaml (dict "backup" $config) -}}
{{- end -}}
{{- end }}

{{/* Volume mounts of the backup credentials and volume. (dict "ctx" $ "agent" bool) */}}
{{- define "chromadb.backupVolumeMounts" -}}
{{- $b := .ctx.Values.backup -}}
{{- if eq (include "chromadb.backupUsed" .ctx) "true" -}}
{{- if $b.existingSecret }}
- name: backup-credentials
  mountPath: {{ include "chromadb.path" "backupCredentials" }}
  readOnly: true
{{- end }}
{{- if $b.volume.enabled }}
- name: backup
  mountPath: {{ $b.volume.mountPath }}
{{- end }}
{{- if $b.encryption.existingSecret }}
- name: backup-encryption
  mountPath: {{ include "chromadb.path" "backupEncryption" }}
  readOnly: true
{{- end }}
{{- if .agent }}
{{- range $i, $c := $b.copies }}
{{- if $c.existingSecret }}
- name: backup-copy-{{ $i }}
  mountPath: {{ include "chromadb.path" "backupCopies" }}/{{ $i }}
  readOnly: true
{{- end }}
{{- end }}
{{- end }}
{{- if and .agent (eq (include "chromadb.backupAgentAuth" .ctx) "true") }}
- name: backup-agent
  mountPath: {{ include "chromadb.path" "backupAgent" }}
  readOnly: true
{{- end }}
{{- end -}}
{{- end }}

{{/* The gateway container's backup mounts (list items for its volumeMounts). */}}
{{- define "chromadb.backupGatewayVolumeMounts" -}}
{{- include "chromadb.backupVolumeMounts" (dict "ctx" . "agent" true) -}}
{{- end }}

{{/* Volumes of Chroma's pod for backups (list items for its volumes). */}}
{{- define "chromadb.backupVolumes" -}}
{{- $b := .Values.backup -}}
{{- if eq (include "chromadb.backupUsed" .) "true" -}}
{{- if $b.existingSecret }}
- name: backup-credentials
  secret:
    secretName: {{ $b.existingSecret }}
    defaultMode: 0440
{{- end }}
{{- if $b.volume.enabled }}
- name: backup
  persistentVolumeClaim:
    claimName: {{ include "chromadb.backupClaimName" . }}
{{- end }}
{{- if $b.encryption.existingSecret }}
- name: backup-encryption
  secret:
    secretName: {{ $b.encryption.existingSecret }}
    defaultMode: 0440
{{- end }}
{{- range $i, $c := $b.copies }}
{{- if $c.existingSecret }}
- name: backup-copy-{{ $i }}
  secret:
    secretName: {{ $c.existingSecret }}
    defaultMode: 0440
{{- end }}
{{- end }}
{{- if eq (include "chromadb.backupAgentAuth" .) "true" }}
- name: backup-agent
  secret:
    secretName: {{ include "chromadb.backupAgentSecretName" . }}
    defaultMode: 0440
{{- end }}
{{- end -}}
{{- end }}

{{/* `initContainers:` with the idempotent restore, when backup.restore.enabled. Also runs the
     backup checks, since the StatefulSet renders whatever the values. */}}
{{/* The `restore` init container (a list item). */}}
{{- define "chromadb.backupInitContainers" -}}
{{- include "chromadb.backupValidate" . -}}
{{- if eq (include "chromadb.backupRestoreOn" .) "true" -}}
{{- $r := .Values.backup.restore }}
- name: restore
  image: {{ include "chromadb.chromactlImage" . }}
  imagePullPolicy: {{ .Values.chromactl.image.pullPolicy }}
  command:
    - chromactl
    - restore
    - --config={{ include "chromadb.path.configFile" . }}
    - {{ printf "--repo=%s" (include "chromadb.backupRestoreFrom" .) | quote }}
    {{- if $r.toTime }}
    - {{ printf "--to-time=%s" $r.toTime | quote }}
    {{- else }}
    - {{ printf "--snapshot=%s" $r.snapshot | quote }}
    {{- end }}
    - {{ printf "--data-dir=%s" .Values.chromadb.persistDirectory | quote }}
    - --if-not-restored
    {{- if not $r.requireSnapshot }}
    - --skip-if-no-snapshot
    {{- end }}
    - --quiet
  resources:
    {{- toYaml $r.resources | nindent 4 }}
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
    {{- with include "chromadb.backupVolumeMounts" (dict "ctx" . "agent" false) | trim }}{{ . | nindent 4 }}{{ end }}
{{- end -}}
{{- end }}

{{/* NetworkPolicy ingress rules (list items): the backup job's pods reach the agent. */}}
{{- define "chromadb.backupNetworkPolicyIngress" -}}
{{- if and .Values.backup.enabled (eq (include "chromadb.gatewayOn" .) "true") }}
- from:
    - podSelector:
        matchLabels:
          {{- include "chromadb.backupSelectorLabels" . | nindent 10 }}
  ports:
    - port: http
      protocol: TCP
{{- end -}}
{{- end }}

{{/* NOTES.txt lines about backups and the restore (empty when both are off). */}}
{{- define "chromadb.backupNotes" -}}
{{- $ns := .Release.Namespace -}}
{{- $full := include "chromadb.fullname" . -}}
{{- if .Values.backup.enabled }}

Backups: CronJob {{ $full }}-backup ({{ .Values.backup.schedule }}{{ with .Values.backup.timeZone }} {{ . }}{{ end }}) has the gateway snapshot to
  {{ include "chromadb.backupTarget" . }}
Take one now and follow it:
  kubectl -n {{ $ns }} create job --from=cronjob/{{ $full }}-backup {{ $full }}-backup-now
  kubectl -n {{ $ns }} logs -f job/{{ $full }}-backup-now
{{- end }}
{{- if .Values.backup.restore.enabled }}

Restore: an empty data volume gets snapshot {{ .Values.backup.restore.snapshot }} of
  {{ include "chromadb.backupRestoreFrom" . }}
once (init container "restore"); a volume restored before is never restored again:
  kubectl -n {{ $ns }} logs {{ $full }}-0 -c restore
{{- end }}
{{- end }}

{{/* --------------------------------------------------------------- migrate
Taking over a release installed by another chart (amikos-tech/chromadb-chart) or by an older
version of this one, read from the cluster with `lookup` (empty under `helm template`):

- the StatefulSet fields Kubernetes never lets an update change (selector, serviceName,
  podManagementPolicy, the claim templates) keep their live values when this chart's pods
  still fit them; when they do not, rendering stops with the one command that replaces the
  StatefulSet while keeping its pod and volume;
- credentials the other chart made outside Helm's ownership (a hook Secret, a hook ConfigMap)
  are used as they are, never regenerated: the chart does not render objects it cannot own.
See docs/migrate-from-amikos-chart.md. */}}

{{/* The live StatefulSet of this release as JSON ("{}" when there is none). */}}
{{- define "chromadb.migrate.live" -}}
{{- (lookup "apps/v1" "StatefulSet" .Release.Namespace (include "chromadb.fullname" .)) | default dict | toJson -}}
{{- end }}

{{/* The server pod's labels (the StatefulSet's pod template), as YAML. */}}
{{- define "chromadb.migrate.podLabels" -}}
{{ include "chromadb.labels" . }}
app.kubernetes.io/component: server
{{- with .Values.podLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* The claim template spec the values ask for, in the API server's shape. */}}
{{- define "chromadb.migrate.claimSpec" -}}
{{- $c := .Values.chromadb -}}
{{- $spec := dict "accessModes" $c.dataVolumeAccessModes "resources" (dict "requests" (dict "storage" (toString $c.dataVolumeSize))) -}}
{{- with $c.dataVolumeStorageClass }}{{ $_ := set $spec "storageClassName" . }}{{ end -}}
{{- toYaml $spec -}}
{{- end }}

{{/* The immutable part of the StatefulSet spec as YAML: serviceName, podManagementPolicy,
     selector and the labels of the `data` claim template. A fresh install gets this chart's
     own; an upgrade keeps the live ones, or fails with what to run. */}}
{{- define "chromadb.migrate.statefulset" -}}
{{- $full := include "chromadb.fullname" . -}}
{{- $out := dict "serviceName" (printf "%s-headless" $full) "podManagementPolicy" "OrderedReady" "selector" (dict "matchLabels" (include "chromadb.selectorLabels" . | fromYaml)) "claimLabels" (include "chromadb.selectorLabels" . | fromYaml) -}}
{{- $live := include "chromadb.migrate.live" . | fromJson -}}
{{- if $live.spec -}}
{{- $problems := list -}}
{{- $labels := include "chromadb.migrate.podLabels" . | fromYaml -}}
{{- $selector := $live.spec.selector | default dict -}}
{{- if $selector.matchExpressions -}}
{{- $problems = append $problems "its selector has matchExpressions" -}}
{{- end -}}
{{- range $k, $v := $selector.matchLabels | default dict -}}
{{- if ne (toString (index $labels $k | default "")) (toString $v) -}}
{{- $problems = append $problems (printf "its selector wants %s=%s, which this chart's pods do not carry" $k $v) -}}
{{- end -}}
{{- end -}}
{{- $persistent := eq (include "chromadb.isPersistent" .) "true" -}}
{{- $claims := $live.spec.volumeClaimTemplates | default list -}}
{{- $want := include "chromadb.migrate.claimSpec" . | fromYaml -}}
{{- if and $persistent (eq (len $claims) 1) (eq (index $claims 0).metadata.name "data") -}}
{{- $spec := (index $claims 0).spec -}}
{{- $has := dict "accessModes" $spec.accessModes "resources" (dict "requests" (dict "storage" (toString $spec.resources.requests.storage))) -}}
{{- with $spec.storageClassName }}{{ $_ := set $has "storageClassName" . }}{{ end -}}
{{- if ne (toJson $has) (toJson $want) -}}
{{- $problems = append $problems (printf "its data volume template is %s, the values ask for %s (an existing volume is not resized by a template: resize the PersistentVolumeClaim itself)" (toJson $has) (toJson $want)) -}}
{{- end -}}
{{- $_ := set $out "claimLabels" ((index $claims 0).metadata.labels | default dict) -}}
{{- else if or $persistent $claims -}}
{{- $names := list -}}
{{- range $claims }}{{ $names = append $names .metadata.name }}{{ end -}}
{{- $problems = append $problems (printf "its volume claim templates are %s, the values ask for %s" (toJson $names) (ternary "one claim named data" "none (chromadb.isPersistent=false)" $persistent)) -}}
{{- end -}}
{{- if $problems -}}
{{- $chartLabel := index ($live.metadata.labels | default dict) "helm.sh/chart" | default "an unknown chart" -}}
{{- fail (printf "\n\nStatefulSet %s in namespace %s (made by %s) cannot become this chart's: %s.\nKubernetes never changes these fields of a StatefulSet, so nothing has been changed. Replace the StatefulSet, keeping its pod and its volume:\n\n  kubectl delete statefulset %s --namespace %s --cascade=orphan\n\nthen run this helm upgrade again (the new StatefulSet takes over the running pod and its PersistentVolumeClaim, then restarts it).\nSee docs/migrate-from-amikos-chart.md." $full .Release.Namespace $chartLabel (join "; " $problems) $full .Release.Namespace) -}}
{{- end -}}
{{- $_ := set $out "serviceName" $live.spec.serviceName -}}
{{- $_ := set $out "podManagementPolicy" ($live.spec.podManagementPolicy | default "OrderedReady") -}}
{{- $_ := set $out "selector" (dict "matchLabels" $selector.matchLabels) -}}
{{- end -}}
{{- toYaml $out -}}
{{- end }}

{{/* The credentials Secret the pod mounts when it exists without Helm ownership (made by
     another chart's hook, or by hand): "true" when the chart must use it as it is. Fails
     when it lacks the keys the auth type reads.
     (dict "ctx" $ "existing" <the looked-up chromadb-auth, or nil>) */}}
{{- define "chromadb.migrate.adoptSecret" -}}
{{- $ := .ctx -}}
{{- $c := $.Values.chromadb -}}
{{- $existing := .existing -}}
{{- if and $existing (not (index ($existing.metadata.annotations | default dict) "meta.helm.sh/release-name")) -}}
{{- $keys := ternary (list "token") (list "username" "password") (eq (include "chromadb.auth.hasToken" $) "true") -}}
{{- range $keys -}}
{{- if not (hasKey ($existing.data | default dict) .) -}}
{{- fail (printf "Secret chromadb-auth in namespace %s (not made by this release, e.g. by the amikos chart) has no %q key, which chromadb.auth.type=%s reads. Set chromadb.auth.type to the type it was made for (token: a `token` key; basic: `username` and `password`), or set chromadb.auth.existingSecret to another Secret." $.Release.Namespace . $c.auth.type) -}}
{{- end -}}
{{- end -}}
true
{{- end -}}
{{- end }}

{{/* The `migrate` init container (a list item): a snapshot of a Chroma 0.x directory before
     Chroma 1.x first opens it (chromactl migrate snapshot; a no-op on every later start). */}}
{{- define "chromadb.migrate.initContainer" -}}
{{- if and .Values.migrate.snapshot (ne (include "chromadb.isLegacy" .) "true") (eq (include "chromadb.isPersistent" .) "true") (eq (include "chromadb.gatewayOn" .) "true") }}
- name: migrate
  {{- include "chromadb.chromactlContainerImage" . | nindent 2 }}
  command:
    - chromactl
    - migrate
    - snapshot
    - --config={{ include "chromadb.path.configFile" . }}
    - {{ printf "--data-dir=%s" .Values.chromadb.persistDirectory | quote }}
    - --quiet
  resources:
    {{- toYaml .Values.migrate.resources | nindent 4 }}
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
{{- end }}
{{- end }}

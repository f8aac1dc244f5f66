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

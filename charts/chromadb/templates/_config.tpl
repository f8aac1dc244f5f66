{{/* ---------------------------------------------------------------- config
     chromactl's config file (src/chromactl/config.py) and the paths it names.

     A values block that maps onto a config section is passed through: its keys turn from
     camelCase into chromactl's snake_case, and a setting left empty in values (null, "" or {})
     is left out, so that chromactl's default applies. A new setting of such a block is a values
     entry and a config field of the same name, nothing here. Explicit template logic is kept
     where values and config differ: mount paths of Secrets and ConfigMaps, settings computed
     from other values, legacy names. */}}

{{/* A values key as chromactl names it: camelCase -> snake_case, and a `Seconds` suffix is `_s`
     (holdTimeoutSeconds -> hold_timeout_s, endpointUrl -> endpoint_url). Other keys (already
     snake_case, upper case, with - or *) stay as they are. */}}
{{- define "chromadb.config.key" -}}
{{- if regexMatch "^[a-z][a-zA-Z0-9]*$" . -}}
{{- regexReplaceAll "([a-z0-9])([A-Z])" (regexReplaceAll "Seconds$" . "S") "${1}_${2}" | lower -}}
{{- else -}}
{{- . -}}
{{- end -}}
{{- end }}

{{/* A values block (a map) as a chromactl config section, as YAML: keys converted by
     chromadb.config.key in nested maps and in maps inside lists too; null, "" and {} left out.
     The maps named in $verbatim hold the user's own keys (fsspec options), kept as written.
       include "chromadb.config.snakeKeys" .Values.gateway.clientLimits | fromYaml */}}
{{- define "chromadb.config.snakeKeys" -}}
{{- $verbatim := list "storageOptions" -}}
{{- $out := dict -}}
{{- range $key, $value := . -}}
{{- if has $key $verbatim -}}
{{- else if kindIs "map" $value -}}
{{- $value = include "chromadb.config.snakeKeys" $value | fromYaml -}}
{{- else if kindIs "slice" $value -}}
{{- $items := list -}}
{{- range $value -}}
{{- if kindIs "map" . -}}
{{- $items = append $items (include "chromadb.config.snakeKeys" . | fromYaml) -}}
{{- else -}}
{{- $items = append $items . -}}
{{- end -}}
{{- end -}}
{{- $value = $items -}}
{{- end -}}
{{- if not (or (kindIs "invalid" $value) (and (kindIs "string" $value) (eq $value "")) (and (kindIs "map" $value) (empty $value))) -}}
{{- $_ := set $out (include "chromadb.config.key" $key) $value -}}
{{- end -}}
{{- end -}}
{{- toYaml $out -}}
{{- end }}

{{/* A role and its scope (chromactl.config.Grant) from a values item with `role`, `tenants`,
     `databases`: passed through, each left empty written as its default (reader on every
     tenant and database), so that the rendered config shows what the credential may do. */}}
{{- define "chromadb.config.grant" -}}
{{- $g := include "chromadb.config.snakeKeys" . | fromYaml -}}
{{- $_ := set $g "role" ($g.role | default "reader") -}}
{{- $_ = set $g "tenants" ($g.tenants | default (list "*")) -}}
{{- $_ = set $g "databases" ($g.databases | default (list "*")) -}}
{{- toYaml $g -}}
{{- end }}

{{/* Where chromactl's files are mounted in the pods, each named once: the volumeMount and the
     config value (or flag) that points chromactl at it use the same path.
       printf "%s/token" (include "chromadb.path" "auth") */}}
{{- define "chromadb.path" -}}
{{- $paths := dict
  "config" "/etc/chromactl/config"
  "limits" "/etc/chromactl/limits"
  "auth" "/etc/chromactl/auth"
  "credentials" "/etc/chromactl/credentials"
  "oidcCA" "/etc/chromactl/oidc-ca"
  "tls" "/etc/chromactl/tls"
  "clientCA" "/etc/chromactl/client-ca"
  "tlsCA" "/etc/chromactl/tls-ca"
  "backupCredentials" "/etc/chromactl/backup-credentials"
  "backupEncryption" "/etc/chromactl/backup-encryption"
  "backupCopies" "/etc/chromactl/backup-copies"
  "backupAgent" "/etc/chromactl/backup-agent"
  "backupClient" "/etc/chromactl/backup-client"
  "ha" "/etc/chromactl/ha"
  "console" "/etc/chromactl/console"
-}}
{{- index $paths . | required (printf "chromadb.path: no path named %q" .) -}}
{{- end }}

{{/* The chromactl config file every chromactl container reads (--config). */}}
{{- define "chromadb.path.configFile" -}}
{{- include "chromadb.path" "config" }}/chromactl.yaml
{{- end }}

{{/* ----------------------------------------------------------------- auth
     chromadb.auth.*: what the gateway accepts. token and oidc both use the generated (or
     existing) admin token; oidc adds access tokens from an OpenID provider. */}}

{{/* "true" when the release's Secret holds a `token` (types token and oidc). */}}
{{- define "chromadb.auth.hasToken" -}}
{{- ne .Values.chromadb.auth.type "basic" -}}
{{- end }}

{{/* Checks a schema cannot express; rendered once, by secret-auth.yaml. */}}
{{- define "chromadb.auth.validate" -}}
{{- $a := .Values.chromadb.auth -}}
{{- if and $a.enabled (eq $a.type "oidc") (eq (include "chromadb.gatewayOn" .) "true") -}}
{{- if not $a.oidc.issuer -}}
{{- fail "chromadb.auth.type=oidc needs chromadb.auth.oidc.issuer (the identity provider's issuer URL, as in the tokens' iss claim)" -}}
{{- end -}}
{{- if not $a.oidc.audience -}}
{{- fail "chromadb.auth.type=oidc needs chromadb.auth.oidc.audience (the aud values Chroma's tokens carry, e.g. [chroma])" -}}
{{- end -}}
{{- if and $a.oidc.issuerCA.secretName $a.oidc.issuerCA.configMapName -}}
{{- fail "chromadb.auth.oidc.issuerCA: set secretName or configMapName, not both" -}}
{{- end -}}
{{- if and (not $a.oidc.defaultGrant) (not $a.oidc.rules) -}}
{{- fail "chromadb.auth.type=oidc grants nothing: set chromadb.auth.oidc.rules (claim -> role) or chromadb.auth.oidc.defaultGrant" -}}
{{- end -}}
{{- end -}}
{{- $t := .Values.chromadb.tls -}}
{{- if and $a.enabled $a.clientCertificates (or (not $t.enabled) (eq $t.clientAuth "none")) -}}
{{- fail "chromadb.auth.clientCertificates needs chromadb.tls.enabled=true and chromadb.tls.clientAuth optional or required (with chromadb.tls.clientCA): only certificates the gateway has verified can name a caller" -}}
{{- end -}}
{{- end }}

{{/* auth.client_cert of the gateway config: the certificate names with their role and scope
     (chromadb.auth.clientCertificates passed through). */}}
{{- define "chromadb.auth.clientCertConfig" -}}
{{- $ids := list -}}
{{- range .Values.chromadb.auth.clientCertificates -}}
{{- $ids = append $ids (include "chromadb.config.grant" . | fromYaml) -}}
{{- end -}}
{{- with $ids -}}
{{- dict "identities" . | toYaml -}}
{{- end -}}
{{- end }}

{{/* "true" when OIDC is on and chromadb.auth.oidc.issuerCA names a Secret or ConfigMap to trust. */}}
{{- define "chromadb.auth.oidcCAOn" -}}
{{- $ca := .Values.chromadb.auth.oidc.issuerCA -}}
{{- ternary "true" "false" (and .Values.chromadb.auth.enabled (eq .Values.chromadb.auth.type "oidc") (or (not (empty $ca.secretName)) (not (empty $ca.configMapName)))) -}}
{{- end }}

{{/* The gateway's `auth.oidc` section (chromactl.config.OIDCSettings) as YAML; empty unless oidc.
     chromadb.auth.oidc passed through (chromadb.config.snakeKeys), but for the issuer's CA: a
     Secret or ConfigMap mounted in the pod. */}}
{{- define "chromadb.auth.oidcConfig" -}}
{{- $a := .Values.chromadb.auth -}}
{{- if and $a.enabled (eq $a.type "oidc") -}}
{{- $o := $a.oidc -}}
{{- $cfg := include "chromadb.config.snakeKeys" (omit $o "issuerCA" "defaultGrant" "rules") | fromYaml -}}
{{- if eq (include "chromadb.auth.oidcCAOn" .) "true" -}}
{{- $_ := set $cfg "ca_file" (printf "%s/%s" (include "chromadb.path" "oidcCA") $o.issuerCA.key) -}}
{{- end -}}
{{- with $o.defaultGrant -}}
{{- $_ := set $cfg "default_grant" (include "chromadb.config.grant" . | fromYaml) -}}
{{- end -}}
{{- $rules := list -}}
{{- range $o.rules -}}
{{- $rules = append $rules (merge (include "chromadb.config.grant" . | fromYaml) (dict "claim" (.claim | default "groups"))) -}}
{{- end -}}
{{- $_ := set $cfg "rules" $rules -}}
{{- toYaml $cfg -}}
{{- end -}}
{{- end }}

{{/* Gateway volume mounts and pod volumes for the issuer's CA (indent with nindent). */}}
{{- define "chromadb.auth.volumeMounts" -}}
{{- if eq (include "chromadb.auth.oidcCAOn" .) "true" }}
- name: oidc-ca
  mountPath: {{ include "chromadb.path" "oidcCA" }}
  readOnly: true
{{- end }}
{{- end }}

{{/* Pod volumes of the auth feature (list items): the OIDC issuer's CA, when set. */}}
{{- define "chromadb.auth.volumes" -}}
{{- $ca := .Values.chromadb.auth.oidc.issuerCA -}}
{{- if eq (include "chromadb.auth.oidcCAOn" .) "true" }}
- name: oidc-ca
  {{- if $ca.secretName }}
  secret:
    secretName: {{ $ca.secretName }}
  {{- else }}
  configMap:
    name: {{ $ca.configMapName }}
  {{- end }}
    items:
      - key: {{ $ca.key }}
        path: {{ $ca.key }}
    defaultMode: 0444
{{- end }}
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

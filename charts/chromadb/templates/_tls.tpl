{{/* ------------------------------------------------------------------ TLS
     chromadb.tls.*: HTTPS served by the gateway. The certificate Secret is the user's
     (existingSecret), cert-manager's (certificate.yaml) or the chart's own (secret-tls.yaml);
     each has tls.crt and tls.key, and ca.crt for the helm tests and NOTES. */}}

{{/* "true" when the gateway serves HTTPS. */}}
{{- define "chromadb.tls.on" -}}
{{- and (eq (include "chromadb.gatewayOn" .) "true") .Values.chromadb.tls.enabled -}}
{{- end }}

{{/* "https" or "http": what clients, probes and tests use. */}}
{{- define "chromadb.scheme" -}}
{{- ternary "https" "http" (eq (include "chromadb.tls.on" .) "true") -}}
{{- end }}

{{/* The Secret holding tls.crt / tls.key / ca.crt. */}}
{{- define "chromadb.tls.secretName" -}}
{{- .Values.chromadb.tls.existingSecret | default (printf "%s-tls" (include "chromadb.fullname" .)) -}}
{{- end }}

{{/* Every name the server is reached by, as a JSON list: the Service and (single-node) the
     headless Service (short, .ns, .ns.svc, .ns.svc.cluster.local), with HA the -rw and -ro Services,
     and the pods' stable names, localhost
     (port-forward), then chromadb.tls.extraDnsNames. */}}
{{- define "chromadb.tls.dnsNames" -}}
{{- $full := include "chromadb.fullname" . -}}
{{- $ns := .Release.Namespace -}}
{{- $headless := printf "%s-headless" $full -}}
{{- $hosts := list $full -}}
{{- if ne (include "chromadb.gatewayTier" .) "true" -}}{{- /* the tier's pods have no stable names */}}
{{- $hosts = append $hosts $headless -}}
{{- if eq (include "chromadb.haOn" .) "true" -}}{{- /* the Services by role */}}
{{- $hosts = concat $hosts (list (printf "%s-rw" $full) (printf "%s-ro" $full)) -}}
{{- end -}}
{{- $pods := ternary .Values.highAvailability.replicas .Values.replicaCount (eq (include "chromadb.haOn" .) "true") -}}
{{- range $i := until (max 1 (int $pods) | int) -}}
{{- $hosts = append $hosts (printf "%s-%d.%s" $full $i $headless) -}}
{{- end -}}
{{- end -}}
{{- $names := list -}}
{{- range $hosts -}}
{{- $names = concat $names (list . (printf "%s.%s" . $ns) (printf "%s.%s.svc" . $ns) (printf "%s.%s.svc.cluster.local" . $ns)) -}}
{{- end -}}
{{- $names = concat $names (list "localhost") (.Values.chromadb.tls.extraDnsNames | default list) -}}
{{- toJson (uniq $names) -}}
{{- end }}

{{/* Checks a schema cannot express; rendered once, by secret-tls.yaml. */}}
{{- define "chromadb.tls.validate" -}}
{{- $t := .Values.chromadb.tls -}}
{{- if $t.enabled -}}
{{- if ne (include "chromadb.gatewayOn" .) "true" -}}
{{- fail "chromadb.tls.enabled=true needs the gateway, which serves HTTPS: set gateway.enabled=true (and a Chroma 1.x chromadb.apiVersion), or chromadb.tls.enabled=false" -}}
{{- end -}}
{{- if and $t.certManager.enabled $t.existingSecret -}}
{{- fail "chromadb.tls.certManager.enabled and chromadb.tls.existingSecret are both set: choose one source for the certificate" -}}
{{- end -}}
{{- if and $t.certManager.enabled (not $t.certManager.issuerRef.name) -}}
{{- fail "chromadb.tls.certManager.enabled=true needs chromadb.tls.certManager.issuerRef.name (an Issuer or ClusterIssuer of cert-manager)" -}}
{{- end -}}
{{- if ne $t.clientAuth "none" -}}
{{- if eq (empty $t.clientCA.secretName) (empty $t.clientCA.configMapName) -}}
{{- fail (printf "chromadb.tls.clientAuth=%s needs exactly one of chromadb.tls.clientCA.secretName and chromadb.tls.clientCA.configMapName (the CA that signs client certificates)" $t.clientAuth) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end }}

{{/* The gateway's `tls` config section (chromactl.config.TLSSettings), as YAML. */}}
{{- define "chromadb.tls.gatewayConfig" -}}
{{- $t := .Values.chromadb.tls -}}
{{- $cfg := dict "enabled" (eq (include "chromadb.tls.on" .) "true") -}}
{{- if $cfg.enabled -}}
{{- $_ := set $cfg "cert_file" (printf "%s/tls.crt" (include "chromadb.path" "tls")) -}}
{{- $_ = set $cfg "key_file" (printf "%s/tls.key" (include "chromadb.path" "tls")) -}}
{{- $_ = set $cfg "min_version" (toString $t.minVersion) -}}
{{- $_ = set $cfg "client_auth" $t.clientAuth -}}
{{- if ne $t.clientAuth "none" -}}
{{- $_ = set $cfg "client_ca_file" (printf "%s/%s" (include "chromadb.path" "clientCA") $t.clientCA.key) -}}
{{- end -}}
{{- end -}}
{{- toYaml $cfg -}}
{{- end }}

{{/* Volume mounts of the gateway container (indent with nindent). */}}
{{- define "chromadb.tls.volumeMounts" -}}
{{- if eq (include "chromadb.tls.on" .) "true" }}
- name: tls
  mountPath: {{ include "chromadb.path" "tls" }}
  readOnly: true
{{- if ne .Values.chromadb.tls.clientAuth "none" }}
- name: tls-client-ca
  mountPath: {{ include "chromadb.path" "clientCA" }}
  readOnly: true
{{- end }}
{{- end }}
{{- end }}

{{/* Volumes of the pod (indent with nindent). Secret volumes are updated in place by the
     kubelet (a symlink swap), which the gateway notices and reloads. */}}
{{- define "chromadb.tls.volumes" -}}
{{- $t := .Values.chromadb.tls -}}
{{- if eq (include "chromadb.tls.on" .) "true" }}
- name: tls
  secret:
    secretName: {{ include "chromadb.tls.secretName" . }}
    defaultMode: 0440
{{- if ne $t.clientAuth "none" }}
- name: tls-client-ca
  {{- if $t.clientCA.secretName }}
  secret:
    secretName: {{ $t.clientCA.secretName }}
  {{- else }}
  configMap:
    name: {{ $t.clientCA.configMapName }}
  {{- end }}
    items:
      - key: {{ $t.clientCA.key }}
        path: {{ $t.clientCA.key }}
    defaultMode: 0444
{{- end }}
{{- end }}
{{- end }}

{{/* The action of the gateway's readiness probe: Chroma's healthcheck through the gateway, over
     the served scheme (the kubelet does not verify the certificate); only the port when the
     gateway requires client certificates, which the kubelet cannot present. */}}
{{- define "chromadb.tls.readinessAction" -}}
{{- if and (eq (include "chromadb.tls.on" .) "true") (eq .Values.chromadb.tls.clientAuth "required") }}
tcpSocket:
  port: http
{{- else }}
httpGet:
  path: /api/v2/healthcheck
  port: http
  scheme: {{ include "chromadb.scheme" . | upper }}
{{- end }}
{{- end }}

{{/* In-cluster client pods of the release (helm tests; any job that calls the gateway): the CA
     to verify the server with, as CHROMA_CA_FILE (ca.crt of the TLS Secret; a certificate from a
     public CA has none, and the system's CAs are used). Env, volume mount and volume. */}}
{{- define "chromadb.tls.trustEnv" -}}
{{- if eq (include "chromadb.tls.on" .) "true" }}
- name: CHROMA_CA_FILE
  value: {{ include "chromadb.path" "tlsCA" }}/ca.crt
{{- end }}
{{- end }}

{{/* Container volume mounts (list items) of the CA that verifies the server's certificate, when TLS is on. */}}
{{- define "chromadb.tls.trustVolumeMounts" -}}
{{- if eq (include "chromadb.tls.on" .) "true" }}
- name: tls-ca
  mountPath: {{ include "chromadb.path" "tlsCA" }}
  readOnly: true
{{- end }}
{{- end }}

{{/* Pod volumes (list items) of the CA that verifies the server's certificate, when TLS is on. */}}
{{- define "chromadb.tls.trustVolumes" -}}
{{- if eq (include "chromadb.tls.on" .) "true" }}
- name: tls-ca
  secret:
    secretName: {{ include "chromadb.tls.secretName" . }}
    optional: true
    items:
      - key: ca.crt
        path: ca.crt
    defaultMode: 0444
{{- end }}
{{- end }}

{{/* Ingress annotations: the user's, and when the gateway serves HTTPS, ingress-nginx's
     backend-protocol (the user's value wins). */}}
{{- define "chromadb.tls.ingressAnnotations" -}}
{{- $a := deepCopy (.Values.ingress.annotations | default dict) -}}
{{- if eq (include "chromadb.tls.on" .) "true" -}}
{{- $a = merge $a (dict "nginx.ingress.kubernetes.io/backend-protocol" "HTTPS") -}}
{{- end -}}
{{- toYaml $a -}}
{{- end }}

{{/* --------------------------------------------------------- NetworkPolicy
     networkpolicy.yaml renders the rules collected here. Each feature that needs traffic allowed
     defines one template in its own helper file that returns NetworkPolicy rules as a YAML list
     (nothing when the feature is off), and `chromadb.networkPolicy.ingress` or
     `chromadb.networkPolicy.egress` below includes it, one line per feature.
     tests/chart/test_network_policy.py checks the rules each value gives. */}}

{{/* Concatenates rendered rule lists (each a YAML list, or empty) into one YAML list. */}}
{{- define "chromadb.networkPolicy.rules" -}}
{{- $rules := list -}}
{{- range . -}}
{{- $rules = concat $rules (. | trim | default "[]" | fromYamlArray) -}}
{{- end -}}
{{- toYaml $rules -}}
{{- end }}

{{/* Every ingress rule (a YAML list). */}}
{{- define "chromadb.networkPolicy.ingress" -}}
{{- include "chromadb.networkPolicy.rules" (list
  (include "chromadb.networkPolicy.clientIngress" .)
  (include "chromadb.metricsNetworkPolicyIngress" .)
  (include "chromadb.testNetworkPolicyIngress" .)
  (include "chromadb.backupNetworkPolicyIngress" .)
  (include "chromadb.haNetworkPolicyIngress" .)
) -}}
{{- end }}

{{/* Every egress rule (a YAML list); used when networkPolicy.egress.enabled. */}}
{{- define "chromadb.networkPolicy.egress" -}}
{{- include "chromadb.networkPolicy.rules" (list
  (include "chromadb.networkPolicy.dnsEgress" .)
  (include "chromadb.networkPolicy.releaseEgress" .)
  (include "chromadb.networkPolicy.userEgress" .)
  (include "chromadb.haNetworkPolicyEgress" .)
) -}}
{{- end }}

{{/* Clients: the Chroma port, from networkPolicy.ingressFrom (everyone when empty). */}}
{{- define "chromadb.networkPolicy.clientIngress" -}}
{{- $rule := dict "ports" (list (dict "port" "http" "protocol" "TCP")) -}}
{{- with .Values.networkPolicy.ingressFrom }}{{ $_ := set $rule "from" . }}{{ end -}}
{{- toYaml (list $rule) -}}
{{- end }}

{{/* DNS: always, to the cluster's DNS pods (networkPolicy.egress.dnsTo). */}}
{{- define "chromadb.networkPolicy.dnsEgress" -}}
{{- toYaml (list (dict "to" .Values.networkPolicy.egress.dnsTo "ports" (list (dict "port" 53 "protocol" "UDP") (dict "port" 53 "protocol" "TCP")))) -}}
{{- end }}

{{/* The release's own pods (helm tests, backup jobs) reach the server's Chroma port. */}}
{{- define "chromadb.networkPolicy.releaseEgress" -}}
{{- $server := include "chromadb.serverSelectorLabels" . | fromYaml -}}
{{- toYaml (list (dict "to" (list (dict "podSelector" (dict "matchLabels" $server))) "ports" (list (dict "port" "http" "protocol" "TCP")))) -}}
{{- end }}

{{/* The user's rules: the OIDC issuer, backup targets, anything else the pods call. */}}
{{- define "chromadb.networkPolicy.userEgress" -}}
{{- toYaml (.Values.networkPolicy.egress.rules | default list) -}}
{{- end }}

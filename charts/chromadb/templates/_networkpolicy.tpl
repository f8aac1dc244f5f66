{{/* --------------------------------------------------------- NetworkPolicy
     networkpolicy.yaml renders what these helpers collect. A feature that needs traffic
     allowed does not edit the policy: it defines a named template that returns NetworkPolicy
     rules as a YAML list (empty when the feature is off) and adds the template's name to
     `chromadb.networkPolicy.ingressSources` or `chromadb.networkPolicy.egressSources` below.
     tests/chart/test_network_policy.py checks every source renders a list of valid rules. */}}

{{/* Named templates contributing ingress rules, as a JSON list of names. */}}
{{- define "chromadb.networkPolicy.ingressSources" -}}
{{- toJson (list "chromadb.networkPolicy.clientIngress" "chromadb.networkPolicy.metricsIngress" "chromadb.networkPolicy.testIngress" "chromadb.backupNetworkPolicyIngress") -}}
{{- end }}

{{/* Named templates contributing egress rules, as a JSON list of names. */}}
{{- define "chromadb.networkPolicy.egressSources" -}}
{{- toJson (list "chromadb.networkPolicy.dnsEgress" "chromadb.networkPolicy.releaseEgress" "chromadb.networkPolicy.userEgress") -}}
{{- end }}

{{/* Every ingress rule: the sources' lists, concatenated (a YAML list). */}}
{{- define "chromadb.networkPolicy.ingress" -}}
{{- $rules := list -}}
{{- range $name := include "chromadb.networkPolicy.ingressSources" . | fromJsonArray -}}
{{- $rules = concat $rules (include $name $ | trim | default "[]" | fromYamlArray) -}}
{{- end -}}
{{- toYaml $rules -}}
{{- end }}

{{/* Every egress rule (a YAML list); used when networkPolicy.egress.enabled. */}}
{{- define "chromadb.networkPolicy.egress" -}}
{{- $rules := list -}}
{{- range $name := include "chromadb.networkPolicy.egressSources" . | fromJsonArray -}}
{{- $rules = concat $rules (include $name $ | trim | default "[]" | fromYamlArray) -}}
{{- end -}}
{{- toYaml $rules -}}
{{- end }}

{{/* Clients: the Chroma port, from networkPolicy.ingressFrom (everyone when empty). */}}
{{- define "chromadb.networkPolicy.clientIngress" -}}
{{- $rule := dict "ports" (list (dict "port" "http" "protocol" "TCP")) -}}
{{- with .Values.networkPolicy.ingressFrom }}{{ $_ := set $rule "from" . }}{{ end -}}
{{- toYaml (list $rule) -}}
{{- end }}

{{/* The release's helm test pods: the Chroma port, whatever networkPolicy.ingressFrom says. */}}
{{- define "chromadb.networkPolicy.testIngress" -}}
{{- if and .Values.tests.enabled .Values.networkPolicy.ingressFrom -}}
{{- $tests := merge (dict "app.kubernetes.io/component" "test") (include "chromadb.selectorLabels" . | fromYaml) -}}
{{- toYaml (list (dict "from" (list (dict "podSelector" (dict "matchLabels" $tests))) "ports" (list (dict "port" "http" "protocol" "TCP")))) -}}
{{- end -}}
{{- end }}

{{/* Prometheus: the metrics ports (gateway, OpenTelemetry collector), from networkPolicy.metricsFrom (closed when empty). */}}
{{- define "chromadb.networkPolicy.metricsIngress" -}}
{{- if and (eq (include "chromadb.gatewayOn" .) "true") .Values.networkPolicy.metricsFrom -}}
{{- $ports := list -}}
{{- range (include "chromadb.metricsPorts" . | fromYamlArray) }}{{ $ports = append $ports (dict "port" . "protocol" "TCP") }}{{ end -}}
{{- toYaml (list (dict "from" .Values.networkPolicy.metricsFrom "ports" $ports)) -}}
{{- end -}}
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

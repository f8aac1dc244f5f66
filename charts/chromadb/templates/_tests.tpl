{{/* ----------------------------------------------------------------- tests
     The helm test pods (templates/tests/). */}}

{{/* A helm test pod running one `chromactl smoke` check. (dict "ctx" $ "check" "heartbeat") */}}
{{- define "chromadb.testPod" -}}
{{- $ := .ctx -}}
apiVersion: v1
kind: Pod
metadata:
  name: {{ include "chromadb.fullname" $ }}-test-{{ .check }}
  {{- include "chromadb.metadata" (dict "ctx" $ "component" "test" "annotations" (dict "helm.sh/hook" "test" "helm.sh/hook-weight" (toString .weight) "helm.sh/hook-delete-policy" "before-hook-creation,hook-succeeded")) | nindent 2 }}
spec:
  restartPolicy: Never
  automountServiceAccountToken: false
  enableServiceLinks: false
  securityContext:
    {{- toYaml $.Values.podSecurityContext | nindent 4 }}
  {{- with (include "chromadb.imagePullSecrets" $) }}{{ . | nindent 2 }}{{ end }}
  containers:
    - name: smoke
      {{- include "chromadb.chromactlContainerImage" $ | nindent 6 }}
      command: [chromactl, smoke, --check, {{ .check }}]
      env:
        - name: CHROMA_URL
          value: {{ include "chromadb.serviceURL" $ | quote }}
        {{- $auth := $.Values.chromadb.auth }}
        {{- if and (eq (include "chromadb.gatewayOn" $) "true") $auth.enabled }}
        {{- if eq (include "chromadb.auth.hasToken" $) "true" }}
        - name: CHROMA_TOKEN_FILE
          value: {{ include "chromadb.path" "auth" }}/token
        - name: CHROMA_AUTH_TOKEN_TRANSPORT_HEADER
          value: {{ include "chromadb.tokenHeader" $ | quote }}
        {{- else }}
        - name: CHROMA_USERNAME_FILE
          value: {{ include "chromadb.path" "auth" }}/username
        - name: CHROMA_PASSWORD_FILE
          value: {{ include "chromadb.path" "auth" }}/password
        {{- end }}
        {{- end }}
        {{- with (include "chromadb.tls.trustEnv" $ | trim) }}{{ . | nindent 8 }}{{ end }}
      {{- $authOn := and (eq (include "chromadb.gatewayOn" $) "true") $.Values.chromadb.auth.enabled }}
      {{- if or $authOn (eq (include "chromadb.tls.on" $) "true") }}
      volumeMounts:
        {{- if $authOn }}
        - name: auth
          mountPath: {{ include "chromadb.path" "auth" }}
          readOnly: true
        {{- end }}
        {{- with (include "chromadb.tls.trustVolumeMounts" $ | trim) }}{{ . | nindent 8 }}{{ end }}
      {{- end }}
      resources:
        requests:
          cpu: 10m
          memory: 32Mi
        limits:
          cpu: 200m
          memory: 128Mi
      securityContext:
        {{- toYaml $.Values.securityContext | nindent 8 }}
  {{- if or $authOn (eq (include "chromadb.tls.on" $) "true") }}
  volumes:
    {{- if $authOn }}
    - name: auth
      secret:
        secretName: {{ include "chromadb.authSecretName" $ }}
        defaultMode: 0440
    {{- end }}
    {{- with (include "chromadb.tls.trustVolumes" $ | trim) }}{{ . | nindent 4 }}{{ end }}
  {{- end }}
{{- end }}

{{/* NetworkPolicy ingress rules (a YAML list): the release's helm test pods reach the Chroma port,
     whatever networkPolicy.ingressFrom says. */}}
{{- define "chromadb.testNetworkPolicyIngress" -}}
{{- if and .Values.tests.enabled .Values.networkPolicy.ingressFrom -}}
{{- $tests := merge (dict "app.kubernetes.io/component" "test") (include "chromadb.selectorLabels" . | fromYaml) -}}
{{- toYaml (list (dict "from" (list (dict "podSelector" (dict "matchLabels" $tests))) "ports" (list (dict "port" "http" "protocol" "TCP")))) -}}
{{- end -}}
{{- end }}

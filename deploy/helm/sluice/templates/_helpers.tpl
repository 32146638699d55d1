{{/* Helm's standard labels, and the selector labels deploy/ uses (kept identical so both installs select alike). */}}
{{- define "sluice.labels" -}}
app.kubernetes.io/name: sluice
app.kubernetes.io/part-of: sluice
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end }}

{{- define "sluice.image" -}}
{{ printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* The container and pod hardening deploy/deployment.yaml uses (the namespace enforces `restricted`). */}}
{{- define "sluice.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile: {type: RuntimeDefault}
{{- end }}

{{- define "sluice.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: [ALL]
seccompProfile: {type: RuntimeDefault}
{{- end }}

{{/* The notifications ConfigMap as NAMESPACE/NAME (default: sluice-notifications in the release's namespace). */}}
{{- define "sluice.notificationsConfigMap" -}}
{{- $ref := .Values.notifications.configMap | default (printf "%s/sluice-notifications" .Release.Namespace) -}}
{{- if ne (len (splitList "/" $ref)) 2 -}}
{{- fail (printf "notifications.configMap must be NAMESPACE/NAME, not %q" $ref) -}}
{{- end -}}
{{- $ref -}}
{{- end }}

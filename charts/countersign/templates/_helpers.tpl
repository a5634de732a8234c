{{- define "countersign.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}{{ .Release.Name | trunc 50 | trimSuffix "-" }}{{- else -}}{{ printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" }}{{- end -}}
{{- end -}}

{{- define "countersign.labels" -}}
app.kubernetes.io/name: countersign
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: countersign
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "countersign.selector" -}}
app.kubernetes.io/name: countersign
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "countersign.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "countersign.webhookName" -}}{{ include "countersign.fullname" . }}-webhook{{- end -}}
{{- define "countersign.controllerName" -}}{{ include "countersign.fullname" . }}-controller{{- end -}}
{{- define "countersign.webhookConfigName" -}}{{ include "countersign.fullname" . }}{{- end -}}
{{- define "countersign.tlsSecret" -}}{{ .Values.certificates.secretName | default (printf "%s-webhook-tls" (include "countersign.fullname" .)) }}{{- end -}}
{{- define "countersign.admissionClientCA" -}}{{ .Values.webhook.admissionAuth.clientCA.configMapName | default (printf "%s-admission-client-ca" (include "countersign.fullname" .)) }}{{- end -}}
{{- define "countersign.controllerUser" -}}system:serviceaccount:{{ .Release.Namespace }}:{{ include "countersign.controllerName" . }}{{- end -}}

{{/* The CEL matchCondition selecting the gated subjects (mirrors src/admission/registration.ts). */}}
{{- define "countersign.subjectsExpression" -}}
{{- $parts := list -}}
{{- with .Values.webhook.selectedSubjects.users -}}
{{- $q := list -}}{{- range . -}}{{- $q = append $q (printf "'%s'" .) -}}{{- end -}}
{{- $parts = append $parts (printf "request.userInfo.username in [%s]" (join ", " $q)) -}}
{{- end -}}
{{- with .Values.webhook.selectedSubjects.groups -}}
{{- $q := list -}}{{- range . -}}{{- $q = append $q (printf "'%s'" .) -}}{{- end -}}
{{- $parts = append $parts (printf "request.userInfo.groups.exists(g, g in [%s])" (join ", " $q)) -}}
{{- end -}}
{{- range .Values.webhook.selectedSubjects.serviceAccountNamespaces -}}
{{- $parts = append $parts (printf "request.userInfo.username.startsWith('system:serviceaccount:%s:')" .) -}}
{{- end -}}
{{- join " || " $parts -}}
{{- end -}}

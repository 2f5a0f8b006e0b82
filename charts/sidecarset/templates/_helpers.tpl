{{/*
Names. Every object is prefixed with `sidecarset.fullname`; the operator is told the names it
uses at run time (Service, certificate Secret, Lease, the ClusterRole that owns the webhook
configurations) through its flags, so the two cannot drift apart.
*/}}
{{- define "sidecarset.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "sidecarset.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "sidecarset.webhookService" -}}
{{- printf "%s-webhook" (include "sidecarset.fullname" .) }}
{{- end }}

{{- define "sidecarset.certificateSecret" -}}
{{- printf "%s-webhook-certs" (include "sidecarset.fullname" .) }}
{{- end }}

{{- define "sidecarset.lease" -}}
{{- printf "%s-controller" (include "sidecarset.fullname" .) }}
{{- end }}

{{- define "sidecarset.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sidecarset.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "sidecarset.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "sidecarset.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: sidecarset
{{- end }}

{{- define "sidecarset.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

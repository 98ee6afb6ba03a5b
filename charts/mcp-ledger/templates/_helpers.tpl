{{/* Base name of every object: the release name, with "mcp-ledger" unless it already says so. */}}
{{- define "mcp-ledger.fullname" -}}
{{- if contains "mcp-ledger" .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-mcp-ledger" .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "mcp-ledger.labels" -}}
app.kubernetes.io/name: mcp-ledger
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "mcp-ledger.operatorSelector" -}}
app.kubernetes.io/name: mcp-ledger
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "mcp-ledger.operatorName" -}}{{ include "mcp-ledger.fullname" . }}-operator{{- end -}}

{{- define "mcp-ledger.tlsSecret" -}}{{ include "mcp-ledger.fullname" . }}-webhook-tls{{- end -}}

{{- define "mcp-ledger.image" -}}
{{- $tag := .image.tag | default .root.Chart.AppVersion -}}
{{- printf "%s:%s" .image.repository $tag -}}
{{- end -}}

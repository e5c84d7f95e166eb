{{- define "gantry.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "gantry.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "gantry.labels" -}}
app.kubernetes.io/name: {{ include "gantry.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "gantry.selectorLabels" -}}
app.kubernetes.io/name: {{ include "gantry.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "gantry.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "gantry.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "gantry.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* Namespaces where workloads may be changed: the list, plus labelled namespaces found at install. */}}
{{- define "gantry.workloadNamespaces" -}}
{{- $names := list -}}
{{- range .Values.rbac.workloadNamespaces -}}{{- $names = append $names . -}}{{- end -}}
{{- with .Values.rbac.workloadNamespaceSelector -}}
{{- $selector := . -}}
{{- range (lookup "v1" "Namespace" "" "").items -}}
{{- $labels := .metadata.labels | default dict -}}
{{- $match := true -}}
{{- range $key, $value := $selector -}}{{- if ne (get $labels $key) $value -}}{{- $match = false -}}{{- end -}}{{- end -}}
{{- if $match -}}{{- $names = append $names .metadata.name -}}{{- end -}}
{{- end -}}
{{- end -}}
{{- $names | uniq | toJson -}}
{{- end -}}

{{/* "true" when workload permissions are per namespace, "" when cluster-wide. */}}
{{- define "gantry.scopedWorkloads" -}}
{{- if or .Values.rbac.workloadNamespaces .Values.rbac.workloadNamespaceSelector -}}true{{- end -}}
{{- end -}}

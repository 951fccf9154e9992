{{- define "authgate.name" -}}{{ .Release.Name }}{{- end -}}

{{- define "authgate.labels" -}}
app.kubernetes.io/name: authgate
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "authgate.adminSecret" -}}{{ .Values.adminToken.existingSecret | default (printf "%s-admin" .Release.Name) }}{{- end -}}
{{- define "authgate.redisSecret" -}}{{ .Values.redis.existingSecret | default (printf "%s-redis" .Release.Name) }}{{- end -}}

{{/*
Names, labels and shared lookups. Every stage template ranges over
"covidct.stages" so that the three stages always render the same objects.
*/}}

{{- define "covidct.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "covidct.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* The pipeline stages, in flow order (docs/contracts.md). */}}
{{- define "covidct.stages" -}}
ingest segment classify
{{- end }}

{{- define "covidct.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "covidct.selectorLabels" -}}
app.kubernetes.io/name: {{ include "covidct.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "covidct.labels" -}}
helm.sh/chart: {{ include "covidct.chart" . }}
{{ include "covidct.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: covidct
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Labels of one component: pass (dict "root" $ "component" "segment"). */}}
{{- define "covidct.componentLabels" -}}
{{ include "covidct.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "covidct.componentSelectorLabels" -}}
{{ include "covidct.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "covidct.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (printf "%s-worker" (include "covidct.fullname" .)) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "covidct.image" -}}
{{- printf "%s:%s" .image.repository (default .root.Chart.AppVersion .image.tag) }}
{{- end }}

{{/* ---- broker ---- */}}

{{- define "covidct.amqpSecretName" -}}
{{- if .Values.rabbitmq.enabled }}
{{- printf "%s-rabbitmq" (include "covidct.fullname" .) }}
{{- else if .Values.amqp.existingSecret }}
{{- .Values.amqp.existingSecret }}
{{- else }}
{{- printf "%s-external" (include "covidct.fullname" .) }}
{{- end }}
{{- end }}

{{- define "covidct.amqpUrlKey" -}}
{{- if and (not .Values.rabbitmq.enabled) .Values.amqp.existingSecret }}
{{- .Values.amqp.urlKey }}
{{- else }}amqp-url{{- end }}
{{- end }}

{{- define "covidct.amqpManagementUrlKey" -}}
{{- if and (not .Values.rabbitmq.enabled) .Values.amqp.existingSecret }}
{{- .Values.amqp.managementUrlKey }}
{{- else }}management-url{{- end }}
{{- end }}

{{/* ---- object storage ---- */}}

{{- define "covidct.s3SecretName" -}}
{{- if .Values.minio.enabled }}
{{- printf "%s-minio" (include "covidct.fullname" .) }}
{{- else if .Values.s3.existingSecret }}
{{- .Values.s3.existingSecret }}
{{- else }}
{{- printf "%s-external" (include "covidct.fullname" .) }}
{{- end }}
{{- end }}

{{- define "covidct.s3AccessKeyKey" -}}
{{- if .Values.minio.enabled }}root-user
{{- else if .Values.s3.existingSecret }}{{ .Values.s3.accessKeyKey }}
{{- else }}s3-access-key{{- end }}
{{- end }}

{{- define "covidct.s3SecretKeyKey" -}}
{{- if .Values.minio.enabled }}root-password
{{- else if .Values.s3.existingSecret }}{{ .Values.s3.secretKeyKey }}
{{- else }}s3-secret-key{{- end }}
{{- end }}

{{- define "covidct.s3Endpoint" -}}
{{- if .Values.minio.enabled }}
{{- printf "http://%s-minio.%s.svc:9000" (include "covidct.fullname" .) .Release.Namespace }}
{{- else }}
{{- required "s3.endpoint is required when minio.enabled=false" .Values.s3.endpoint }}
{{- end }}
{{- end }}

{{/* ---- models ---- */}}

{{/* Directory of a stage's bundle inside the container: pass (dict "root" $ "stage" "segment"). */}}
{{- define "covidct.modelPath" -}}
{{- $m := index .root.Values.models .stage }}
{{- if eq .root.Values.models.source "image" }}
{{- printf "/models/%s" $m.name }}
{{- else }}
{{- printf "/models/%s/%s" $m.name $m.version }}
{{- end }}
{{- end }}

{{/* Stages that load a model bundle. */}}
{{- define "covidct.usesModel" -}}
{{- if has .stage (list "segment" "classify") }}true{{ end }}
{{- end }}

{{/* Checksums that roll the pods when configuration or credentials change. */}}
{{- define "covidct.checksums" -}}
checksum/config: {{ include (print .Template.BasePath "/configmap.yaml") . | sha256sum }}
checksum/secret: {{ include (print .Template.BasePath "/secret.yaml") . | sha256sum }}
{{- end }}

{{/* Monitoring toggles: "auto" follows the presence of the prometheus-operator API. */}}
{{- define "covidct.monitoringEnabled" -}}
{{- $v := .value }}
{{- if eq (toString $v) "auto" }}
{{- if .root.Capabilities.APIVersions.Has "monitoring.coreos.com/v1" }}true{{ end }}
{{- else if $v }}true{{ end }}
{{- end }}

{{/* The queues a stage consumes from (docs/contracts.md). */}}
{{- define "covidct.stageQueues" -}}
{{- $queues := list (printf "covidct.%s" .stage) }}
{{- if and (eq .stage "ingest") (eq .root.Values.config.ingestTrigger "amqp") }}
{{- $queues = append $queues "covidct.ingest.minio" }}
{{- end }}
{{- join " " $queues }}
{{- end }}

{{/* Fail early on values that cannot work together. */}}
{{- define "covidct.validate" -}}
{{- if and (not .Values.rabbitmq.enabled) (not .Values.amqp.existingSecret) (not .Values.amqp.url) }}
{{- fail "amqp.url or amqp.existingSecret is required when rabbitmq.enabled=false" }}
{{- end }}
{{- if and (not .Values.minio.enabled) (not .Values.s3.existingSecret) (or (not .Values.s3.accessKey) (not .Values.s3.secretKey)) }}
{{- fail "s3.accessKey and s3.secretKey (or s3.existingSecret) are required when minio.enabled=false" }}
{{- end }}
{{- if and (eq .Values.models.source "pvc") (not .Values.models.pvc.claimName) }}
{{- fail "models.pvc.claimName is required when models.source=pvc" }}
{{- end }}
{{- range $stage := splitList " " (include "covidct.stages" .) }}
{{- $s := index $.Values.stages $stage }}
{{- if and $s.enabled $s.autoscaling.enabled $s.autoscaling.keda.enabled (eq $.Values.keda.trigger "management") (not $.Values.rabbitmq.enabled) (not $.Values.amqp.existingSecret) (not $.Values.amqp.managementUrl) }}
{{- fail "amqp.managementUrl is required for KEDA scaling when rabbitmq.enabled=false" }}
{{- end }}
{{- if and $s.autoscaling.enabled (gt (int $s.autoscaling.minReplicas) (int $s.autoscaling.maxReplicas)) }}
{{- fail (printf "stages.%s.autoscaling.minReplicas must not exceed maxReplicas" $stage) }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Shared pod pieces of the stage Deployments. Pass (dict "root" $ "stage" "segment").
*/}}

{{- define "covidct.credentialEnv" -}}
- name: COVIDCT_AMQP_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "covidct.amqpSecretName" .root }}
      key: {{ include "covidct.amqpUrlKey" .root }}
{{ include "covidct.s3Env" . }}
{{- end }}

{{- define "covidct.s3Env" -}}
- name: COVIDCT_S3_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ include "covidct.s3SecretName" .root }}
      key: {{ include "covidct.s3AccessKeyKey" .root }}
- name: COVIDCT_S3_SECRET_KEY
  valueFrom:
    secretKeyRef:
      name: {{ include "covidct.s3SecretName" .root }}
      key: {{ include "covidct.s3SecretKeyKey" .root }}
{{- end }}

{{- define "covidct.modelFetchInitContainer" -}}
{{- $root := .root }}
{{- $s := index $root.Values.stages .stage }}
{{- $m := index $root.Values.models .stage -}}
- name: fetch-model
  image: {{ include "covidct.image" (dict "root" $root "image" $s.image) | quote }}
  imagePullPolicy: {{ $s.image.pullPolicy }}
  command:
    - python
    - /scripts/fetch_model.py
    - --bucket
    - {{ default $root.Values.config.workBucket $root.Values.models.s3.bucket | quote }}
    - --prefix
    - {{ printf "models/%s/%s/" $m.name $m.version | quote }}
    - --dest
    - {{ include "covidct.modelPath" . | quote }}
  envFrom:
    - configMapRef:
        name: {{ include "covidct.fullname" $root }}-config
  env:
    {{- include "covidct.s3Env" . | nindent 4 }}
  securityContext:
    {{- toYaml $s.securityContext | nindent 4 }}
  resources:
    requests:
      cpu: 100m
      memory: 256Mi
    limits:
      memory: 1Gi
  volumeMounts:
    - name: models
      mountPath: /models
    - name: scripts
      mountPath: /scripts
      readOnly: true
    - name: tmp
      mountPath: /tmp
{{- end }}

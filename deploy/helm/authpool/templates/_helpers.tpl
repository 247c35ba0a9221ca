{{/*
Expand the name of the chart.
*/}}
{{- define "authpool.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Create a default fully qualified app name.
We truncate at 52 chars because some Kubernetes name fields are limited to 63
and the components append "-rebalancer" (11 chars).
If release name contains chart name it will be used as a full name.
*/}}
{{- define "authpool.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Full name of the gateway's resources. */}}
{{- define "authpool.gateway.fullname" -}}
{{- printf "%s-gateway" (include "authpool.fullname" .) }}
{{- end }}

{{/* Full name of the rebalancer's resources. */}}
{{- define "authpool.rebalancer.fullname" -}}
{{- printf "%s-rebalancer" (include "authpool.fullname" .) }}
{{- end }}

{{/*
Create chart name and version as used by the chart label.
*/}}
{{- define "authpool.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Common labels
*/}}
{{- define "authpool.labels" -}}
helm.sh/chart: {{ include "authpool.chart" . }}
{{ include "authpool.selectorLabels" . }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: authpool
{{- end }}

{{/*
Selector labels
*/}}
{{- define "authpool.selectorLabels" -}}
app.kubernetes.io/name: {{ include "authpool.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Create the name of the service account to use
*/}}
{{- define "authpool.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "authpool.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The image reference, tag defaulting to the appVersion. */}}
{{- define "authpool.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* Where the ConfigMap is mounted. */}}
{{- define "authpool.configDir" -}}/etc/authpool{{- end }}

{{/*
"true" when the bundled Redis runs: enabled, and neither redis.url nor
redis.addrs names another one.
*/}}
{{- define "authpool.redisBundled" -}}
{{- if and .Values.redis.bundled.enabled (not .Values.redis.url) (not .Values.redis.addrs) }}true{{- end }}
{{- end }}

{{/*
Redis environment of both processes. REDIS_ADDRS wins over REDIS_URL so that
setting addrs is enough to switch to Sentinel/Cluster; the chart refuses to
render without either, because a deployed authpool must never fall back to
its in-memory Redis.
*/}}
{{- define "authpool.redisEnv" -}}
{{- if .Values.redis.addrs }}
- name: REDIS_ADDRS
  value: {{ join "," .Values.redis.addrs | quote }}
{{- with .Values.redis.masterName }}
- name: REDIS_MASTER_NAME
  value: {{ . | quote }}
{{- end }}
{{- else if .Values.redis.url }}
- name: REDIS_URL
  value: {{ .Values.redis.url | quote }}
{{- else if include "authpool.redisBundled" . }}
- name: REDIS_URL
  value: {{ printf "redis://%s-redis:6379" (include "authpool.fullname" .) | quote }}
{{- else }}
{{- fail "redis: set redis.url (standalone) or redis.addrs (+ redis.masterName for Sentinel), or redis.bundled.enabled; authpool keeps all shared state in Redis" }}
{{- end }}
{{- end }}

{{/*
Environment from secrets.existingSecret: one secretKeyRef per name in the
list passed as .names, each optional so the Secret may hold only some keys.
Usage: include "authpool.secretEnv" (dict "root" . "names" (list "API_KEYS"))
*/}}
{{- define "authpool.secretEnv" -}}
{{- $root := .root }}
{{- with $root.Values.secrets.existingSecret }}
{{- $secret := . }}
{{- range $name := $.names }}
- name: {{ $name }}
  valueFrom:
    secretKeyRef:
      name: {{ $secret | quote }}
      key: {{ index $root.Values.secrets.keys $name | quote }}
      optional: true
{{- end }}
{{- end }}
{{- end }}

{{/* Environment shared by both processes. */}}
{{- define "authpool.commonEnv" -}}
- name: APP_ENV
  value: {{ .Values.appEnv | quote }}
- name: LOG_LEVEL
  value: {{ .Values.logLevel | quote }}
- name: LOG_FORMAT
  value: {{ .Values.logFormat | quote }}
- name: AUTH_POOL_CONFIG
  value: {{ printf "%s/auth-pool.json" (include "authpool.configDir" .) | quote }}
- name: HOME
  value: {{ .Values.claudeHome.path | quote }}
{{- if not (kindIs "invalid" .Values.weeklyBudget) }}
- name: WEEKLY_BUDGET
  value: {{ .Values.weeklyBudget | toString | quote }}
{{- end }}
{{- if not (kindIs "invalid" .Values.rebalancingEnabled) }}
- name: AUTH_POOL_REBALANCING_ENABLED
  value: {{ .Values.rebalancingEnabled | toString | quote }}
{{- end }}
{{- with .Values.telemetry.otlpEndpoint }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ . | quote }}
{{- end }}
{{- include "authpool.redisEnv" . }}
{{- end }}

{{/*
GOMAXPROCS and GOMEMLIMIT from the container's own limits, or GOMEMLIMIT from
an explicit value. Usage: include "authpool.goEnv" (dict "container" "gateway" "goMemLimit" "")
*/}}
{{- define "authpool.goEnv" -}}
- name: GOMAXPROCS
  valueFrom:
    resourceFieldRef:
      containerName: {{ .container }}
      resource: limits.cpu
      divisor: "1"
- name: GOMEMLIMIT
{{- if .goMemLimit }}
  value: {{ .goMemLimit | quote }}
{{- else }}
  valueFrom:
    resourceFieldRef:
      containerName: {{ .container }}
      resource: limits.memory
      divisor: "1"
{{- end }}
{{- end }}

{{/*
A configDir as mounted in the container: "~/" is claudeHome.path.
Usage: include "authpool.expandDir" (dict "dir" .configDir "home" $.Values.claudeHome.path)
*/}}
{{- define "authpool.expandDir" -}}
{{- if hasPrefix "~/" .dir }}
{{- printf "%s/%s" (trimSuffix "/" .home) (trimPrefix "~/" .dir) | clean }}
{{- else }}
{{- clean .dir }}
{{- end }}
{{- end }}

{{/*
Checks the pool config beyond what the schema can say: unique subscription
ids, subscriptionVolumes naming real subscriptions, and a token Secret when
a subscription names oauthTokenEnv.
*/}}
{{- define "authpool.validate" -}}
{{- $ids := dict }}
{{- range .Values.authPool.subscriptions }}
{{- if hasKey $ids .id }}
{{- fail (printf "authPool.subscriptions: duplicate id %q" .id) }}
{{- end }}
{{- $_ := set $ids .id true }}
{{- if and .oauthTokenEnv (not $.Values.subscriptionTokens.existingSecret) }}
{{- fail (printf "authPool.subscriptions[%s].oauthTokenEnv is %s: set subscriptionTokens.existingSecret to the Secret holding its `claude setup-token` token" .id .oauthTokenEnv) }}
{{- end }}
{{- end }}
{{- range $id, $_ := .Values.claudeHome.subscriptionVolumes }}
{{- if not (hasKey $ids $id) }}
{{- fail (printf "claudeHome.subscriptionVolumes.%s: no subscription has this id" $id) }}
{{- end }}
{{- end }}
{{- end }}

{{/* Checksum of the rendered config, so a config change rolls the pods. */}}
{{- define "authpool.configChecksum" -}}
{{- include (print $.Template.BasePath "/configmap.yaml") . | sha256sum }}
{{- end }}

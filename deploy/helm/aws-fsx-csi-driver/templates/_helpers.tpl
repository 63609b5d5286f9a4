{{/* The app.kubernetes.io/name label. */}}
{{- define "fsx.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels a workload is selected by, besides its app label (the Go chart's too). */}}
{{- define "fsx.selectorLabels" -}}
app.kubernetes.io/name: {{ include "fsx.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "fsx.labels" -}}
{{ include "fsx.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/*
A workload's selector, as YAML. Selectors are immutable: on an upgrade the live object's is
kept (this chart's earlier layout selected on `app` alone, the Go driver's chart adds the name
and instance labels to its DaemonSet's), so `helm upgrade` from either works. A new install
gets the Go chart's selector for the DaemonSet, the one object both charts share, and `app`
alone for the StatefulSet (the Go chart has a Deployment instead). Arguments:
(list $ "DaemonSet" "fsx-csi-node").
*/}}
{{- define "fsx.selector" -}}
{{- $ctx := index . 0 -}}
{{- $live := lookup "apps/v1" (index . 1) $ctx.Release.Namespace (index . 2) -}}
{{- if and $live (dig "spec" "selector" "matchLabels" nil $live) -}}
{{ toYaml $live.spec.selector.matchLabels }}
{{- else -}}
app: {{ index . 2 }}
{{- if eq (index . 1) "DaemonSet" }}
{{ include "fsx.selectorLabels" $ctx }}
{{- end }}
{{- end -}}
{{- end -}}

{{/* A pod template's labels: the selector's, the chart's and the user's. Arguments: (list $ kind name podLabels). */}}
{{- define "fsx.podLabels" -}}
{{- $ctx := index . 0 -}}
{{- $labels := merge (dict) (include "fsx.selector" (list $ctx (index . 1) (index . 2)) | fromYaml) (dict "app" (index . 2)) (include "fsx.labels" $ctx | fromYaml) (index . 3 | default dict) -}}
{{ toYaml $labels }}
{{- end -}}

{{- define "fsx.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag }}
{{- end -}}

{{/* A sidecar's image: {repository, tag} (the Go chart's shape) or "repository:tag". */}}
{{- define "fsx.sidecarImage" -}}
{{- if kindIs "string" .image -}}{{ .image }}{{- else -}}{{ .image.repository }}:{{ .image.tag }}{{- end -}}
{{- end -}}

{{- define "fsx.sidecarPullPolicy" -}}
{{- if kindIs "map" .image -}}{{ .image.pullPolicy | default "IfNotPresent" }}{{- else -}}IfNotPresent{{- end -}}
{{- end -}}

{{/* Image pull secrets: names or {name: ...}. */}}
{{- define "fsx.imagePullSecrets" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
{{- range . }}
  {{- if kindIs "string" . }}
  - name: {{ . }}
  {{- else }}
  - {{ toYaml . | nindent 4 | trim }}
  {{- end }}
{{- end }}
{{- end }}
{{- end -}}

{{/* extraTags as the driver takes them: key=value,key=value, from a map or a string. */}}
{{- define "fsx.extraTags" -}}
{{- $tags := .Values.controller.extraTags -}}
{{- if kindIs "map" $tags -}}
{{- $parts := list -}}
{{- range $k, $v := $tags -}}{{- $parts = append $parts (printf "%s=%v" $k $v) -}}{{- end -}}
{{- join "," $parts -}}
{{- else -}}
{{- $tags | default "" -}}
{{- end -}}
{{- end -}}

{{/* RUST_LOG for a klog-style level: nothing (the driver's default, info) up to 3. */}}
{{- define "fsx.rustLog" -}}
{{- $level := int (default 2 .) -}}
{{- if ge $level 5 -}}trace
{{- else if ge $level 4 -}}debug,h2=info,hyper=info,tower=info,tonic=info,aws_smithy_runtime=info
{{- end -}}
{{- end -}}

{{- define "fsx.restricted" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: ["ALL"]
{{- end -}}

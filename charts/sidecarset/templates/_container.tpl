{{/*
The operator's container, in one of three modes (`sidecarset operator run --mode`):
- all: webhooks and controller in one process (the default);
- webhook and controller: the same two jobs in two containers of the pod (webhook.ownProcess),
  so that admission never shares a Python interpreter with the controller's rounds.
Each gets the flags of the jobs it does; the controller's probe port is its own (both
containers share the pod's network).
*/}}
{{- define "sidecarset.container" -}}
{{- $root := .root -}}
{{- $v := $root.Values -}}
{{- $webhook := ne .mode "controller" -}}
{{- $controller := ne .mode "webhook" -}}
{{- $probePort := ternary $v.probePort $v.controller.probePort $webhook -}}
{{- $probeName := ternary "probes" "ctl-probes" $webhook -}}
- name: {{ ternary "operator" .mode (eq .mode "all") }}
  image: {{ include "sidecarset.image" $root }}
  imagePullPolicy: {{ $v.image.pullPolicy }}
  args:
    - operator
    - run
    - --mode={{ .mode }}
    - --probe-port={{ $probePort }}
    {{- if $webhook }}
    - --webhook-port={{ $v.webhook.port }}
    - --service-name={{ include "sidecarset.webhookService" $root }}
    - --certificate-secret={{ include "sidecarset.certificateSecret" $root }}
    - --failure-policy={{ $v.webhook.failurePolicy }}
    {{- end }}
    # Both jobs need these: the webhook registers its scope, the controller reports pods
    # created outside it as missed injections only where the webhook is called.
    - --{{ if not $v.webhook.skipCriticalPods }}no-{{ end }}skip-critical-pods
    {{- range $v.webhook.excludedNamespaces }}
    - --exclude-namespace={{ . }}
    {{- end }}
    {{- if $controller }}
    - --lease-name={{ include "sidecarset.lease" $root }}
    - --workers={{ $v.controller.workers }}
    - --qps={{ $v.controller.qps }}
    - --failing-after={{ $v.controller.failingAfter }}
    {{- end }}
    {{- if and $webhook $v.allowPrivilegedSidecars }}
    - --allow-privileged-sidecars
    {{- end }}
    - --log-level={{ $v.logLevel }}
    {{- if $webhook }}
    - --drain-seconds={{ $v.drainSeconds }}
    {{- end }}
    {{- if $v.hostNetwork }}
    # Listen on the node's own IP only, not on every address of the node.
    - --bind-address=$(POD_IP)
    {{- end }}
    {{- range $v.extraArgs }}
    - {{ . | quote }}
    {{- end }}
  env:
    # The operator's namespace: its Lease, certificate Secret and ControllerRevisions.
    - name: POD_NAMESPACE
      valueFrom:
        fieldRef:
          fieldPath: metadata.namespace
    {{- if $v.hostNetwork }}
    # With hostNetwork, the node's IP: what the Service's endpoints and the probes use.
    - name: POD_IP
      valueFrom:
        fieldRef:
          fieldPath: status.podIP
    {{- end }}
    {{- with $v.env }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  ports:
    {{- if $webhook }}
    - name: webhook
      containerPort: {{ $v.webhook.port }}
      protocol: TCP
    {{- end }}
    - name: {{ $probeName }}
      containerPort: {{ $probePort }}
      protocol: TCP
  {{- if $webhook }}
  # Deleting the pod removes its endpoint at once, but that takes time to reach the
  # apiserver and kube-proxy: the pod keeps serving, still ready, meanwhile.
  lifecycle:
    preStop:
      exec:
        command: ["/bin/sleep", "{{ $v.drainSeconds }}"]
  {{- end }}
  {{- if $webhook }}
  # Ready once the caches are synced and the webhook server is up (only then does the
  # Service send admission requests here); not ready from SIGTERM on.
  {{- else }}
  # Ready once the caches are synced (the pod is ready only when both containers are).
  {{- end }}
  readinessProbe:
    httpGet:
      path: /readyz
      port: {{ $probeName }}
    periodSeconds: 5
    failureThreshold: 3
  livenessProbe:
    httpGet:
      path: /healthz
      port: {{ $probeName }}
    periodSeconds: 10
    failureThreshold: 3
    timeoutSeconds: 5
  securityContext:
    allowPrivilegeEscalation: false
    readOnlyRootFilesystem: true
    runAsNonRoot: true
    capabilities:
      drop: [ALL]
  resources:
    {{- toYaml (ternary $v.webhook.resources $v.resources (eq .mode "webhook")) | nindent 4 }}
  volumeMounts:
    # The serving certificate is loaded into TLS from a temporary file; the root is read-only.
    - name: tmp
      mountPath: /tmp
{{- end }}

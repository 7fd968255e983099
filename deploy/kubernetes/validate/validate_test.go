package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestManifests checks agentq's manifests, the directory above.
func TestManifests(t *testing.T) {
	objs, err := Validate("..")
	for _, o := range objs {
		t.Logf("checked %s", o)
	}
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]bool{}
	for _, o := range objs {
		kinds[o.Kind] = true
	}
	for _, k := range []string{"Deployment", "Service", "ConfigMap", "Secret", "HorizontalPodAutoscaler", "ScaledObject", "PodDisruptionBudget", "Kustomization", "Namespace", "PodMonitor"} {
		if !kinds[k] {
			t.Errorf("no %s among the manifests", k)
		}
	}
}

// TestRefuses breaks one manifest at a time in a copy and checks that the
// validator names what broke.
func TestRefuses(t *testing.T) {
	cases := []struct {
		name, file, old, new, want string
	}{
		{"unknown field", "worker-deployment.yaml", "  replicas: 2", "  replica: 2", `unknown field "replica"`},
		{"wrong type", "worker-deployment.yaml", "  replicas: 2", "  replicas: two", "cannot unmarshal"},
		{"bad quantity", "worker-deployment.yaml", "memory: 512Mi", "memory: 512MiB", "quantities must match"},
		{"probe not agentq health", "worker-deployment.yaml", `["/usr/local/bin/agentq", "health", "--config", "/etc/agentq/agentq.yaml", "--worker", "--timeout", "4s"]
            periodSeconds: 15`, `["/bin/true"]
            periodSeconds: 15`, "does not run /usr/local/bin/agentq health"},
		{"health timeout past the probe's", "dashboard.yaml", `"--timeout", "4s"]
            periodSeconds: 10`, `"--timeout", "5s"]
            periodSeconds: 10`, "does not end before timeoutSeconds"},
		{"liveness needs redis", "worker-deployment.yaml", "httpGet:\n              path: /metrics\n              port: metrics",
			`exec:
              command: ["/usr/local/bin/agentq", "health", "--worker"]`, "must not depend on Redis"},
		{"worker liveness not /metrics", "worker-deployment.yaml", "path: /metrics\n              port: metrics", "path: /healthz\n              port: metrics", "GETs /metrics"},
		{"liveness on no port", "dashboard.yaml", "tcpSocket:\n              port: http", "tcpSocket:\n              port: web", "none of the container's ports"},
		{"grace period too short", "worker-deployment.yaml", "terminationGracePeriodSeconds: 45", "terminationGracePeriodSeconds: 30", "less than worker.shutdown_timeout 30s"},
		{"metrics port not exposed", "worker-deployment.yaml", "containerPort: 9090", "containerPort: 9100", "no port 9090"},
		{"root filesystem writable", "dashboard.yaml", "readOnlyRootFilesystem: true", "readOnlyRootFilesystem: false", "readOnlyRootFilesystem is not true"},
		{"service selects nothing", "dashboard.yaml", "  selector:\n    app.kubernetes.io/name: agentq-dashboard\n  ports:", "  selector:\n    app.kubernetes.io/name: nobody\n  ports:", "selects no Deployment"},
		{"redis url written into a deployment", "worker-deployment.yaml", "          env:\n            - name: AGENTQ_REDIS_PASSWORD",
			"          env:\n            - name: AGENTQ_REDIS_URL\n              value: redis://redis:6379/0\n            - name: AGENTQ_REDIS_PASSWORD",
			"env AGENTQ_REDIS_URL is set in the Deployment"},
		{"env configmap missing", "dashboard.yaml", "                name: agentq-env\n", "                name: agentq-envs\n", "envFrom reads ConfigMap agentq-envs, which is not here"},
		{"redis url from nowhere", "dashboard.yaml", "                name: agentq-env\n", "                name: agentq-config\n", "no container reads AGENTQ_REDIS_URL from a ConfigMap"},
		{"configmap named twice", "agentq-env.yaml", "  AGENTQ_REDIS_URL: redis://redis:6379/0\n",
			"  AGENTQ_REDIS_URL: redis://redis:6379/0\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: agentq-env\ndata:\n  AGENTQ_REDIS_URL: redis://redis:6379/1\n",
			"a second ConfigMap agentq-env"},
		{"secret in the env configmap", "agentq-env.yaml", "  AGENTQ_REDIS_URL: redis://redis:6379/0\n", "  AGENTQ_REDIS_URL: redis://redis:6379/0\n  AGENTQ_REDIS_PASSWORD: hunter2\n", "holds AGENTQ_REDIS_PASSWORD, a secret"},
		{"dashboard user in the worker's env", "agentq-env.yaml", "  AGENTQ_REDIS_URL: redis://redis:6379/0\n", "  AGENTQ_REDIS_URL: redis://redis:6379/0\n  AGENTQ_DASHBOARD_BASIC_AUTH_USER: admin\n", "the worker would refuse"},
		{"missing secret key", "worker-deployment.yaml", "key: AGENTQ_REDIS_PASSWORD", "key: REDIS_PASSWORD", "lacks"},
		{"keda field misspelled", "autoscaling/keda-scaledobject.yaml", "minReplicaCount: 2", "minReplicas: 2", `unknown field "minReplicas"`},
		{"keda scales to zero", "autoscaling/keda-scaledobject.yaml", "minReplicaCount: 2", "minReplicaCount: 0", "minReplicaCount must be at least 1"},
		{"keda query without the gauges", "autoscaling/keda-scaledobject.yaml", "agentq_queue_oldest_pending_seconds{namespace", "up{namespace", "reads none of agentq's queue gauges"},
		{"keda query not promql", "autoscaling/keda-scaledobject.yaml", "          max(\n            max by (queue)", "          max((\n            max by (queue)", "parse error"},
		{"keda query in another namespace", "autoscaling/keda-scaledobject.yaml", `agentq_queue_depth{namespace="agentq"`, `agentq_queue_depth{namespace="default"`, `want namespace="agentq"`},
		{"keda query of other queues", "autoscaling/keda-scaledobject.yaml", `queue=~"default|webhooks|digest",state`, `queue="default",state`, "but the workers serve"},
		{"keda query counts paused queues", "autoscaling/keda-scaledobject.yaml",
			"\n            unless on (queue) (max by (queue) (agentq_queue_paused{namespace=\"agentq\"}) == 1)\n          ) or vector(0)\n        threshold: \"20\"",
			"\n          ) or vector(0)\n        threshold: \"20\"", "paused queues are not left out"},
		{"keda query empty on a fresh install", "autoscaling/keda-scaledobject.yaml", ") or vector(0)\n        threshold: \"60\"", ")\n        threshold: \"60\"", "or vector(0)"},
		{"a workflow queue the rules miss", "configmap.yaml", "queue: digest", "queue: reports", `the workers serve ["default" "reports" "webhooks"]`},
		{"adapter rule counts paused queues", "autoscaling/hpa.yaml", " unless on (queue) (max by (queue) (agentq_queue_paused{<<.LabelMatchers>>}) == 1)", "", "adapter rule: paused queues are not left out"},
		{"adapter rule missing", "autoscaling/hpa.yaml", "#         metricsQuery:", "#         query:", "no Prometheus Adapter rule"},
		{"hpa of other queues", "autoscaling/hpa.yaml", "values: [default, webhooks, digest]", "values: [default]", "but the workers serve"},
		{"kustomization without namespace", "kustomization.yaml", "namespace: agentq\nresources:", "resources:", "no namespace"},
		{"namespace not created", "namespace.yaml", "  name: agentq\n", "  name: agentq-system\n", "no Namespace manifest creates it"},
		{"optional manifest without namespace", "autoscaling/hpa.yaml", "  name: agentq-worker\n  namespace: agentq\n", "  name: agentq-worker\n", "applied on its own"},
		{"podmonitor port unknown", "monitoring/podmonitor.yaml", "    - port: metrics", "    - port: http-metrics", "is no port"},
		{"podmonitor selects nothing", "monitoring/podmonitor.yaml", "app.kubernetes.io/name: agentq-worker\n  podMetricsEndpoints", "app.kubernetes.io/name: agentq-workers\n  podMetricsEndpoints", "selects no Deployment"},
		{"hpa target missing", "autoscaling/hpa.yaml", "    name: agentq-worker\n  minReplicas", "    name: agentq-workers\n  minReplicas", "is no Deployment here"},
		{"kustomization resource missing", "kustomization.yaml", "  - dashboard.yaml", "  - dashboards.yaml", `resource "dashboards.yaml"`},
		{"unknown kind", "dashboard.yaml", "kind: Service", "kind: Ingress", `no schema here for apiVersion "v1", kind "Ingress"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := copyManifests(t)
			path := filepath.Join(dir, tc.file)
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(data), tc.old) {
				t.Fatalf("%s lacks %q", tc.file, tc.old)
			}
			if err := os.WriteFile(path, []byte(strings.Replace(string(data), tc.old, tc.new, 1)), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err = Validate(dir)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate = %v, want an error with %q", err, tc.want)
			}
		})
	}
}

// TestRefusesTwoEnvSources: the Deployments read AGENTQ_REDIS_URL from
// one ConfigMap, not each from its own.
func TestRefusesTwoEnvSources(t *testing.T) {
	dir := copyManifests(t)
	edit := func(file, old, new string) {
		t.Helper()
		path := filepath.Join(dir, file)
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(data), old) {
			t.Fatalf("%s lacks %q", file, old)
		}
		if err := os.WriteFile(path, []byte(strings.Replace(string(data), old, new, 1)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	edit("agentq-env.yaml", "  AGENTQ_REDIS_URL: redis://redis:6379/0\n",
		"  AGENTQ_REDIS_URL: redis://redis:6379/0\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: agentq-dashboard-env\ndata:\n  AGENTQ_REDIS_URL: redis://redis:6379/1\n")
	edit("dashboard.yaml", "                name: agentq-env\n", "                name: agentq-dashboard-env\n")
	_, err := Validate(dir)
	if want := "reads AGENTQ_REDIS_URL from ConfigMap agentq-env, but dashboard.yaml: Deployment agentq-dashboard reads it from ConfigMap agentq-dashboard-env"; err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("Validate = %v, want an error with %q", err, want)
	}
}

// copyManifests copies the manifests (not this directory) to a temporary
// directory.
func copyManifests(t *testing.T) string {
	t.Helper()
	dst := t.TempDir()
	err := filepath.WalkDir("..", func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel("..", path)
		if d.IsDir() {
			if d.Name() == "validate" {
				return filepath.SkipDir
			}
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), data, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

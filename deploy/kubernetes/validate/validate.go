// Command validate checks agentq's Kubernetes manifests without a cluster:
// every object is strict-decoded into the k8s.io/api type of its
// apiVersion and kind (an unknown or misspelled field, a wrong type or an
// unparsable quantity fails), the KEDA ScaledObject and the kustomization
// into shape types written here from their documented fields, and then
// the references between objects and agentq's own rules are checked:
// among them, that every Deployment reads AGENTQ_REDIS_URL from one
// ConfigMap (envFrom) and sets no such shared setting itself, and that
// no secret is in a ConfigMap read with envFrom or written into a
// Deployment.
//
// It is a module of its own, so that agentq does not depend on k8s.io.
// CI runs it as `go test` here; `go run . DIR` checks another directory.
package main

import (
	"bufio"
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	k8syaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	promlabels "github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
)

// agentqBinary is where the image puts agentq (Dockerfile).
const agentqBinary = "/usr/local/bin/agentq"

// shutdownMargin is what a worker pod's terminationGracePeriodSeconds must
// leave above worker.shutdown_timeout: the alerts (5s) and the metrics
// server (5s) stop after the running steps.
const shutdownMargin = 10 * time.Second

// Object is one decoded manifest.
type Object struct {
	File       string // relative to the checked directory
	APIVersion string
	Kind       string
	Name       string
	Namespace  string // metadata.namespace, "" when not set
	Value      any    // a pointer to the decoded type
}

func (o Object) String() string { return fmt.Sprintf("%s: %s %s", o.File, o.Kind, o.Name) }

// ScaledObject is KEDA's keda.sh/v1alpha1 ScaledObject, as far as agentq's
// manifests use it: the fields of its documented spec
// (https://keda.sh/docs/2.17/reference/scaledobject-spec/), so that a
// misspelled field fails here as it would against KEDA's CRD schema.
type ScaledObject struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		ScaleTargetRef struct {
			APIVersion             string `json:"apiVersion,omitempty"`
			Kind                   string `json:"kind,omitempty"`
			Name                   string `json:"name"`
			EnvSourceContainerName string `json:"envSourceContainerName,omitempty"`
		} `json:"scaleTargetRef"`
		PollingInterval       *int32 `json:"pollingInterval,omitempty"`
		InitialCooldownPeriod *int32 `json:"initialCooldownPeriod,omitempty"`
		CooldownPeriod        *int32 `json:"cooldownPeriod,omitempty"`
		IdleReplicaCount      *int32 `json:"idleReplicaCount,omitempty"`
		MinReplicaCount       *int32 `json:"minReplicaCount,omitempty"`
		MaxReplicaCount       *int32 `json:"maxReplicaCount,omitempty"`
		Advanced              *struct {
			HorizontalPodAutoscalerConfig *struct {
				Name     string                                         `json:"name,omitempty"`
				Behavior *autoscalingv2.HorizontalPodAutoscalerBehavior `json:"behavior,omitempty"`
			} `json:"horizontalPodAutoscalerConfig,omitempty"`
			RestoreToOriginalReplicaCount bool `json:"restoreToOriginalReplicaCount,omitempty"`
		} `json:"advanced,omitempty"`
		Triggers []struct {
			Type              string            `json:"type"`
			Name              string            `json:"name,omitempty"`
			UseCachedMetrics  bool              `json:"useCachedMetrics,omitempty"`
			Metadata          map[string]string `json:"metadata"`
			AuthenticationRef *struct {
				Name string `json:"name"`
				Kind string `json:"kind,omitempty"`
			} `json:"authenticationRef,omitempty"`
			MetricType autoscalingv2.MetricTargetType `json:"metricType,omitempty"`
		} `json:"triggers"`
		Fallback *struct {
			FailureThreshold int32 `json:"failureThreshold"`
			Replicas         int32 `json:"replicas"`
		} `json:"fallback,omitempty"`
	} `json:"spec"`
}

// PodMonitor is the Prometheus Operator's monitoring.coreos.com/v1
// PodMonitor, as far as agentq's manifests use it (the fields of its
// documented spec).
type PodMonitor struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		JobLabel          string               `json:"jobLabel,omitempty"`
		PodTargetLabels   []string             `json:"podTargetLabels,omitempty"`
		Selector          metav1.LabelSelector `json:"selector"`
		NamespaceSelector *struct {
			Any        bool     `json:"any,omitempty"`
			MatchNames []string `json:"matchNames,omitempty"`
		} `json:"namespaceSelector,omitempty"`
		PodMetricsEndpoints []struct {
			Port          string `json:"port,omitempty"`
			PortNumber    int32  `json:"portNumber,omitempty"`
			Path          string `json:"path,omitempty"`
			Scheme        string `json:"scheme,omitempty"`
			Interval      string `json:"interval,omitempty"`
			ScrapeTimeout string `json:"scrapeTimeout,omitempty"`
			HonorLabels   bool   `json:"honorLabels,omitempty"`
		} `json:"podMetricsEndpoints"`
	} `json:"spec"`
}

// Kustomization is kustomize's kustomize.config.k8s.io/v1beta1
// Kustomization, as far as agentq's manifests use it.
type Kustomization struct {
	metav1.TypeMeta `json:",inline"`
	Namespace       string            `json:"namespace,omitempty"`
	Resources       []string          `json:"resources"`
	CommonLabels    map[string]string `json:"commonLabels,omitempty"`
	Images          []struct {
		Name    string `json:"name"`
		NewName string `json:"newName,omitempty"`
		NewTag  string `json:"newTag,omitempty"`
		Digest  string `json:"digest,omitempty"`
	} `json:"images,omitempty"`
}

// newValue returns a pointer to the type of apiVersion and kind.
func newValue(apiVersion, kind string) (any, error) {
	switch apiVersion + "/" + kind {
	case "v1/ConfigMap":
		return &corev1.ConfigMap{}, nil
	case "v1/Secret":
		return &corev1.Secret{}, nil
	case "v1/Service":
		return &corev1.Service{}, nil
	case "v1/Namespace":
		return &corev1.Namespace{}, nil
	case "monitoring.coreos.com/v1/PodMonitor":
		return &PodMonitor{}, nil
	case "apps/v1/Deployment":
		return &appsv1.Deployment{}, nil
	case "policy/v1/PodDisruptionBudget":
		return &policyv1.PodDisruptionBudget{}, nil
	case "autoscaling/v2/HorizontalPodAutoscaler":
		return &autoscalingv2.HorizontalPodAutoscaler{}, nil
	case "keda.sh/v1alpha1/ScaledObject":
		return &ScaledObject{}, nil
	case "kustomize.config.k8s.io/v1beta1/Kustomization":
		return &Kustomization{}, nil
	}
	return nil, fmt.Errorf("no schema here for apiVersion %q, kind %q", apiVersion, kind)
}

// Decode strict-decodes every YAML document of one file.
func Decode(file string, data []byte) ([]Object, error) {
	r := k8syaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var out []Object
	for i := 0; ; i++ {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: document %d: %w", file, i+1, err)
		}
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal(doc, &tm); err != nil {
			return nil, fmt.Errorf("%s: document %d: %w", file, i+1, err)
		}
		if tm.APIVersion == "" && tm.Kind == "" && len(bytes.TrimSpace(stripComments(doc))) == 0 {
			continue // only comments
		}
		v, err := newValue(tm.APIVersion, tm.Kind)
		if err != nil {
			return nil, fmt.Errorf("%s: document %d: %w", file, i+1, err)
		}
		if err := yaml.UnmarshalStrict(doc, v); err != nil {
			return nil, fmt.Errorf("%s: %s (document %d): %w", file, tm.Kind, i+1, err)
		}
		o := Object{File: file, APIVersion: tm.APIVersion, Kind: tm.Kind, Value: v}
		if m, ok := v.(metav1.Object); ok {
			o.Name, o.Namespace = m.GetName(), m.GetNamespace()
		}
		out = append(out, o)
	}
}

func stripComments(doc []byte) []byte {
	var b bytes.Buffer
	for _, l := range bytes.Split(doc, []byte("\n")) {
		if t := bytes.TrimSpace(l); len(t) > 0 && t[0] != '#' {
			b.Write(l)
			b.WriteByte('\n')
		}
	}
	return b.Bytes()
}

// Validate decodes every *.yaml under dir (but this program's directory)
// and checks them together.
func Validate(dir string) ([]Object, error) {
	var objs []Object
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && d.Name() == "validate" {
			return filepath.SkipDir
		}
		if d.IsDir() || (filepath.Ext(path) != ".yaml" && filepath.Ext(path) != ".yml") {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		found, err := Decode(filepath.ToSlash(rel), data)
		if err != nil {
			return err
		}
		objs = append(objs, found...)
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(objs) == 0 {
		return nil, fmt.Errorf("no manifests under %s", dir)
	}
	return objs, Check(dir, objs)
}

// Check checks the objects together: names, references, and agentq's
// rules for its pods.
func Check(dir string, objs []Object) error {
	var errs []error
	fail := func(o Object, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", o, fmt.Sprintf(format, args...)))
	}
	deployments := map[string]*appsv1.Deployment{}
	configMaps := map[string]*corev1.ConfigMap{}
	secrets := map[string]*corev1.Secret{}
	seen := map[string]Object{}
	for _, o := range objs {
		if prev, ok := seen[o.Kind+"/"+o.Name]; ok && o.Kind != "Kustomization" {
			fail(o, "a second %s %s (the first is in %s): one of them would replace the other", o.Kind, o.Name, prev.File)
		}
		seen[o.Kind+"/"+o.Name] = o
		if o.Kind != "Kustomization" {
			for _, msg := range validation.IsDNS1123Subdomain(o.Name) {
				fail(o, "metadata.name %q: %s", o.Name, msg)
			}
		}
		switch v := o.Value.(type) {
		case *appsv1.Deployment:
			deployments[v.Name] = v
		case *corev1.ConfigMap:
			configMaps[v.Name] = v
		case *corev1.Secret:
			secrets[v.Name] = v
		}
	}
	ws, err := readWorkerSettings(configMaps)
	if err != nil {
		errs = append(errs, err)
	}
	ns := checkNamespaces(objs, fail)
	var redisFrom string // the ConfigMap the first Deployment reads AGENTQ_REDIS_URL from
	var redisFromObj Object
	for _, o := range objs {
		switch v := o.Value.(type) {
		case *appsv1.Deployment:
			for _, msg := range checkDeployment(v, configMaps, secrets, ws) {
				fail(o, "%s", msg)
			}
			from := envSource(v, sharedEnv[0], configMaps)
			switch {
			case from == "":
				fail(o, "no container reads %s from a ConfigMap with envFrom: set it in one ConfigMap that every Deployment reads", sharedEnv[0])
			case redisFrom == "":
				redisFrom, redisFromObj = from, o
			case from != redisFrom:
				fail(o, "reads %s from ConfigMap %s, but %s reads it from ConfigMap %s: the Deployments must read it from one place", sharedEnv[0], from, redisFromObj, redisFrom)
			}
		case *corev1.Service:
			d := selected(deployments, v.Spec.Selector)
			if d == nil {
				fail(o, "selector %v selects no Deployment's pods", v.Spec.Selector)
				continue
			}
			for _, p := range v.Spec.Ports {
				if p.TargetPort.StrVal != "" && !hasPort(d, p.TargetPort.StrVal) {
					fail(o, "port %s targets %q, which Deployment %s's containers do not name", p.Name, p.TargetPort.StrVal, d.Name)
				}
			}
		case *policyv1.PodDisruptionBudget:
			if v.Spec.Selector == nil || selected(deployments, v.Spec.Selector.MatchLabels) == nil {
				fail(o, "selector selects no Deployment's pods")
			}
		case *autoscalingv2.HorizontalPodAutoscaler:
			ref := v.Spec.ScaleTargetRef
			if ref.Kind != "Deployment" || deployments[ref.Name] == nil {
				fail(o, "scaleTargetRef %s %s is no Deployment here", ref.Kind, ref.Name)
			}
			if v.Spec.MinReplicas == nil || *v.Spec.MinReplicas < 1 || *v.Spec.MinReplicas > v.Spec.MaxReplicas {
				fail(o, "want 1 <= minReplicas <= maxReplicas (%d)", v.Spec.MaxReplicas)
			}
			if len(v.Spec.Metrics) == 0 {
				fail(o, "no metrics")
			}
			for _, msg := range checkAdapterRule(filepath.Join(dir, o.File), ns, ws.served) {
				fail(o, "%s", msg)
			}
			for _, m := range v.Spec.Metrics {
				if m.External == nil || !strings.HasPrefix(m.External.Metric.Name, "agentq_queue") {
					continue
				}
				if msg := checkQueueSelector(m.External.Metric.Selector, ws.served); msg != "" {
					fail(o, "external metric %s: %s", m.External.Metric.Name, msg)
				}
			}
		case *ScaledObject:
			for _, msg := range checkScaledObject(v, deployments, ns, ws.served) {
				fail(o, "%s", msg)
			}
		case *PodMonitor:
			for _, msg := range checkPodMonitor(v, deployments, ns, ws) {
				fail(o, "%s", msg)
			}
		case *Kustomization:
			for _, r := range v.Resources {
				if !slices.ContainsFunc(objs, func(x Object) bool { return x.File == r }) {
					fail(o, "resource %q is no manifest under %s", r, dir)
				}
			}
		}
	}
	return errors.Join(errs...)
}

// workerSettings are what the pods' manifests must agree with in agentq.yaml.
type workerSettings struct {
	shutdown    time.Duration // worker.shutdown_timeout
	metricsPort int32         // worker.metrics_addr's port, 0 when unset
	// served are the queues the workers serve, sorted: worker.queues as
	// given, or with its default, "default", enqueue.queue and every
	// workflow's and step's queue (agentq.go, workerQueues).
	served []string
}

// readWorkerSettings reads them from the agentq.yaml of the ConfigMaps
// (worker.shutdown_timeout is 30s, agentq's default, when unset).
func readWorkerSettings(cms map[string]*corev1.ConfigMap) (workerSettings, error) {
	for name, cm := range cms {
		text, ok := cm.Data["agentq.yaml"]
		if !ok {
			continue
		}
		var cfg struct {
			Worker struct {
				ShutdownTimeout string         `json:"shutdown_timeout"`
				MetricsAddr     string         `json:"metrics_addr"`
				Queues          map[string]int `json:"queues"`
			} `json:"worker"`
			Enqueue struct {
				Queue string `json:"queue"`
			} `json:"enqueue"`
			Workflows map[string]struct {
				Queue string `json:"queue"`
				Steps []struct {
					Queue string `json:"queue"`
				} `json:"steps"`
			} `json:"workflows"`
		}
		if err := yaml.Unmarshal([]byte(text), &cfg); err != nil {
			return workerSettings{}, fmt.Errorf("ConfigMap %s: agentq.yaml: %w", name, err)
		}
		ws := workerSettings{shutdown: 30 * time.Second}
		if v := cfg.Worker.ShutdownTimeout; v != "" {
			d, err := time.ParseDuration(v)
			if err != nil {
				return workerSettings{}, fmt.Errorf("ConfigMap %s: agentq.yaml: worker.shutdown_timeout: %w", name, err)
			}
			ws.shutdown = d
		}
		if v := cfg.Worker.MetricsAddr; v != "" {
			_, port, err := net.SplitHostPort(v)
			p, perr := strconv.ParseUint(port, 10, 16)
			if err != nil || perr != nil {
				return workerSettings{}, fmt.Errorf("ConfigMap %s: agentq.yaml: worker.metrics_addr %q is not host:port", name, v)
			}
			ws.metricsPort = int32(p)
		}
		served := map[string]bool{}
		if len(cfg.Worker.Queues) > 0 && !(len(cfg.Worker.Queues) == 1 && cfg.Worker.Queues["default"] == 1) {
			for q := range cfg.Worker.Queues {
				served[q] = true
			}
		} else {
			enq := cmp.Or(cfg.Enqueue.Queue, "default")
			served["default"], served[enq] = true, true
			for _, wf := range cfg.Workflows {
				served[cmp.Or(wf.Queue, enq)] = true
				for _, st := range wf.Steps {
					if st.Queue != "" {
						served[st.Queue] = true
					}
				}
			}
		}
		ws.served = slices.Sorted(maps.Keys(served))
		return ws, nil
	}
	return workerSettings{}, errors.New("no ConfigMap holds agentq.yaml")
}

func selected(deployments map[string]*appsv1.Deployment, sel map[string]string) *appsv1.Deployment {
	if len(sel) == 0 {
		return nil
	}
	for _, d := range deployments {
		if labels.SelectorFromSet(sel).Matches(labels.Set(d.Spec.Template.Labels)) {
			return d
		}
	}
	return nil
}

func hasPort(d *appsv1.Deployment, name string) bool {
	for _, c := range d.Spec.Template.Spec.Containers {
		for _, p := range c.Ports {
			if p.Name == name {
				return true
			}
		}
	}
	return false
}

// checkDeployment checks agentq's rules for a pod: it runs agentq with
// probes that run `agentq health`, non-root on a read-only root
// filesystem, with its config and secrets present, and a worker gets
// worker.shutdown_timeout plus a margin to stop and exposes the metrics
// port.
func checkDeployment(d *appsv1.Deployment, cms map[string]*corev1.ConfigMap, secrets map[string]*corev1.Secret, ws workerSettings) []string {
	var out []string
	bad := func(format string, args ...any) { out = append(out, fmt.Sprintf(format, args...)) }
	spec := d.Spec.Template.Spec
	if d.Spec.Selector == nil {
		bad("no selector")
	} else if sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector); err != nil || sel.Empty() ||
		!sel.Matches(labels.Set(d.Spec.Template.Labels)) {
		bad("selector %v does not select the pod template's labels %v", d.Spec.Selector.MatchLabels, d.Spec.Template.Labels)
	}
	psc := spec.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot {
		bad("pod securityContext.runAsNonRoot is not true")
	}
	for _, v := range spec.Volumes {
		if v.ConfigMap != nil && cms[v.ConfigMap.Name] == nil {
			bad("volume %s: no ConfigMap %s here", v.Name, v.ConfigMap.Name)
		}
	}
	if len(spec.Containers) == 0 {
		bad("no containers")
	}
	for _, c := range spec.Containers {
		if c.Image == "" {
			bad("container %s: no image", c.Name)
		}
		for _, p := range c.Ports {
			if p.Name != "" {
				for _, msg := range validation.IsValidPortName(p.Name) {
					bad("container %s: port name %q: %s", c.Name, p.Name, msg)
				}
			}
		}
		sc := c.SecurityContext
		if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
			bad("container %s: securityContext.readOnlyRootFilesystem is not true", c.Name)
		}
		if sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			bad("container %s: securityContext.allowPrivilegeEscalation is not false", c.Name)
		}
		worker := len(c.Args) > 0 && c.Args[0] == "worker"
		for _, ef := range c.EnvFrom {
			switch {
			case ef.ConfigMapRef != nil:
				cm := cms[ef.ConfigMapRef.Name]
				if cm == nil {
					if ef.ConfigMapRef.Optional == nil || !*ef.ConfigMapRef.Optional {
						bad("container %s: envFrom reads ConfigMap %s, which is not here", c.Name, ef.ConfigMapRef.Name)
					}
					continue
				}
				for _, k := range slices.Sorted(maps.Keys(cm.Data)) {
					if secretName(k) {
						bad("container %s: envFrom ConfigMap %s holds %s, a secret: put it in a Secret (secretKeyRef)", c.Name, cm.Name, k)
					}
					if worker && strings.HasPrefix(k, "AGENTQ_DASHBOARD_BASIC_AUTH_") {
						bad("container %s: envFrom ConfigMap %s holds %s: the worker would refuse dashboard.basic_auth_* without both; set it in the dashboard's Deployment", c.Name, cm.Name, k)
					}
				}
			case ef.SecretRef != nil:
				if secrets[ef.SecretRef.Name] == nil && (ef.SecretRef.Optional == nil || !*ef.SecretRef.Optional) {
					bad("container %s: envFrom reads Secret %s, which is not here", c.Name, ef.SecretRef.Name)
				}
			}
		}
		for _, e := range c.Env {
			if slices.Contains(sharedEnv, e.Name) {
				bad("container %s: env %s is set in the Deployment: set it in the ConfigMap every Deployment reads with envFrom (one place)", c.Name, e.Name)
			}
			if e.Value != "" && secretName(e.Name) {
				bad("container %s: env %s is a secret written into the Deployment: read it from a Secret (secretKeyRef)", c.Name, e.Name)
			}
			if e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil {
				continue
			}
			ref := e.ValueFrom.SecretKeyRef
			s := secrets[ref.Name]
			if s == nil {
				bad("container %s: env %s reads Secret %s, which is not here", c.Name, e.Name, ref.Name)
				continue
			}
			_, inData := s.Data[ref.Key]
			_, inString := s.StringData[ref.Key]
			if !inData && !inString {
				bad("container %s: env %s reads key %s of Secret %s, which the example Secret lacks", c.Name, e.Name, ref.Key, ref.Name)
			}
		}
		probes := map[string]*corev1.Probe{"readinessProbe": c.ReadinessProbe, "startupProbe": c.StartupProbe}
		for _, name := range []string{"readinessProbe", "startupProbe"} {
			p := probes[name]
			if p == nil {
				if name != "startupProbe" {
					bad("container %s: no %s", c.Name, name)
				}
				continue
			}
			for _, msg := range checkProbe(p) {
				bad("container %s: %s: %s", c.Name, name, msg)
			}
		}
		if c.LivenessProbe == nil {
			bad("container %s: no livenessProbe", c.Name)
		} else {
			for _, msg := range checkLiveness(c, worker, ws) {
				bad("container %s: livenessProbe: %s", c.Name, msg)
			}
		}
		if worker {
			grace := time.Duration(30) * time.Second // Kubernetes' default
			if spec.TerminationGracePeriodSeconds != nil {
				grace = time.Duration(*spec.TerminationGracePeriodSeconds) * time.Second
			}
			if grace < ws.shutdown+shutdownMargin {
				bad("terminationGracePeriodSeconds %v is less than worker.shutdown_timeout %v plus %v", grace, ws.shutdown, shutdownMargin)
			}
			if ws.metricsPort != 0 && !slices.ContainsFunc(c.Ports, func(p corev1.ContainerPort) bool { return p.ContainerPort == ws.metricsPort }) {
				bad("container %s: no port %d, where agentq.yaml's worker.metrics_addr serves metrics", c.Name, ws.metricsPort)
			}
		}
	}
	return out
}

// sharedEnv are the settings every Deployment must read from one ConfigMap
// (envFrom), not set in itself: the README tells users to set them once.
var sharedEnv = []string{"AGENTQ_REDIS_URL"}

// secretName reports an environment variable that holds a secret: agentq's
// *_PASSWORD settings, API keys, tokens.
func secretName(name string) bool {
	for _, s := range []string{"PASSWORD", "API_KEY", "TOKEN", "SECRET"} {
		if strings.Contains(name, s) {
			return true
		}
	}
	return false
}

// envSource returns the ConfigMap from which every container of d reads
// name with envFrom, "" when one does not (or they differ).
func envSource(d *appsv1.Deployment, name string, cms map[string]*corev1.ConfigMap) string {
	from := ""
	for i, c := range d.Spec.Template.Spec.Containers {
		got := ""
		for _, ef := range c.EnvFrom {
			if ef.ConfigMapRef == nil || ef.Prefix != "" {
				continue
			}
			if cm := cms[ef.ConfigMapRef.Name]; cm != nil {
				if _, ok := cm.Data[name]; ok {
					got = cm.Name // a later envFrom wins
				}
			}
		}
		if got == "" || (i > 0 && got != from) {
			return ""
		}
		from = got
	}
	return from
}

// checkLiveness: a liveness probe that does not need Redis (`agentq
// health` does: a Redis outage would restart every pod, and the restart
// back-off would delay their return), on a port the container names; a
// worker's GETs /metrics on worker.metrics_addr's port with room for the
// queue gauges' 2s Redis read bound.
func checkLiveness(c corev1.Container, worker bool, ws workerSettings) []string {
	p := c.LivenessProbe
	port := func(ip intstr.IntOrString) (corev1.ContainerPort, bool) {
		for _, cp := range c.Ports {
			if (ip.Type == intstr.String && cp.Name == ip.StrVal) || (ip.Type == intstr.Int && cp.ContainerPort == ip.IntVal) {
				return cp, true
			}
		}
		return corev1.ContainerPort{}, false
	}
	var target intstr.IntOrString
	switch {
	case p.Exec != nil:
		return []string{fmt.Sprintf("exec %q: liveness must not depend on Redis (agentq health checks it): use httpGet or tcpSocket", p.Exec.Command)}
	case p.HTTPGet != nil:
		target = p.HTTPGet.Port
	case p.TCPSocket != nil:
		target = p.TCPSocket.Port
	default:
		return []string{"neither httpGet nor tcpSocket"}
	}
	cp, ok := port(target)
	if !ok {
		return []string{fmt.Sprintf("port %s is none of the container's ports", target.String())}
	}
	if !worker {
		return nil
	}
	var out []string
	if p.HTTPGet == nil || p.HTTPGet.Path != "/metrics" {
		out = append(out, "a worker's liveness GETs /metrics")
	}
	if ws.metricsPort != 0 && cp.ContainerPort != ws.metricsPort {
		out = append(out, fmt.Sprintf("port %s is %d, not worker.metrics_addr's %d", target.String(), cp.ContainerPort, ws.metricsPort))
	}
	if p.TimeoutSeconds < 3 {
		out = append(out, fmt.Sprintf("timeoutSeconds %d leaves no room for the queue gauges' 2s read of Redis", p.TimeoutSeconds))
	}
	return out
}

// checkProbe: an exec probe running `agentq health` whose --timeout ends
// before the probe's timeoutSeconds, so that the check reports why it
// failed instead of being killed.
func checkProbe(p *corev1.Probe) []string {
	if p.Exec == nil {
		return []string{"not an exec probe running agentq health"}
	}
	cmd := p.Exec.Command
	if len(cmd) < 2 || cmd[0] != agentqBinary || cmd[1] != "health" {
		return []string{fmt.Sprintf("command %q does not run %s health", cmd, agentqBinary)}
	}
	limit := 3 * time.Second // agentq health's default --timeout
	for i, a := range cmd {
		v, ok := strings.CutPrefix(a, "--timeout=")
		if a == "--timeout" && i+1 < len(cmd) {
			v, ok = cmd[i+1], true
		}
		if ok {
			d, err := time.ParseDuration(v)
			if err != nil {
				return []string{fmt.Sprintf("--timeout %q: %v", v, err)}
			}
			limit = d
		}
	}
	probeTimeout := time.Second // Kubernetes' default
	if p.TimeoutSeconds > 0 {
		probeTimeout = time.Duration(p.TimeoutSeconds) * time.Second
	}
	if limit >= probeTimeout {
		return []string{fmt.Sprintf("agentq health --timeout %v does not end before timeoutSeconds %v", limit, probeTimeout)}
	}
	return nil
}

// checkScaledObject: it scales a Deployment here, by prometheus triggers
// that say where, what and how much (checkQuery), and keeps a pod to
// report the gauges.
func checkScaledObject(so *ScaledObject, deployments map[string]*appsv1.Deployment, ns string, served []string) []string {
	var out []string
	bad := func(format string, args ...any) { out = append(out, fmt.Sprintf(format, args...)) }
	ref := so.Spec.ScaleTargetRef
	if (ref.Kind != "" && ref.Kind != "Deployment") || deployments[ref.Name] == nil {
		bad("scaleTargetRef %s is no Deployment here", ref.Name)
	}
	if so.Spec.MinReplicaCount == nil || *so.Spec.MinReplicaCount < 1 {
		bad("minReplicaCount must be at least 1: the queue gauges are served by the workers")
	} else if so.Spec.MaxReplicaCount != nil && *so.Spec.MinReplicaCount > *so.Spec.MaxReplicaCount {
		bad("minReplicaCount %d > maxReplicaCount %d", *so.Spec.MinReplicaCount, *so.Spec.MaxReplicaCount)
	}
	if len(so.Spec.Triggers) == 0 {
		bad("no triggers")
	}
	for i, t := range so.Spec.Triggers {
		if t.Type != "prometheus" {
			bad("triggers[%d]: type %q, want prometheus", i, t.Type)
			continue
		}
		switch t.MetricType {
		case "", autoscalingv2.AverageValueMetricType, autoscalingv2.ValueMetricType:
		default:
			bad("triggers[%d]: metricType %q: want AverageValue or Value", i, t.MetricType)
		}
		for _, k := range []string{"serverAddress", "query", "threshold"} {
			if t.Metadata[k] == "" {
				bad("triggers[%d]: metadata.%s is empty", i, k)
			}
		}
		if v := t.Metadata["threshold"]; v != "" {
			if f, err := strconv.ParseFloat(v, 64); err != nil || f <= 0 {
				bad("triggers[%d]: metadata.threshold %q is not a positive number", i, v)
			}
		}
		if q := t.Metadata["query"]; q != "" {
			for _, msg := range checkQuery(q, ns, served, t.Metadata["ignoreNullValues"] == "true") {
				bad("triggers[%d]: query: %s", i, msg)
			}
		}
	}
	return out
}

// checkNamespaces: the kustomization puts its resources in a namespace that
// a Namespace manifest here creates, and every manifest applied on its own
// (kubectl apply -f: the Secret, autoscaling/, monitoring/) names that
// namespace. It returns the namespace ("" when there is none).
func checkNamespaces(objs []Object, fail func(Object, string, ...any)) string {
	var k *Kustomization
	var ko Object
	for _, o := range objs {
		if v, ok := o.Value.(*Kustomization); ok {
			k, ko = v, o
		}
	}
	if k == nil {
		return ""
	}
	ns := k.Namespace
	if ns == "" {
		fail(ko, "no namespace: the autoscaling queries and the manifests applied on their own need one")
		return ""
	}
	if !slices.ContainsFunc(objs, func(o Object) bool { return o.Kind == "Namespace" && o.Name == ns }) {
		fail(ko, "namespace %q: no Namespace manifest creates it", ns)
	}
	for _, o := range objs {
		if o.Kind == "Kustomization" || o.Kind == "Namespace" {
			continue
		}
		switch {
		case slices.Contains(k.Resources, o.File):
			if o.Namespace != "" && o.Namespace != ns {
				fail(o, "metadata.namespace %q, but the kustomization puts it in %q", o.Namespace, ns)
			}
		case o.Namespace != ns:
			fail(o, "metadata.namespace %q: applied on its own (not in the kustomization), it must name %q", o.Namespace, ns)
		}
	}
	return ns
}

// checkQueueSelector: an HPA's external metric selects exactly the queues
// the workers serve.
func checkQueueSelector(sel *metav1.LabelSelector, served []string) string {
	var got []string
	if sel != nil {
		if q, ok := sel.MatchLabels["queue"]; ok {
			got = append(got, q)
		}
		for _, e := range sel.MatchExpressions {
			if e.Key == "queue" && e.Operator == metav1.LabelSelectorOpIn {
				got = append(got, e.Values...)
			}
		}
	}
	slices.Sort(got)
	if !slices.Equal(got, served) {
		return fmt.Sprintf("selects queues %q, but the workers serve %q (agentq.yaml)", got, served)
	}
	return ""
}

// checkQuery parses a PromQL query of agentq's queue gauges and checks
// that it selects the workers' namespace and exactly the queues they
// serve, leaves paused queues out (`unless on (queue) ... agentq_queue_paused
// ... == 1`), and gives a value when the gauges have no series yet (`or
// vector(0)`, or ignoreNullValues).
func checkQuery(q, ns string, served []string, ignoreNull bool) []string {
	expr, err := parser.NewParser(parser.Options{}).ParseExpr(q)
	if err != nil {
		return []string{fmt.Sprintf("%q: %v", q, err)}
	}
	var out []string
	bad := func(format string, args ...any) { out = append(out, fmt.Sprintf(format, args...)) }
	gauges, paused, unlessPaused := 0, 0, false
	parser.Inspect(expr, func(n parser.Node, _ []parser.Node) error {
		switch v := n.(type) {
		case *parser.VectorSelector:
			if !strings.HasPrefix(v.Name, "agentq_") {
				return nil
			}
			var nsm, qm *promlabels.Matcher
			for _, m := range v.LabelMatchers {
				switch m.Name {
				case "namespace":
					nsm = m
				case "queue":
					qm = m
				}
			}
			if ns != "" && (nsm == nil || nsm.Type != promlabels.MatchEqual || nsm.Value != ns) {
				bad("%s: selects %v, want namespace=%q (the kustomization's)", v.Name, nsm, ns)
			}
			if v.Name == "agentq_queue_paused" {
				paused++
				return nil
			}
			gauges++
			if qm == nil {
				bad("%s: no queue matcher: select the queues the workers serve, %q", v.Name, served)
				return nil
			}
			var got []string
			switch qm.Type {
			case promlabels.MatchEqual:
				got = []string{qm.Value}
			case promlabels.MatchRegexp:
				got = strings.Split(qm.Value, "|")
			}
			slices.Sort(got)
			if !slices.Equal(got, served) {
				bad("%s: %s selects queues %q, but the workers serve %q (agentq.yaml)", v.Name, qm, got, served)
			}
		case *parser.BinaryExpr:
			if v.Op == parser.LUNLESS && v.VectorMatching != nil && v.VectorMatching.On &&
				slices.Equal(v.VectorMatching.MatchingLabels, []string{"queue"}) && strings.Contains(v.RHS.String(), "agentq_queue_paused") {
				unlessPaused = true
			}
		}
		return nil
	})
	if gauges == 0 {
		bad("%q reads none of agentq's queue gauges", q)
	}
	if !unlessPaused || paused == 0 {
		bad("paused queues are not left out (unless on (queue) (max by (queue) (agentq_queue_paused{...}) == 1)): their tasks grow and no worker takes them")
	}
	if b, ok := expr.(*parser.BinaryExpr); !ignoreNull && !(ok && b.Op == parser.LOR && strings.HasPrefix(b.RHS.String(), "vector(0")) {
		bad("no value before the gauges have series (a fresh install): end with `or vector(0)` or set ignoreNullValues \"true\"")
	}
	return out
}

// checkPodMonitor: it scrapes the pods of a Deployment here, in the
// kustomization's namespace, on ports they name; a worker's on
// worker.metrics_addr's port and path /metrics.
func checkPodMonitor(pm *PodMonitor, deployments map[string]*appsv1.Deployment, ns string, ws workerSettings) []string {
	var out []string
	bad := func(format string, args ...any) { out = append(out, fmt.Sprintf(format, args...)) }
	d := selected(deployments, pm.Spec.Selector.MatchLabels)
	if d == nil || len(pm.Spec.Selector.MatchExpressions) > 0 {
		return []string{fmt.Sprintf("selector %v selects no Deployment's pods", pm.Spec.Selector.MatchLabels)}
	}
	if sel := pm.Spec.NamespaceSelector; sel != nil && !sel.Any && len(sel.MatchNames) > 0 && !slices.Contains(sel.MatchNames, ns) {
		bad("namespaceSelector %q leaves out %q, where the pods run", sel.MatchNames, ns)
	}
	if len(pm.Spec.PodMetricsEndpoints) == 0 {
		bad("no podMetricsEndpoints")
	}
	worker := slices.ContainsFunc(d.Spec.Template.Spec.Containers, func(c corev1.Container) bool { return len(c.Args) > 0 && c.Args[0] == "worker" })
	for i, e := range pm.Spec.PodMetricsEndpoints {
		var cp *corev1.ContainerPort
		for _, c := range d.Spec.Template.Spec.Containers {
			for j := range c.Ports {
				if (e.Port != "" && c.Ports[j].Name == e.Port) || (e.Port == "" && e.PortNumber != 0 && c.Ports[j].ContainerPort == e.PortNumber) {
					cp = &c.Ports[j]
				}
			}
		}
		if cp == nil {
			bad("podMetricsEndpoints[%d]: port %q (%d) is no port of Deployment %s's containers", i, e.Port, e.PortNumber, d.Name)
			continue
		}
		if worker && ws.metricsPort != 0 && cp.ContainerPort != ws.metricsPort {
			bad("podMetricsEndpoints[%d]: port %d is not worker.metrics_addr's %d", i, cp.ContainerPort, ws.metricsPort)
		}
		if path := cmp.Or(e.Path, "/metrics"); path != "/metrics" {
			bad("podMetricsEndpoints[%d]: path %q: agentq serves /metrics", i, path)
		}
		var iv, st time.Duration
		var err error
		if e.Interval != "" {
			if iv, err = time.ParseDuration(e.Interval); err != nil {
				bad("podMetricsEndpoints[%d]: interval %q: %v", i, e.Interval, err)
			}
		}
		if e.ScrapeTimeout != "" {
			if st, err = time.ParseDuration(e.ScrapeTimeout); err != nil {
				bad("podMetricsEndpoints[%d]: scrapeTimeout %q: %v", i, e.ScrapeTimeout, err)
			}
		}
		if iv > 0 && st > iv {
			bad("podMetricsEndpoints[%d]: scrapeTimeout %v exceeds interval %v", i, st, iv)
		}
	}
	return out
}

// adapterRuleQuery finds the Prometheus Adapter rule's metricsQuery that an
// HPA manifest documents in its comments.
var adapterRuleQuery = regexp.MustCompile(`(?m)^#\s*metricsQuery:\s*'([^']*)'`)

// checkAdapterRule checks the Prometheus Adapter rule documented in an HPA
// manifest as checkQuery checks a KEDA query, with <<.LabelMatchers>> as
// the adapter fills it for the HPA (its namespace and queue selector).
func checkAdapterRule(file, ns string, served []string) []string {
	data, err := os.ReadFile(file)
	if err != nil {
		return []string{err.Error()}
	}
	m := adapterRuleQuery.FindSubmatch(data)
	if m == nil {
		return []string{"no Prometheus Adapter rule (# metricsQuery: '...') in its comments"}
	}
	matchers := fmt.Sprintf(`namespace=%q,queue=~%q`, ns, strings.Join(served, "|"))
	q := strings.ReplaceAll(string(m[1]), "<<.LabelMatchers>>", matchers)
	var out []string
	for _, msg := range checkQuery(q, ns, served, false) {
		out = append(out, "adapter rule: "+msg)
	}
	return out
}

package agentq_test

import (
	"io"
	"testing"
	"time"

	"github.com/agentq/agentq"
	"github.com/agentq/agentq/config"
)

// TestDeploySampleConfig loads deploy/agentq.yaml, the config the compose
// stack mounts and the Kubernetes ConfigMap holds, with the real loader,
// and builds a runtime from it (which checks every workflow's kinds and
// templates): the sample must stay valid as agentq changes.
func TestDeploySampleConfig(t *testing.T) {
	t.Parallel()
	cfg, err := config.Load(config.Options{File: "deploy/agentq.yaml", Environ: []string{}})
	if err != nil {
		t.Fatal(err)
	}
	rt, err := agentq.New(cfg, agentq.Options{LogTo: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	if cfg.Worker.MetricsAddr == "" {
		t.Error("the sample serves no worker metrics")
	}
	// The compose stop_grace_period and the pods' terminationGracePeriodSeconds
	// (45s) leave room above the shutdown timeout for the parts that stop
	// after it (alerts get 5s, the metrics server 5s).
	if got := cfg.Worker.ShutdownTimeout; got+10*time.Second > 45*time.Second {
		t.Errorf("worker.shutdown_timeout %v leaves less than 10s of the 45s grace period", got)
	}
	wh, ok := cfg.Workflows["webhooks"]
	if !ok || wh.Budget.SLO == 0 || wh.Queue == "" {
		t.Errorf("the sample's webhooks workflow has no budget or queue: %+v", wh)
	}
	if d, ok := cfg.Workflows["digest"]; !ok || !d.IsRun() {
		t.Errorf("the sample's digest workflow has no steps: %+v", d)
	}
}

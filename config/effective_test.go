package config

import (
	"bytes"
	"strings"
	"testing"

	"github.com/agentq/agentq/queue"
)

func TestEffective(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		b       testBundle
		url     string
		loops   int
		yamlHas []string
	}{
		{"defaults", testBundle{}, DefaultRedisURL, queue.LoopsDefault(10),
			[]string{"url: redis://127.0.0.1:6379/0", "loops: "}},
		{"set values stay", testBundle{env: []string{"AGENTQ_REDIS_URL=redis://cache:6380/2", "AGENTQ_WORKER_LOOPS=3"}}, "redis://cache:6380/2", 3,
			[]string{"url: redis://cache:6380/2", "loops: 3"}},
		{"cluster keeps an empty url", testBundle{env: []string{"AGENTQ_REDIS_CLUSTER_ADDRS=10.0.0.1:7000"}}, "", queue.LoopsDefault(10), nil},
		{"one slot, one loop", testBundle{env: []string{"AGENTQ_WORKER_CONCURRENCY=1"}}, DefaultRedisURL, 1, []string{"loops: 1"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := mustLoad(t, tc.b)
			eff := cfg.Effective()
			if eff.Redis.URL != tc.url || eff.Worker.Loops != tc.loops {
				t.Fatalf("effective redis.url %q loops %d, want %q %d", eff.Redis.URL, eff.Worker.Loops, tc.url, tc.loops)
			}
			var out bytes.Buffer
			if err := eff.WriteYAML(&out); err != nil {
				t.Fatal(err)
			}
			for _, want := range tc.yamlHas {
				if !strings.Contains(out.String(), want) {
					t.Fatalf("YAML has no %q:\n%s", want, out.String())
				}
			}
			if strings.Contains(out.String(), "loops: 0") || strings.Contains(out.String(), "\n  url: \"\"") && tc.url != "" {
				t.Fatalf("YAML shows an unresolved value:\n%s", out.String())
			}
		})
	}
}

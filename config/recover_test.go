package config

import (
	"testing"
	"time"

	"github.com/agentq/agentq/queue"
)

func TestWorkerRecover(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		w    Worker
		want queue.RecoverConfig
	}{
		{name: "defaults", w: Default().Worker, want: queue.RecoverConfig{Interval: queue.RecoverIntervalDefault, Grace: queue.RecoverGraceDefault}},
		{name: "0s is off", w: Worker{RecoverInterval: 0, RecoverGrace: 20 * time.Second}, want: queue.RecoverConfig{Interval: -1, Grace: 20 * time.Second}},
		{name: "set", w: Worker{RecoverInterval: time.Second, RecoverGrace: 7 * time.Second}, want: queue.RecoverConfig{Interval: time.Second, Grace: 7 * time.Second}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := tc.w.Recover(); got != tc.want {
				t.Fatalf("Recover() = %+v, want %+v", got, tc.want)
			}
		})
	}
}

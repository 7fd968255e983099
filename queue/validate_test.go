package queue

import (
	"strings"
	"testing"
	"time"
)

func TestClientConfigValidate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		cfg     ClientConfig
		wantErr string
	}{
		{name: "defaults", cfg: ClientConfig{}},
		{name: "payload at the limit", cfg: ClientConfig{MaxPayloadBytes: MaxPayloadBytesLimit}},
		{name: "payload over the limit", cfg: ClientConfig{MaxPayloadBytes: MaxPayloadBytesLimit + 1}, wantErr: "max_payload_bytes must be at most 67108864"},
		{name: "negative payload", cfg: ClientConfig{MaxPayloadBytes: -1}, wantErr: "max_payload_bytes must be at least 1"},
		{name: "dedupe window too short", cfg: ClientConfig{DedupeWindow: time.Millisecond}, wantErr: "dedupe_window must be at least 1s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := tc.cfg.Validate()
			if (err == nil) != (tc.wantErr == "") || (err != nil && !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("Validate() = %v, want %q", err, tc.wantErr)
			}
		})
	}
}

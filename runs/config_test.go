package runs

import (
	"strings"
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{name: "defaults", cfg: Config{}},
		{name: "retention at the minimum", cfg: Config{Retention: RetentionMin}},
		{name: "retention under the minimum", cfg: Config{Retention: RetentionMin - time.Second}, wantErr: "got 59s"},
		{name: "negative retention", cfg: Config{Retention: -time.Hour}, wantErr: "retention must be at least 1m"},
		{name: "output at the limit", cfg: Config{MaxOutputBytes: MaxOutputBytesLimit}},
		{name: "output over the limit", cfg: Config{MaxOutputBytes: MaxOutputBytesLimit + 1}, wantErr: "max_output_bytes must be at most 67108864"},
		{name: "negative output", cfg: Config{MaxOutputBytes: -1}, wantErr: "max_output_bytes must be at least 1"},
		{name: "negative steps", cfg: Config{MaxSteps: -1}, wantErr: "max_steps must be at least 1"},
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

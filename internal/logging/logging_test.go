package logging

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func TestNewJSONAndLevels(t *testing.T) {
	t.Parallel()
	tests := []struct {
		level, format string
		wantErr       string
		logsInfo      bool
	}{
		{level: "info", format: "json", logsInfo: true},
		{level: "warn", format: "auto", logsInfo: false},
		{level: "loud", format: "json", wantErr: `log.level: "loud"`},
		{level: "info", format: "xml", wantErr: `log.format: "xml"`},
	}
	for _, tt := range tests {
		var buf bytes.Buffer
		l, err := New(&buf, tt.level, tt.format)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("New(%q,%q) err = %v, want %q", tt.level, tt.format, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		l.Info().Str("task_id", "t1").Msg("hello")
		if got := buf.Len() > 0; got != tt.logsInfo {
			t.Fatalf("level %q: logged info = %v, want %v", tt.level, got, tt.logsInfo)
		}
		if tt.logsInfo {
			var m map[string]any
			if err := json.Unmarshal(buf.Bytes(), &m); err != nil {
				t.Fatalf("not JSON on a non-terminal: %q", buf.String())
			}
			if m["task_id"] != "t1" {
				t.Fatalf("field lost: %v", m)
			}
		}
	}
}

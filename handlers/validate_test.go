package handlers

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestHTTPCallArgsValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		args    HTTPCallArgs
		wantErr string // "" for valid
	}{
		{name: "minimal", args: HTTPCallArgs{URL: "https://example.com"}},
		{name: "full", args: HTTPCallArgs{Method: "POST", URL: "http://example.com:8080/p?q=1",
			Headers: map[string]string{"X-Trace": "a", "Content-Type": "text/plain"},
			Body:    json.RawMessage(`{"a":1}`), Timeout: "1m30s", ExpectStatus: []int{200, 202, 404}}},
		{name: "every method", args: HTTPCallArgs{Method: "OPTIONS", URL: "https://example.com"}},
		{name: "missing url", args: HTTPCallArgs{},
			wantErr: `url: is required`},
		{name: "ftp url", args: HTTPCallArgs{URL: "ftp://x"},
			wantErr: `url: must be an absolute http or https URL, got "ftp://x"`},
		{name: "relative url", args: HTTPCallArgs{URL: "/just/a/path"},
			wantErr: `url: must be an absolute http or https URL, got "/just/a/path"`},
		{name: "url without host", args: HTTPCallArgs{URL: "https:///nohost"},
			wantErr: `url: must be an absolute http or https URL, got "https:///nohost"`},
		{name: "bad url quoted with secrets masked", args: HTTPCallArgs{URL: "ftp://me:pw@x/?token=t0k"},
			wantErr: `url: must be an absolute http or https URL, got "ftp://me:****@x/?token=****"`},
		{name: "unparsable url quoted with secrets masked", args: HTTPCallArgs{URL: "http://a b/?api_key=k3y"},
			wantErr: `url: "http://a b/?api_key=****" does not parse: invalid character " " in host name`},
		{name: "bad escape names the escape", args: HTTPCallArgs{URL: "http://a/%zz?token=SECRET"},
			wantErr: `url: "http://a/%zz?token=****" does not parse: invalid URL escape "%zz"`},
		{name: "unclosed IPv6 host", args: HTTPCallArgs{URL: "http://[::1"},
			wantErr: `url: "http://[::1" does not parse: missing ']' in host`},
		{name: "control character", args: HTTPCallArgs{URL: "http://x/\x01"},
			wantErr: `url: "http://x/\x01" does not parse: net/url: invalid control character in URL`},
		{name: "not http", args: HTTPCallArgs{URL: "ftp://x/"},
			wantErr: `url: must be an absolute http or https URL, got "ftp://x/"`},
		{name: "unknown method", args: HTTPCallArgs{Method: "FOO", URL: "https://example.com"},
			wantErr: `method: "FOO" is not supported (use one of GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS)`},
		{name: "lowercase method", args: HTTPCallArgs{Method: "get", URL: "https://example.com"},
			wantErr: `method: "get" is not supported`},
		{name: "bad timeout", args: HTTPCallArgs{URL: "https://example.com", Timeout: "abc"},
			wantErr: `timeout: "abc" is not a duration`},
		{name: "zero timeout", args: HTTPCallArgs{URL: "https://example.com", Timeout: "0s"},
			wantErr: `timeout: must be positive, got "0s"`},
		{name: "negative timeout", args: HTTPCallArgs{URL: "https://example.com", Timeout: "-5s"},
			wantErr: `timeout: must be positive, got "-5s"`},
		{name: "status too low", args: HTTPCallArgs{URL: "https://example.com", ExpectStatus: []int{200, 99}},
			wantErr: `expect_status: 99 is not an HTTP status`},
		{name: "status too high", args: HTTPCallArgs{URL: "https://example.com", ExpectStatus: []int{600}},
			wantErr: `expect_status: 600 is not an HTTP status`},
		{name: "bad header name", args: HTTPCallArgs{URL: "https://example.com", Headers: map[string]string{"Bad Name": "x"}},
			wantErr: `headers: "Bad Name" is not a valid header name`},
		{name: "header value with line break", args: HTTPCallArgs{URL: "https://example.com",
			Headers: map[string]string{"X-Evil": "a\r\nInjected: SECRET"}},
			wantErr: `headers: value of "X-Evil" contains the control character U+000D at byte offset 1`},
		{name: "header value with a control character", args: HTTPCallArgs{URL: "https://example.com",
			Headers: map[string]string{"X-Evil": "SECRET\x01"}},
			wantErr: `headers: value of "X-Evil" contains the control character U+0001 at byte offset 6`},
		{name: "header value with DEL", args: HTTPCallArgs{URL: "https://example.com",
			Headers: map[string]string{"X-Evil": "\x7fSECRET"}},
			wantErr: `headers: value of "X-Evil" contains the control character U+007F at byte offset 0`},
		{name: "header value with a tab", args: HTTPCallArgs{URL: "https://example.com",
			Headers: map[string]string{"X-Ok": "a\tb"}}},
		{name: "host header", args: HTTPCallArgs{URL: "https://example.com",
			Headers: map[string]string{"Host": "api.example.com:8443"}}},
		{name: "host header IPv6", args: HTTPCallArgs{URL: "https://example.com",
			Headers: map[string]string{"host": "[::1]:8080"}}},
		{name: "host header not a host", args: HTTPCallArgs{URL: "https://example.com",
			Headers: map[string]string{"Host": "a b/%zz"}},
			wantErr: `headers: Host "a b/%zz" is not a host or host:port`},
		{name: "host header with a path", args: HTTPCallArgs{URL: "https://example.com",
			Headers: map[string]string{"Host": "example.com/x"}},
			wantErr: `headers: Host "example.com/x" is not a host or host:port`},
		{name: "header given twice", args: HTTPCallArgs{URL: "https://example.com",
			Headers: map[string]string{"x-a": "1", "X-A": "2"}},
			wantErr: `headers: "X-A" and "x-a" name the same header`},
		{name: "body not JSON", args: HTTPCallArgs{URL: "https://example.com", Body: json.RawMessage(`{nope`)},
			wantErr: `body: is not valid JSON`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := tt.args.Validate()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("Validate = %v, want nil", err)
			case tt.wantErr != "" && err == nil:
				t.Fatalf("Validate = nil, want %q", tt.wantErr)
			case tt.wantErr != "" && !strings.HasPrefix(err.Error(), tt.wantErr):
				t.Fatalf("Validate = %q, want prefix %q", err, tt.wantErr)
			}
			if err != nil && strings.Contains(err.Error(), "SECRET") {
				t.Errorf("Validate leaks a header value: %q", err)
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{name: "zero", cfg: Config{}},
		{name: "set", cfg: Config{Timeout: time.Second, MaxTimeout: time.Minute, MaxResponseBytes: 10}},
		{name: "negative timeout", cfg: Config{Timeout: -time.Second},
			wantErr: "timeout: must not be negative, got -1s"},
		{name: "negative max timeout", cfg: Config{MaxTimeout: -time.Second},
			wantErr: "max_timeout: must not be negative, got -1s"},
		{name: "negative max response bytes", cfg: Config{MaxResponseBytes: -1},
			wantErr: "max_response_bytes: must not be negative, got -1"},
		{name: "max timeout below timeout", cfg: Config{Timeout: time.Hour},
			wantErr: "max_timeout: 10m0s is below timeout 1h0m0s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := tt.cfg.Validate()
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != tt.wantErr {
				t.Fatalf("Validate = %q, want %q", got, tt.wantErr)
			}
		})
	}
}

func TestNewHTTPCallDefaults(t *testing.T) {
	t.Parallel()
	h := NewHTTPCall(Config{Timeout: -1, MaxResponseBytes: -5})
	if h.cfg.Timeout != TimeoutDefault || h.cfg.MaxTimeout != MaxTimeoutDefault ||
		h.cfg.MaxResponseBytes != MaxResponseBytesDefault || h.cfg.Client == nil || h.cfg.Now == nil {
		t.Fatalf("defaults not filled: %+v", h.cfg)
	}
	if h := NewHTTPCall(Config{Timeout: time.Hour, MaxTimeout: time.Minute}); h.cfg.Timeout != time.Minute {
		t.Errorf("Timeout = %v, want it lowered to MaxTimeout 1m", h.cfg.Timeout)
	}
}

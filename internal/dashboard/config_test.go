package dashboard

import (
	"strings"
	"testing"
)

func TestConfigValidate(t *testing.T) {
	t.Parallel()

	const (
		password = "s3cret-pass"
		token    = "s3cret-token"
	)
	basic := func(addr string) Config {
		return Config{Addr: addr, BasicAuthUser: "admin", BasicAuthPassword: password}
	}
	bearer := func(addr string) Config { return Config{Addr: addr, BearerToken: token} }

	tests := []struct {
		name    string
		cfg     Config
		wantErr string // substring; "" means valid
	}{
		{name: "default addr", cfg: Config{}},
		{name: "loopback v4", cfg: Config{Addr: "127.0.0.1:8080"}},
		{name: "loopback v4 other", cfg: Config{Addr: "127.1.2.3:80"}},
		{name: "loopback v6", cfg: Config{Addr: "[::1]:8080"}},
		{name: "localhost", cfg: Config{Addr: "localhost:8080"}},
		{name: "localhost upper", cfg: Config{Addr: "LOCALHOST:8080"}},
		{name: "port zero", cfg: Config{Addr: "127.0.0.1:0"}},
		{name: "read only loopback", cfg: Config{Addr: "127.0.0.1:8080", ReadOnly: true}},

		{name: "all v4 refused", cfg: Config{Addr: "0.0.0.0:8080"},
			wantErr: "dashboard.addr: 0.0.0.0:8080 is not a loopback address; configure dashboard.basic_auth_user/basic_auth_password or dashboard.bearer_token first"},
		{name: "all v6 refused", cfg: Config{Addr: "[::]:8080"}, wantErr: "is not a loopback address"},
		{name: "empty host refused", cfg: Config{Addr: ":8080"}, wantErr: "dashboard.addr: :8080 is not a loopback address"},
		{name: "public ip refused", cfg: Config{Addr: "192.0.2.1:80"}, wantErr: "dashboard.addr: 192.0.2.1:80 is not a loopback"},
		{name: "hostname refused", cfg: Config{Addr: "example.com:80"}, wantErr: "is not a loopback address"},
		{name: "mapped non-loopback refused", cfg: Config{Addr: "[::ffff:192.0.2.1]:80"}, wantErr: "is not a loopback address"},

		{name: "all v4 with basic auth", cfg: basic("0.0.0.0:8080")},
		{name: "empty host with basic auth", cfg: basic(":8080")},
		{name: "public ip with basic auth", cfg: basic("192.0.2.1:80")},
		{name: "all v4 with token", cfg: bearer("0.0.0.0:8080")},
		{name: "empty host with token", cfg: bearer(":8080")},
		{name: "public ip with token", cfg: bearer("192.0.2.1:80")},

		{name: "user without password", cfg: Config{BasicAuthUser: "admin"},
			wantErr: "dashboard.basic_auth_password: required when dashboard.basic_auth_user is set"},
		{name: "password without user", cfg: Config{BasicAuthPassword: password},
			wantErr: "dashboard.basic_auth_user: required when dashboard.basic_auth_password is set"},
		{name: "half basic auth does not unlock non-loopback", cfg: Config{Addr: "0.0.0.0:8080", BasicAuthUser: "admin"},
			wantErr: "is not a loopback address"},
		{name: "user with colon", cfg: Config{BasicAuthUser: "a:b", BasicAuthPassword: password}, wantErr: "dashboard.basic_auth_user: must not contain ':'"},
		{name: "token with space", cfg: Config{BearerToken: "s3cret token"}, wantErr: "dashboard.bearer_token: must not contain whitespace"},

		{name: "no port", cfg: Config{Addr: "127.0.0.1"}, wantErr: `dashboard.addr: "127.0.0.1" is not host:port`},
		{name: "garbage", cfg: Config{Addr: "not an addr"}, wantErr: "dashboard.addr:"},
		{name: "port out of range", cfg: Config{Addr: "127.0.0.1:99999"}, wantErr: `dashboard.addr: "127.0.0.1:99999" has an invalid port`},
		{name: "named port", cfg: Config{Addr: "127.0.0.1:http"}, wantErr: "has an invalid port"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := tt.cfg.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want error containing %q", tt.wantErr)
			}
			msg := err.Error()
			if !strings.Contains(msg, tt.wantErr) {
				t.Errorf("Validate() = %q, want it to contain %q", msg, tt.wantErr)
			}
			for _, secret := range []string{password, token, "s3cret"} {
				if strings.Contains(msg, secret) {
					t.Errorf("Validate() error %q leaks a secret", msg)
				}
			}
		})
	}
}

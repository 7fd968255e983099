package queue

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentq/agentq/internal/redistest"
)

func TestRedisConfigOptions(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		cfg     RedisConfig
		check   func(t *testing.T, addrs []string, db int, user, pass, master string, cluster, tls bool, serverName string)
		wantErr string
	}{
		{name: "default", cfg: RedisConfig{}, check: func(t *testing.T, addrs []string, db int, _, _, _ string, cl, tl bool, _ string) {
			if addrs[0] != "127.0.0.1:6379" || db != 0 || cl || tl {
				t.Fatalf("addrs %v db %d", addrs, db)
			}
		}},
		{name: "user pass db", cfg: RedisConfig{URL: "redis://bob:s3cret@h:7000/3"}, check: func(t *testing.T, addrs []string, db int, user, pass, _ string, _, tl bool, _ string) {
			if addrs[0] != "h:7000" || db != 3 || user != "bob" || pass != "s3cret" || tl {
				t.Fatalf("got %v %d %s %s", addrs, db, user, pass)
			}
		}},
		{name: "tls", cfg: RedisConfig{URL: "rediss://h:6380/0", ServerName: "redis.internal"}, check: func(t *testing.T, _ []string, _ int, _, _, _ string, _, tl bool, sn string) {
			if !tl || sn != "redis.internal" {
				t.Fatalf("tls %v sn %q", tl, sn)
			}
		}},
		{name: "sentinel", cfg: RedisConfig{URL: "redis-sentinel://:pw@s1:26379,s2:26379/2?master=mymaster"}, check: func(t *testing.T, addrs []string, db int, _, _, master string, _, _ bool, _ string) {
			if len(addrs) != 2 || master != "mymaster" || db != 2 {
				t.Fatalf("sentinel %v %s %d", addrs, master, db)
			}
		}},
		{name: "cluster", cfg: RedisConfig{ClusterAddrs: []string{"c1:7000", "c2:7001"}, Password: "pw"}, check: func(t *testing.T, addrs []string, _ int, _, pass, _ string, cl, _ bool, _ string) {
			if !cl || len(addrs) != 2 || pass != "pw" {
				t.Fatalf("cluster %v %v", addrs, cl)
			}
		}},
		{name: "bad scheme", cfg: RedisConfig{URL: "http://h"}, wantErr: `unsupported scheme "http"`},
		{name: "bad db", cfg: RedisConfig{URL: "redis://h:1/x"}, wantErr: `database "x"`},
		{name: "sentinel no master", cfg: RedisConfig{URL: "redis-sentinel://s1:1"}, wantErr: "?master=NAME"},
		{name: "missing ca", cfg: RedisConfig{URL: "rediss://h:1", CAFile: "/nonexistent/ca.pem"}, wantErr: "redis.tls.ca_file"},
	}
	for _, tt := range tests {
		o, err := tt.cfg.UniversalOptions()
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("%s: err = %v, want %q", tt.name, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		sn := ""
		if o.TLSConfig != nil {
			sn = o.TLSConfig.ServerName
		}
		tt.check(t, o.Addrs, o.DB, o.Username, o.Password, o.MasterName, o.IsClusterMode, o.TLSConfig != nil, sn)
	}
}

func TestRedisCAFileIsLoaded(t *testing.T) {
	t.Parallel()
	p := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(p, []byte("not a cert"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := RedisConfig{URL: "rediss://h:1", CAFile: p}.UniversalOptions()
	if err == nil || !strings.Contains(err.Error(), "holds no PEM certificate") {
		t.Fatalf("err = %v", err)
	}
}

func TestConnectFailureMasksPassword(t *testing.T) {
	t.Parallel()
	_, err := RedisConfig{URL: "redis://u:hunter2@127.0.0.1:1/0", DialTimeout: 200 * time.Millisecond}.Connect(context.Background(), time.Second)
	if err == nil {
		t.Fatal("connect to a closed port succeeded")
	}
	if strings.Contains(err.Error(), "hunter2") || !strings.Contains(err.Error(), "redis://u:****@127.0.0.1:1/0") {
		t.Fatalf("err = %v", err)
	}
}

func TestMaskURL(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, in, want string }{
		{name: "password only", in: "redis://:pw@h:1/0", want: "redis://:****@h:1/0"},
		{name: "ACL user keeps the user", in: "redis://user:pw@h/0", want: "redis://user:****@h/0"},
		{name: "username-only userinfo is a token", in: "redis://TOKEN@host/0", want: "redis://****@host/0"},
		{name: "empty userinfo", in: "redis://@h/0", want: "redis://@h/0"},
		{name: "empty password", in: "redis://u:@h/0", want: "redis://u:****@h/0"},
		{name: "no userinfo", in: "redis://h:6379/0", want: "redis://h:6379/0"},
		{name: "unparseable", in: "redis://u:pw@h/%zz", want: "<unparseable URL>"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := MaskURL(tt.in); got != tt.want {
				t.Errorf("MaskURL(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestConnectReal(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	rdb, err := RedisConfig{URL: srv.URL}.Connect(context.Background(), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	if err := rdb.Set(context.Background(), "x", "1", 0).Err(); err != nil {
		t.Fatal(err)
	}
}

// TestRedisTLSFilesBounded: a TLS file setting that names /dev/zero, a huge
// file or a directory is refused at once, naming the key and the path,
// instead of being read until memory runs out (issue 7, new-user trial).
func TestRedisTLSFilesBounded(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	big := filepath.Join(dir, "big.pem")
	if err := os.WriteFile(big, make([]byte, maxTLSFileBytes+1), 0o600); err != nil {
		t.Fatal(err)
	}
	small := filepath.Join(dir, "small.pem")
	if err := os.WriteFile(small, []byte("not a cert"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		cfg  RedisConfig
		want string
	}{
		{name: "ca file endless", cfg: RedisConfig{URL: "rediss://h:1", CAFile: "/dev/zero"}, want: "redis.tls.ca_file: /dev/zero is over 1 MiB"},
		{name: "ca file too big", cfg: RedisConfig{URL: "rediss://h:1", CAFile: big}, want: "redis.tls.ca_file: " + big + " is over 1 MiB"},
		{name: "ca file is a directory", cfg: RedisConfig{URL: "rediss://h:1", CAFile: dir}, want: "redis.tls.ca_file: " + dir + " is a directory"},
		{name: "cert file endless", cfg: RedisConfig{URL: "rediss://h:1", CertFile: "/dev/zero", KeyFile: big}, want: "redis.tls.cert_file: /dev/zero is over 1 MiB"},
		{name: "key file endless", cfg: RedisConfig{URL: "rediss://h:1", CertFile: small, KeyFile: "/dev/zero"}, want: "redis.tls.key_file: /dev/zero is over 1 MiB"},
		{name: "key file too big", cfg: RedisConfig{URL: "rediss://h:1", CertFile: small, KeyFile: big}, want: "redis.tls.key_file: " + big + " is over 1 MiB"},
		{name: "small files are parsed", cfg: RedisConfig{URL: "rediss://h:1", CertFile: small, KeyFile: small}, want: "redis.tls.cert_file/key_file:"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if _, err := os.Stat("/dev/zero"); err != nil {
				t.Skip("no /dev/zero here")
			}
			_, err := tc.cfg.UniversalOptions()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

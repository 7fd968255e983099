package queue

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

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
		{name: "bad db", cfg: RedisConfig{URL: "redis://h:1/x"}, wantErr: `redis.url: redis://h:1/x: invalid database number: "x"`},
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
		{name: "empty password", in: "redis://u:@h/0", want: "redis://u:@h/0"},
		{name: "no userinfo", in: "redis://h:6379/0", want: "redis://h:6379/0"},
		{name: "unparseable", in: "redis://u:pw@h/%zz", want: "redis://u:****@h/%zz"},
		{name: "token parameter", in: "redis://h:6379/0?token=SECRET1", want: "redis://h:6379/0?token=****"},
		{name: "password with at and slash", in: "redis://u:p@ss/w@rd@h:6379/0", want: "redis://u:****@h:6379/0"},
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

// TestRedisURLForms: every URL form go-redis defines (and our two earlier
// ones) builds the options go-redis's own parser gives, with our fields on
// top.
func TestRedisURLForms(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		cfg   RedisConfig
		check func(t *testing.T, o *redis.UniversalOptions)
	}{
		{"query options carry over", RedisConfig{URL: "redis://h:1/4?pool_size=7&client_name=agentq-x&max_retries=2&dial_timeout=2s"}, func(t *testing.T, o *redis.UniversalOptions) {
			if o.PoolSize != 7 || o.ClientName != "agentq-x" || o.MaxRetries != 2 || o.DialTimeout != 2*time.Second || o.DB != 4 ||
				o.ReadTimeout != RedisReadTimeoutDefault || o.Addrs[0] != "h:1" || o.IsClusterMode || o.MasterName != "" {
				t.Fatalf("options %+v", o)
			}
		}},
		{"config fields override the URL", RedisConfig{URL: "redis://u:urlpw@h:1/0?pool_size=7&dial_timeout=2s", PoolSize: 3, DialTimeout: time.Second, Username: "cfguser", Password: "cfgpw"}, func(t *testing.T, o *redis.UniversalOptions) {
			if o.PoolSize != 3 || o.DialTimeout != time.Second || o.Username != "cfguser" || o.Password != "cfgpw" {
				t.Fatalf("options %+v", o)
			}
		}},
		{"rediss skip_verify", RedisConfig{URL: "rediss://h:6380/0?skip_verify=true"}, func(t *testing.T, o *redis.UniversalOptions) {
			if o.TLSConfig == nil || !o.TLSConfig.InsecureSkipVerify || o.TLSConfig.ServerName != "h" {
				t.Fatalf("tls %+v", o.TLSConfig)
			}
		}},
		{"no port", RedisConfig{URL: "redis://cache/1"}, func(t *testing.T, o *redis.UniversalOptions) {
			if o.Addrs[0] != "cache:6379" || o.DB != 1 {
				t.Fatalf("options %+v", o)
			}
		}},
		{"unix socket", RedisConfig{URL: "unix://:pw@/run/redis.sock?db=3"}, func(t *testing.T, o *redis.UniversalOptions) {
			if o.Addrs[0] != "/run/redis.sock" || o.DB != 3 || o.Password != "pw" || o.Dialer == nil {
				t.Fatalf("options %+v", o)
			}
		}},
		{"redis-socket is unix", RedisConfig{URL: "redis-socket:///run/redis.sock?db=2"}, func(t *testing.T, o *redis.UniversalOptions) {
			if o.Addrs[0] != "/run/redis.sock" || o.DB != 2 || o.Dialer == nil {
				t.Fatalf("options %+v", o)
			}
		}},
		{"cluster from addr", RedisConfig{URL: "redis://u:pw@c1:7000?addr=c2:7001&addr=c3:7002&read_timeout=1s"}, func(t *testing.T, o *redis.UniversalOptions) {
			if !o.IsClusterMode || !slices.Equal(o.Addrs, []string{"c1:7000", "c2:7001", "c3:7002"}) || o.Username != "u" || o.Password != "pw" ||
				o.ReadTimeout != time.Second || o.MasterName != "" {
				t.Fatalf("options %+v", o)
			}
		}},
		{"cluster addrs with a credentials URL", RedisConfig{URL: "rediss://u:pw@", ClusterAddrs: []string{"c1:7000", "c2:7001"}}, func(t *testing.T, o *redis.UniversalOptions) {
			if !o.IsClusterMode || !slices.Equal(o.Addrs, []string{"c1:7000", "c2:7001"}) || o.Password != "pw" || o.TLSConfig == nil || o.TLSConfig.ServerName != "c1" {
				t.Fatalf("options %+v", o)
			}
		}},
		{"sentinel, go-redis form", RedisConfig{URL: "redis://su:spw@s1:26379/2?master_name=mymaster&addr=s2:26379&password=mpw"}, func(t *testing.T, o *redis.UniversalOptions) {
			if o.MasterName != "mymaster" || !slices.Equal(o.Addrs, []string{"s1:26379", "s2:26379"}) || o.DB != 2 ||
				o.SentinelUsername != "su" || o.SentinelPassword != "spw" || o.Password != "mpw" || o.IsClusterMode {
				t.Fatalf("options %+v", o)
			}
		}},
		{"sentinel, earlier form: one password", RedisConfig{URL: "redis-sentinel://:pw@s1:26379,s2:26379/2?master=mymaster"}, func(t *testing.T, o *redis.UniversalOptions) {
			if o.MasterName != "mymaster" || !slices.Equal(o.Addrs, []string{"s1:26379", "s2:26379"}) || o.DB != 2 ||
				o.SentinelPassword != "pw" || o.Password != "pw" {
				t.Fatalf("options %+v", o)
			}
		}},
		{"sentinel with a Password override", RedisConfig{URL: "redis://s1:26379/0?master_name=m", Password: "cfgpw"}, func(t *testing.T, o *redis.UniversalOptions) {
			if o.Password != "cfgpw" || o.SentinelPassword != "cfgpw" {
				t.Fatalf("options %+v", o)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			o, err := tc.cfg.UniversalOptions()
			if err != nil {
				t.Fatal(err)
			}
			if err := tc.cfg.Validate(); err != nil {
				t.Fatalf("Validate = %v, UniversalOptions accepted it", err)
			}
			tc.check(t, o)
		})
	}
}

func TestRedisURLErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  RedisConfig
		want string
	}{
		{"unknown option", RedisConfig{URL: "redis://h:1/0?pool=3"}, "redis.url: redis://h:1/0?pool=3: unexpected option: pool"},
		{"bad duration", RedisConfig{URL: "redis://:s3cretpw@h:1/0?dial_timeout=soon"}, "redis.url: redis://:****@h:1/0?dial_timeout=soon: invalid dial_timeout duration"},
		{"negative db", RedisConfig{URL: "redis://h:1/-1"}, "database -1 is negative"},
		{"two path segments", RedisConfig{URL: "redis://h:1/0/1"}, "invalid URL path"},
		{"unix without a path", RedisConfig{URL: "unix://"}, "must give an absolute socket path"},
		{"unix with a host", RedisConfig{URL: "unix://host/r.sock"}, "must give an absolute socket path and no host"},
		{"cluster addrs beside a URL host", RedisConfig{URL: "redis://u:secret@a:7000/0", ClusterAddrs: []string{"c:1"}}, "must give only the scheme and credentials"},
		{"unix with cluster addrs", RedisConfig{URL: "unix:///r.sock", ClusterAddrs: []string{"c:1"}}, "cannot be used with redis.cluster_addrs"},
		{"sentinel with cluster addrs", RedisConfig{URL: "redis://s:1/0?master_name=m", ClusterAddrs: []string{"c:1"}}, "cannot be used with redis.cluster_addrs"},
		{"empty master name", RedisConfig{URL: "redis://s:1/0?master_name="}, "empty master_name"},
		{"bad sentinel addr", RedisConfig{URL: "redis://s:1/0?master_name=m&addr=nohost"}, "unable to parse addr param: nohost"},
		{"earlier sentinel form without addresses", RedisConfig{URL: "redis-sentinel:///0?master=m"}, "needs sentinel addresses"},
		{"password with an unescaped at and slash", RedisConfig{URL: "redis://u:s3cret@ss/w@rd@h:1/0"}, "redis.url: redis://u:****@h:1/0 is not a valid URL: the user name or password is malformed"},
		{"unparseable", RedisConfig{URL: "redis://u:s3cret%zz@h/"}, "redis.url: redis://u:****@h/ is not a valid URL: the user name or password is malformed"},
		{"bad port", RedisConfig{URL: "redis://u:s3cretpw@h:port/0"}, `is not a valid URL: invalid port ":port" after host`},
		{"skip_verify without TLS", RedisConfig{URL: "redis://h:1/0?skip_verify=true"}, "unexpected option: skip_verify"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := tc.cfg.UniversalOptions()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
			if verr := tc.cfg.Validate(); verr == nil || verr.Error() != err.Error() {
				t.Fatalf("Validate = %v, UniversalOptions = %v", verr, err)
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Fatalf("password in error: %v", err)
			}
		})
	}
}

func TestMaskURLQuery(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, in, want string }{
		{"master password", "redis://s:1/0?master_name=m&password=s3cret&addr=t:2", "redis://s:1/0?master_name=m&password=****&addr=t:2"},
		{"sentinel password and userinfo", "redis-sentinel://:pw@a:1,b:2/0?master=m&sentinel_password=x", "redis-sentinel://:****@a:1,b:2/0?master=m&sentinel_password=****"},
		{"escaped key", "redis://h/0?pass%77ord=s3cret#frag", "redis://h/0?pass%77ord=****#frag"},
		{"other options kept", "redis://h/0?pool_size=3", "redis://h/0?pool_size=3"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := MaskURL(tc.in); got != tc.want {
				t.Fatalf("MaskURL(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

// TestConnectUnixSocket reaches a real Redis over its Unix socket with both
// URL forms.
func TestConnectUnixSocket(t *testing.T) {
	t.Parallel()
	sock := filepath.Join(t.TempDir(), "redis.sock")
	redistest.StartExclusive(t, "--unixsocket", sock, "--unixsocketperm", "700")
	for _, u := range []string{"unix://" + sock + "?db=2", "redis-socket://" + sock + "?db=2"} {
		t.Run(u, func(t *testing.T) {
			rdb, err := RedisConfig{URL: u}.Connect(context.Background(), 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer rdb.Close()
			ctx := context.Background()
			if err := rdb.Set(ctx, "k", u, 0).Err(); err != nil {
				t.Fatal(err)
			}
			info, err := rdb.ClientInfo(ctx).Result()
			if err != nil || info.DB != 2 {
				t.Fatalf("client info %+v, %v; want db 2", info, err)
			}
		})
	}
}

// TestNewRedisClientKinds: the URL decides the kind of client.
func TestNewRedisClientKinds(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, url string
		want      string
	}{
		{"one server", "redis://h:1/0", "*redis.Client"},
		{"sentinel", "redis://s:1/0?master_name=m&addr=s2:2", "*redis.Client"},
		{"cluster", "redis://c:1?addr=c2:2", "*redis.ClusterClient"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rdb, err := RedisConfig{URL: tc.url}.NewRedis()
			if err != nil {
				t.Fatal(err)
			}
			defer rdb.Close()
			if got := fmt.Sprintf("%T", rdb); got != tc.want {
				t.Fatalf("client %s, want %s", got, tc.want)
			}
			if tc.name == "sentinel" && !strings.Contains(rdb.(*redis.Client).String(), "FailoverClient") {
				t.Fatalf("sentinel URL did not build a failover client: %s", rdb.(*redis.Client).String())
			}
		})
	}
}

// TestConnectThroughSentinel asks a real Sentinel for the master named in
// a go-redis failover URL, and in the earlier redis-sentinel:// form.
func TestConnectThroughSentinel(t *testing.T) {
	t.Parallel()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skip("no redis-server")
	}
	master := redistest.StartExclusive(t)
	host, port, _ := net.SplitHostPort(master.Addr)
	dir := t.TempDir()
	conf := filepath.Join(dir, "sentinel.conf")
	sport := redistest.FreePort(t)
	body := fmt.Sprintf("port %d\nbind 127.0.0.1\nprotected-mode no\ndir %s\nsentinel monitor mymaster %s %s 1\n", sport, dir, host, port)
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, conf, "--sentinel")
	redistest.KillWithParent(cmd)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _, _ = cmd.Process.Wait() })
	saddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(sport))
	for _, u := range []string{
		"redis://" + saddr + "/3?master_name=mymaster",
		"redis-sentinel://" + saddr + "/3?master=mymaster",
	} {
		t.Run(u, func(t *testing.T) {
			rdb, err := RedisConfig{URL: u}.ConnectWait(context.Background(), WaitConfig{TryTimeout: 2 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			defer rdb.Close()
			ctx := context.Background()
			if err := rdb.Set(ctx, "via-sentinel", u, 0).Err(); err != nil {
				t.Fatal(err)
			}
			// The write landed on the master, in database 3.
			direct := redis.NewClient(&redis.Options{Addr: master.Addr, DB: 3})
			defer direct.Close()
			if got, err := direct.Get(ctx, "via-sentinel").Result(); err != nil || got != u {
				t.Fatalf("master has %q, %v", got, err)
			}
		})
	}
}

package queue

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/agentq/agentq/redact"
	"github.com/redis/go-redis/v9"
)

// RedisConfig says how to reach Redis: one server, Sentinel or Cluster.
type RedisConfig struct {
	// URL says where Redis is, in go-redis's URL forms (redis.ParseURL,
	// redis.ParseClusterURL, redis.ParseFailoverURL):
	//
	//	redis://[user:pass@]host:port/db           one server; rediss:// for TLS
	//	unix://[user:pass@]/path/redis.sock?db=N   one server on a Unix socket
	//	redis://[user:pass@]h1:p1?addr=h2:p2&addr=h3:p3
	//	                                           Redis Cluster seeds
	//	redis://[suser:spass@]s1:p1/db?master_name=NAME&addr=s2:p2[&password=PASS]
	//	                                           Sentinel: the userinfo is the
	//	                                           sentinels', password= the master's
	//
	// go-redis's query options apply (dial_timeout=3s, pool_size=20,
	// client_name=..., skip_verify=true ...) and unknown ones are refused.
	// The earlier forms redis-sentinel://[:pass@]h1:p1,h2:p2/db?master=NAME
	// (one password for sentinels and master) and redis-socket:///path?db=N
	// are still accepted. Default "redis://127.0.0.1:6379/0".
	URL string
	// Username overrides the URL's user. Default "".
	Username string
	// Password overrides the URL's password (for Sentinel: the master's and
	// the sentinels'); secret. Default "".
	Password string
	// ClusterAddrs selects Redis Cluster with these seed addresses; the URL
	// then only gives credentials, TLS and options. Default none.
	ClusterAddrs []string
	// TLSEnabled turns TLS on without a rediss:// URL. Default false.
	TLSEnabled bool
	// CAFile is a PEM bundle that verifies the server. Default: system roots.
	CAFile string
	// CertFile and KeyFile are a client certificate. Default none.
	CertFile, KeyFile string
	// ServerName overrides the name verified in the server's certificate.
	// Default: the host of the URL (of the first cluster seed; for Sentinel,
	// the host of each connection).
	ServerName string
	// InsecureSkipVerify disables certificate checks. Default false.
	InsecureSkipVerify bool
	// DialTimeout, ReadTimeout and WriteTimeout bound network calls; they
	// override the URL's dial_timeout, read_timeout and write_timeout.
	// Defaults 5s, 3s, 3s.
	DialTimeout, ReadTimeout, WriteTimeout time.Duration
	// PoolSize is the connection pool size; it overrides the URL's
	// pool_size. Default go-redis's (10 per CPU).
	PoolSize int
}

// RedisURLDefault is the Redis used when none is configured.
const RedisURLDefault = "redis://127.0.0.1:6379/0"

// Redis timeouts used when neither RedisConfig nor the URL sets them.
const (
	RedisDialTimeoutDefault  = 5 * time.Second
	RedisReadTimeoutDefault  = 3 * time.Second
	RedisWriteTimeoutDefault = 3 * time.Second
)

const redisSchemes = "use redis://, rediss://, unix://, redis-sentinel:// or redis-socket://"

// UniversalOptions turns the config into go-redis options. The URL is
// parsed by go-redis (see RedisConfig.URL): a URL with master_name gives
// Sentinel options (MasterName set), one with addr= or ClusterAddrs gives
// Cluster options (IsClusterMode set), any other one server. For a Unix
// socket, Addrs holds the path and Dialer dials it, so that
// redis.NewUniversalClient works on the result as it is. It reads the TLS
// files; errors name the config key and never show a password.
func (c RedisConfig) UniversalOptions() (*redis.UniversalOptions, error) {
	o, host, err := c.parse()
	if err != nil {
		return nil, err
	}
	if o.TLSConfig != nil || c.TLSEnabled || c.CAFile != "" || c.CertFile != "" {
		if o.TLSConfig, err = c.tlsConfig(o.TLSConfig, host); err != nil {
			return nil, err
		}
	}
	return o, nil
}

// Validate checks the URL and how it combines with the other fields,
// without reading the TLS files: it refuses what UniversalOptions would,
// the TLS files aside, with the same messages.
func (c RedisConfig) Validate() error {
	_, _, err := c.parse()
	return err
}

// parse builds the options from the URL and the fields; host is the name
// a TLS certificate is checked against ("" for each connection's host).
func (c RedisConfig) parse() (o *redis.UniversalOptions, host string, err error) {
	raw := cmp.Or(c.URL, RedisURLDefault)
	shown := MaskURL(raw)
	if !strings.Contains(raw, "://") {
		return nil, "", fmt.Errorf("redis.url: %s is not a URL (%s)", shown, redisSchemes)
	}
	u, reason := redact.ParseURL(raw)
	if reason == "" && u.User != nil && redact.UserinfoSplit(raw) {
		// A Redis URL holds no '@' after its host: this is user info with
		// an unescaped '@' and '/', '?' or '#', which url.Parse splits (the
		// wrong host, the rest of the password in the path).
		reason = "the user name or password is malformed (escape special characters with %XX)"
	}
	if reason != "" {
		return nil, "", fmt.Errorf("redis.url: %s is not a valid URL: %s", shown, reason)
	}
	secrets := urlSecrets(u, c.Password)
	fail := func(err error) error {
		msg := strings.TrimPrefix(err.Error(), "redis: ")
		return fmt.Errorf("redis.url: %s: %s", shown, maskSecrets(msg, secrets))
	}
	legacySentinel := false
	switch u.Scheme {
	case "redis-socket":
		u.Scheme = "unix"
	case "redis-sentinel":
		if u, err = sentinelURL(u); err != nil {
			return nil, "", fail(err)
		}
		legacySentinel = true
	case "redis", "rediss", "unix":
	default:
		return nil, "", fmt.Errorf("redis.url: unsupported scheme %q (%s)", u.Scheme, redisSchemes)
	}
	q := u.Query()
	o = &redis.UniversalOptions{}
	switch {
	case u.Scheme == "unix":
		if len(c.ClusterAddrs) > 0 {
			return nil, "", fmt.Errorf("redis.url: %s is a Unix socket, which cannot be used with redis.cluster_addrs", shown)
		}
		if u.Host != "" || !strings.HasPrefix(u.Path, "/") {
			return nil, "", fmt.Errorf("redis.url: %s must give an absolute socket path and no host: unix:///path/to/redis.sock", shown)
		}
		so, err := redis.ParseURL(u.String())
		if err != nil {
			return nil, "", fail(err)
		}
		copyOptions(o, so)
		o.Addrs = []string{so.Addr}
		o.Dialer = unixDialer(o)
	case q.Has("master_name"):
		if len(c.ClusterAddrs) > 0 {
			return nil, "", fmt.Errorf("redis.url: %s names a Sentinel master, which cannot be used with redis.cluster_addrs", shown)
		}
		fo, err := redis.ParseFailoverURL(u.String())
		if err != nil {
			return nil, "", fail(err)
		}
		if fo.MasterName == "" {
			return nil, "", fmt.Errorf("redis.url: %s has an empty master_name", shown)
		}
		copyOptions(o, fo)
		o.Addrs = fo.SentinelAddrs
		if legacySentinel {
			// redis-sentinel:// gives one credential for sentinels and master.
			o.Username = cmp.Or(o.Username, fo.SentinelUsername)
			o.Password = cmp.Or(o.Password, fo.SentinelPassword)
		}
	case len(c.ClusterAddrs) > 0 && c.URL != "" && (u.Host != "" || (u.Path != "" && u.Path != "/") || q.Has("addr")):
		// The seeds come from one place: an address in the URL beside
		// cluster_addrs would be silently ignored.
		return nil, "", fmt.Errorf("redis.url: %s must give only the scheme and credentials (e.g. %s://user:%s@) when redis.cluster_addrs is set", shown, u.Scheme, redact.Mask)
	case len(c.ClusterAddrs) > 0 || q.Has("addr"):
		co, err := redis.ParseClusterURL(u.String())
		if err != nil {
			return nil, "", fail(err)
		}
		copyOptions(o, co)
		o.IsClusterMode = true
		if len(c.ClusterAddrs) > 0 {
			o.Addrs = slices.Clone(c.ClusterAddrs)
		}
		host = o.Addrs[0]
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
	default:
		so, err := redis.ParseURL(u.String())
		if err != nil {
			return nil, "", fail(err)
		}
		copyOptions(o, so)
		o.Addrs = []string{so.Addr}
		host = u.Hostname()
		if host == "" {
			host = "localhost"
		}
	}
	if o.DB < 0 {
		return nil, "", fmt.Errorf("redis.url: %s: database %d is negative", shown, o.DB)
	}
	o.DialTimeout = cmp.Or(c.DialTimeout, o.DialTimeout, RedisDialTimeoutDefault)
	o.ReadTimeout = cmp.Or(c.ReadTimeout, o.ReadTimeout, RedisReadTimeoutDefault)
	o.WriteTimeout = cmp.Or(c.WriteTimeout, o.WriteTimeout, RedisWriteTimeoutDefault)
	o.PoolSize = cmp.Or(c.PoolSize, o.PoolSize)
	if c.Username != "" {
		o.Username = c.Username
	}
	if c.Password != "" {
		o.Password = c.Password
		if o.MasterName != "" {
			o.SentinelPassword = c.Password
		}
	}
	return o, host, nil
}

// sentinelURL rewrites redis-sentinel://[cred@]h1:p1,h2:p2/db?master=NAME
// into go-redis's failover form redis://[cred@]h1:p1/db?addr=h2:p2&master_name=NAME.
func sentinelURL(u *url.URL) (*url.URL, error) {
	q := u.Query()
	master := q.Get("master")
	if master == "" {
		return nil, errors.New("a redis-sentinel URL needs ?master=NAME")
	}
	if u.Host == "" {
		return nil, errors.New("a redis-sentinel URL needs sentinel addresses")
	}
	hosts := strings.Split(u.Host, ",")
	q.Del("master")
	q.Set("master_name", master)
	for _, h := range hosts[1:] {
		q.Add("addr", h)
	}
	v := *u
	v.Scheme, v.Host, v.RawQuery = "redis", hosts[0], q.Encode()
	return &v, nil
}

// copyOptions copies every field of src (a *redis.Options, ClusterOptions
// or FailoverOptions, as go-redis's URL parsers return them) into dst's
// field of the same name and type: go-redis's UniversalOptions mirrors
// them, so every option a URL can set carries over.
func copyOptions(dst *redis.UniversalOptions, src any) {
	d := reflect.ValueOf(dst).Elem()
	sv := reflect.ValueOf(src).Elem()
	for i := range sv.NumField() {
		f := sv.Type().Field(i)
		if !f.IsExported() {
			continue
		}
		df := d.FieldByName(f.Name)
		if df.IsValid() && df.CanSet() && df.Type() == f.Type {
			df.Set(sv.Field(i))
		}
	}
}

// unixDialer dials o's address as a Unix socket.
func unixDialer(o *redis.UniversalOptions) func(ctx context.Context, _, addr string) (net.Conn, error) {
	return func(ctx context.Context, _, addr string) (net.Conn, error) {
		d := net.Dialer{Timeout: o.DialTimeout}
		return d.DialContext(ctx, "unix", addr)
	}
}

// tlsConfig builds the TLS settings: the URL's (skip_verify) and the
// config's, with the CA and client certificate files read.
func (c RedisConfig) tlsConfig(fromURL *tls.Config, host string) (*tls.Config, error) {
	tc := &tls.Config{ServerName: host, InsecureSkipVerify: c.InsecureSkipVerify, MinVersion: tls.VersionTLS12} //nolint:gosec // opt-in
	if fromURL != nil && fromURL.InsecureSkipVerify {
		tc.InsecureSkipVerify = true
	}
	if c.ServerName != "" {
		tc.ServerName = c.ServerName
	}
	if c.CAFile != "" {
		pem, err := readTLSFile("redis.tls.ca_file", c.CAFile)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("redis.tls.ca_file: %s holds no PEM certificate", c.CAFile)
		}
		tc.RootCAs = pool
	}
	if c.CertFile != "" || c.KeyFile != "" {
		certPEM, err := readTLSFile("redis.tls.cert_file", c.CertFile)
		if err != nil {
			return nil, err
		}
		keyPEM, err := readTLSFile("redis.tls.key_file", c.KeyFile)
		if err != nil {
			return nil, err
		}
		cert, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			return nil, fmt.Errorf("redis.tls.cert_file/key_file: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// urlSecrets are the secrets a URL and the config hold: the userinfo's
// password (or a bare token), the values of secret query parameters (see
// MaskURL), and the Password field.
func urlSecrets(u *url.URL, password string) []string {
	var out []string
	if u.User != nil {
		if pw, ok := u.User.Password(); ok {
			out = append(out, pw)
		} else {
			out = append(out, u.User.Username())
		}
	}
	red := redact.Default()
	for k, vs := range u.Query() {
		if red.SecretParam(k) {
			out = append(out, vs...)
		}
	}
	return append(out, password)
}

func maskSecrets(s string, secrets []string) string {
	for _, sec := range secrets {
		s = maskSecret(s, sec)
	}
	return s
}

// maxTLSFileBytes bounds what is read of a TLS CA, certificate or key file
// (1 MiB, far above any real chain), so a wrong path such as /dev/zero is
// refused instead of read until memory runs out.
const maxTLSFileBytes = 1 << 20

// readTLSFile reads a PEM file named by the config key, at most
// maxTLSFileBytes of it. Errors name the key and the path, never the content.
func readTLSFile(key, path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.IsDir() {
		return nil, fmt.Errorf("%s: %s is a directory, not a file", key, path)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxTLSFileBytes+1))
	switch {
	case err != nil:
		return nil, fmt.Errorf("%s: read %s: %w", key, path, err)
	case len(b) > maxTLSFileBytes:
		return nil, fmt.Errorf("%s: %s is over 1 MiB; a PEM file is a few KiB", key, path)
	}
	return b, nil
}

// NewRedis returns a go-redis client for c. It does not connect yet. A
// cluster client reloads its slot map as soon as a command fails on the
// network, so that it follows a failover at once (see WatchFailover).
func (c RedisConfig) NewRedis() (redis.UniversalClient, error) {
	o, err := c.UniversalOptions()
	if err != nil {
		return nil, err
	}
	rdb := redis.NewUniversalClient(o)
	WatchFailover(rdb)
	return rdb, nil
}

// Connect returns a client for c after a PING within timeout, or a
// *ConnectError that says where it tried, with the password masked.
func (c RedisConfig) Connect(ctx context.Context, timeout time.Duration) (redis.UniversalClient, error) {
	rdb, cerr := c.try(ctx, timeout)
	if cerr != nil {
		return nil, cerr
	}
	return rdb, nil
}

func maskSecret(s, secret string) string {
	if secret == "" {
		return s
	}
	return strings.ReplaceAll(s, secret, redact.Mask)
}

// ConnOpt is an asynq.RedisConnOpt built from a RedisConfig, for code that
// wants its own asynq connection (the dashboard's inspector).
type ConnOpt struct{ Config RedisConfig }

// MakeRedisClient implements asynq.RedisConnOpt. It panics on a config
// that Connect would refuse, so validate with Connect first.
func (o ConnOpt) MakeRedisClient() any {
	rdb, err := o.Config.NewRedis()
	if err != nil {
		panic(err)
	}
	return rdb
}

// MaskURL returns u with its secrets masked as redact.URL masks them: the
// userinfo's password (a userinfo with no password is a bare credential,
// redis://TOKEN@host, and is masked whole; an ACL username stays
// readable), the values of secret query parameters (password,
// sentinel_password, token, ... : redact's list), and path segments that
// look like credentials. The rest of u is kept as written, whether or not
// it parses. A value with no "://" that holds '@', '?' or '#' is not
// shown at all: redact reads it as text, where URL-only secret names (pass)
// are not secrets, and it cannot tell user info or a query from the rest.
func MaskURL(u string) string {
	if !strings.Contains(u, "://") && strings.ContainsAny(u, "@?#") {
		return fmt.Sprintf("the value (%d bytes, not shown: it may hold a password)", len(u))
	}
	return redact.URL(u)
}

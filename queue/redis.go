package queue

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisConfig says how to reach Redis: one server, Sentinel or Cluster.
type RedisConfig struct {
	// URL is redis://[user:pass@]host:port/db, rediss:// for TLS,
	// redis-sentinel://[:pass@]h1:p1,h2:p2/db?master=NAME or
	// redis-socket:///path?db=N. Default "redis://127.0.0.1:6379/0".
	URL string
	// Username overrides the URL's user. Default "".
	Username string
	// Password overrides the URL's password; secret. Default "".
	Password string
	// ClusterAddrs selects Redis Cluster with these seed addresses; the URL
	// then only gives credentials and TLS. Default none.
	ClusterAddrs []string
	// TLSEnabled turns TLS on without a rediss:// URL. Default false.
	TLSEnabled bool
	// CAFile is a PEM bundle that verifies the server. Default: system roots.
	CAFile string
	// CertFile and KeyFile are a client certificate. Default none.
	CertFile, KeyFile string
	// ServerName overrides the name verified in the server's certificate.
	// Default: the host of the URL.
	ServerName string
	// InsecureSkipVerify disables certificate checks. Default false.
	InsecureSkipVerify bool
	// DialTimeout, ReadTimeout and WriteTimeout bound network calls.
	// Defaults 5s, 3s, 3s.
	DialTimeout, ReadTimeout, WriteTimeout time.Duration
	// PoolSize is the connection pool size. Default go-redis's (10 per CPU).
	PoolSize int
}

// RedisURLDefault is the Redis used when none is configured.
const RedisURLDefault = "redis://127.0.0.1:6379/0"

// UniversalOptions turns the config into go-redis options.
func (c RedisConfig) UniversalOptions() (*redis.UniversalOptions, error) {
	raw := c.URL
	if raw == "" {
		raw = RedisURLDefault
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("redis.url: cannot parse %s", MaskURL(raw))
	}
	o := &redis.UniversalOptions{
		DialTimeout: cmpDur(c.DialTimeout, 5*time.Second), ReadTimeout: cmpDur(c.ReadTimeout, 3*time.Second),
		WriteTimeout: cmpDur(c.WriteTimeout, 3*time.Second), PoolSize: c.PoolSize,
	}
	if u.User != nil {
		o.Username = u.User.Username()
		o.Password, _ = u.User.Password()
	}
	useTLS := c.TLSEnabled
	host := u.Hostname()
	switch u.Scheme {
	case "redis", "rediss":
		useTLS = useTLS || u.Scheme == "rediss"
		o.Addrs = []string{u.Host}
		if u.Port() == "" {
			o.Addrs = []string{host + ":6379"}
		}
		if o.DB, err = dbFromPath(u.Path); err != nil {
			return nil, err
		}
	case "redis-sentinel":
		o.Addrs = strings.Split(u.Host, ",")
		o.MasterName = u.Query().Get("master")
		if o.MasterName == "" {
			return nil, fmt.Errorf("redis.url: a redis-sentinel URL needs ?master=NAME")
		}
		o.SentinelUsername, o.SentinelPassword = o.Username, o.Password
		if o.DB, err = dbFromPath(u.Path); err != nil {
			return nil, err
		}
		host = ""
	case "redis-socket":
		if u.Path == "" {
			return nil, fmt.Errorf("redis.url: a redis-socket URL needs a path")
		}
		o.Addrs = []string{u.Path}
		if db := u.Query().Get("db"); db != "" {
			if o.DB, err = strconv.Atoi(db); err != nil {
				return nil, fmt.Errorf("redis.url: db=%q is not a number", db)
			}
		}
	default:
		return nil, fmt.Errorf("redis.url: unsupported scheme %q (use redis://, rediss://, redis-sentinel:// or redis-socket://)", u.Scheme)
	}
	if len(c.ClusterAddrs) > 0 {
		o.Addrs = c.ClusterAddrs
		o.IsClusterMode = true
		o.DB = 0
		host, _, _ = strings.Cut(c.ClusterAddrs[0], ":")
	}
	if c.Username != "" {
		o.Username = c.Username
	}
	if c.Password != "" {
		o.Password = c.Password
		if o.MasterName != "" {
			o.SentinelPassword = c.Password
		}
	}
	if useTLS || c.CAFile != "" || c.CertFile != "" {
		tc := &tls.Config{ServerName: host, InsecureSkipVerify: c.InsecureSkipVerify, MinVersion: tls.VersionTLS12} //nolint:gosec // opt-in
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
		o.TLSConfig = tc
	}
	return o, nil
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

func cmpDur(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

func dbFromPath(p string) (int, error) {
	p = strings.Trim(p, "/")
	if p == "" {
		return 0, nil
	}
	db, err := strconv.Atoi(p)
	if err != nil || db < 0 {
		return 0, fmt.Errorf("redis.url: database %q is not a non-negative number", p)
	}
	return db, nil
}

// network returns "unix" for a socket URL, else "tcp".
func (c RedisConfig) network() string {
	if strings.HasPrefix(c.URL, "redis-socket:") {
		return "unix"
	}
	return "tcp"
}

// NewRedis returns a go-redis client for c. It does not connect yet.
func (c RedisConfig) NewRedis() (redis.UniversalClient, error) {
	o, err := c.UniversalOptions()
	if err != nil {
		return nil, err
	}
	if c.network() == "unix" {
		ro := o.Simple()
		ro.Network = "unix"
		return redis.NewClient(ro), nil
	}
	return redis.NewUniversalClient(o), nil
}

// Connect returns a client for c after a PING within timeout, or an error
// that says where it tried, with the password masked.
func (c RedisConfig) Connect(ctx context.Context, timeout time.Duration) (redis.UniversalClient, error) {
	rdb, err := c.NewRedis()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := rdb.Ping(ctx).Err(); err != nil {
		_ = rdb.Close()
		where := MaskURL(cmpStr(c.URL, RedisURLDefault))
		if len(c.ClusterAddrs) > 0 {
			where = "cluster " + strings.Join(c.ClusterAddrs, ",")
		}
		return nil, fmt.Errorf("cannot reach Redis at %s: %s (set redis.url or AGENTQ_REDIS_URL)", where, maskSecret(err.Error(), c.Password))
	}
	return rdb, nil
}

func cmpStr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func maskSecret(s, secret string) string {
	if secret == "" {
		return s
	}
	return strings.ReplaceAll(s, secret, "****")
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

// MaskURL returns u with any password replaced by "****". A userinfo with
// no password is a bare credential (redis://TOKEN@host, as some hosted
// Redis services hand out) and is masked whole, as the redact package
// masks it; an ACL username with a password (redis://user:pw@h) stays
// readable.
func MaskURL(u string) string {
	p, err := url.Parse(u)
	if err != nil || p.User == nil {
		if err != nil {
			return "<unparseable URL>"
		}
		return u
	}
	if _, ok := p.User.Password(); ok {
		p.User = url.UserPassword(p.User.Username(), "xxxxx")
		return strings.Replace(p.String(), "xxxxx", "****", 1)
	}
	if p.User.Username() != "" {
		p.User = url.User("xxxxx")
		return strings.Replace(p.String(), "xxxxx", "****", 1)
	}
	return u
}

package queue

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"
)

// Connect-wait defaults.
const (
	// ConnectBackoffMinDefault is the wait after the first failed try.
	ConnectBackoffMinDefault = 250 * time.Millisecond
	// ConnectBackoffMaxDefault caps the wait between tries.
	ConnectBackoffMaxDefault = 30 * time.Second
	// ConnectTryTimeoutDefault bounds one try (dial, handshake and PING).
	ConnectTryTimeoutDefault = 5 * time.Second
)

// WaitConfig says how ConnectWait retries a Redis that does not answer.
type WaitConfig struct {
	// BackoffMin is the wait after the first failed try; each further try
	// doubles it. Default ConnectBackoffMinDefault (250ms).
	BackoffMin time.Duration
	// BackoffMax caps the wait. Default ConnectBackoffMaxDefault (30s).
	BackoffMax time.Duration
	// TryTimeout bounds one try. Default ConnectTryTimeoutDefault (5s).
	TryTimeout time.Duration
	// Logger gets one warning per failed try. Default: no logging.
	Logger *zerolog.Logger
	// RandN returns a uniform int64 in [0, n); it decides the jitter.
	// Default math/rand/v2's Int64N.
	RandN func(n int64) int64
	// After returns a channel that fires after d. Default time.After.
	After func(d time.Duration) <-chan time.Time
}

func (c WaitConfig) withDefaults() WaitConfig {
	if c.BackoffMin <= 0 {
		c.BackoffMin = ConnectBackoffMinDefault
	}
	if c.BackoffMax <= 0 {
		c.BackoffMax = ConnectBackoffMaxDefault
	}
	c.BackoffMax = max(c.BackoffMax, c.BackoffMin)
	if c.TryTimeout <= 0 {
		c.TryTimeout = ConnectTryTimeoutDefault
	}
	if c.Logger == nil {
		nop := zerolog.Nop()
		c.Logger = &nop
	}
	if c.RandN == nil {
		c.RandN = rand.Int64N
	}
	if c.After == nil {
		c.After = time.After
	}
	return c
}

// ConnectError is a failure to reach Redis. Its text names where agentq
// tried, with the password masked.
type ConnectError struct {
	// Where is the masked URL or the cluster seed list.
	Where string
	// Permanent says a retry cannot help: the URL, the credentials, the
	// database index or the TLS setup is wrong.
	Permanent bool
	err       error // already masked
}

func (e *ConnectError) Error() string {
	if e.Where == "" {
		return e.err.Error()
	}
	return fmt.Sprintf("cannot reach Redis at %s: %s (set redis.url or AGENTQ_REDIS_URL)", e.Where, e.err)
}

func (e *ConnectError) Unwrap() error { return e.err }

// where names the Redis c points at, password masked.
func (c RedisConfig) where() string {
	if len(c.ClusterAddrs) > 0 {
		return "cluster " + strings.Join(c.ClusterAddrs, ",")
	}
	return MaskURL(cmp.Or(c.URL, RedisURLDefault))
}

// try makes one client and PINGs it within timeout.
func (c RedisConfig) try(ctx context.Context, timeout time.Duration) (redis.UniversalClient, *ConnectError) {
	rdb, err := c.NewRedis()
	if err != nil {
		// The config itself is wrong (URL, TLS files): never worth a retry.
		return nil, &ConnectError{Permanent: true, err: err}
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := rdb.Ping(ctx).Err(); err != nil {
		_ = rdb.Close()
		masked := errors.New(maskSecret(err.Error(), c.Password))
		return nil, &ConnectError{Where: c.where(), Permanent: permanentConnectError(err), err: masked}
	}
	return rdb, nil
}

// ConnectWait is Connect for long-running processes (a worker, the
// dashboard): while Redis does not answer it waits and tries again, with
// exponential backoff and jitter, logging each failed try, until Redis
// answers or ctx ends. A permanent error (see ConnectError.Permanent) is
// returned at once. When ctx ends first it returns ctx's error.
func (c RedisConfig) ConnectWait(ctx context.Context, wc WaitConfig) (redis.UniversalClient, error) {
	var rdb redis.UniversalClient
	err := waitRedis(ctx, wc, c.where(), func(ctx context.Context, timeout time.Duration) *ConnectError {
		var cerr *ConnectError
		rdb, cerr = c.try(ctx, timeout)
		return cerr
	})
	if err != nil {
		return nil, err
	}
	return rdb, nil
}

// PingWait is ConnectWait for a client the caller made: it PINGs rdb until
// Redis answers or ctx ends, with the same backoff and a warning per
// failed try. A permanent error (see ConnectError.Permanent) is returned
// at once; when ctx ends first it returns ctx's error.
func PingWait(ctx context.Context, rdb redis.UniversalClient, wc WaitConfig) error {
	return waitRedis(ctx, wc, "the program's Redis client", func(ctx context.Context, timeout time.Duration) *ConnectError {
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		if err := rdb.Ping(ctx).Err(); err != nil {
			return &ConnectError{Where: "the program's Redis client", Permanent: permanentConnectError(err), err: err}
		}
		return nil
	})
}

// waitRedis runs try until it succeeds, backing off between failed tries
// and logging each; see ConnectWait.
func waitRedis(ctx context.Context, wc WaitConfig, where string, try func(context.Context, time.Duration) *ConnectError) error {
	wc = wc.withDefaults()
	for attempt := 1; ; attempt++ {
		cerr := try(ctx, wc.TryTimeout)
		if cerr == nil {
			if attempt > 1 {
				wc.Logger.Info().Str("redis", where).Int("attempt", attempt).Msg("redis answered")
			}
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if cerr.Permanent {
			return cerr
		}
		wait := connectBackoff(attempt, wc.BackoffMin, wc.BackoffMax, wc.RandN)
		wc.Logger.Warn().Str("redis", where).Int("attempt", attempt).
			Int64("next_try_in_ms", wait.Milliseconds()).Str("error", cerr.err.Error()).
			Msg("waiting for redis")
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-wc.After(wait):
		}
	}
}

// connectBackoff is the wait after the attempt-th failed try: min doubled
// per try, capped at max, then "equal jitter": a uniform draw in [d/2, d],
// so that workers restarted together do not knock in step.
func connectBackoff(attempt int, minD, maxD time.Duration, randN func(int64) int64) time.Duration {
	d := minD
	for i := 1; i < attempt && d < maxD; i++ {
		d *= 2
	}
	d = min(d, maxD)
	half := d / 2
	return half + time.Duration(randN(int64(d-half)+1))
}

// permanentConnectError says whether a failed PING is a configuration
// problem that no retry fixes. Everything else (refused, timed out, reset,
// DNS, LOADING, MASTERDOWN, too many clients...) is taken as transient: the
// worker waits, and says so in its log on every try.
func permanentConnectError(err error) bool {
	var (
		unknownCA *x509.UnknownAuthorityError
		hostname  x509.HostnameError
		invalid   x509.CertificateInvalidError
		header    tls.RecordHeaderError
	)
	if errors.As(err, &unknownCA) || errors.As(err, &hostname) || errors.As(err, &invalid) || errors.As(err, &header) {
		return true
	}
	msg := err.Error()
	for _, p := range []string{
		"NOAUTH", "WRONGPASS", "NOPERM",
		"ERR invalid password", "ERR AUTH", "ERR Client sent AUTH",
		"ERR DB index is out of range", "ERR invalid DB index",
	} {
		if strings.HasPrefix(msg, p) {
			return true
		}
	}
	return false
}

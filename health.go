package agentq

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/agentq/agentq/queue"
	"github.com/agentq/agentq/redact"
)

// HealthOptions say what Health checks besides Redis.
type HealthOptions struct {
	// Worker checks that a worker runs on Host: that asynq holds a live
	// record (a heartbeat within queue.ServerRecordTTL, 10s) of at least one
	// of its servers (dequeue loops), in status active. Default false.
	Worker bool
	// Host is the host name the worker's servers record, its
	// os.Hostname(): in a container its hostname (Docker: the container id
	// unless hostname is set; Kubernetes: the pod name), which is also what
	// a health check run inside the same container sees. Default: this
	// machine's os.Hostname().
	Host string
	// Dashboard, when set, is the dashboard's base URL (http or https);
	// Health GETs its /healthz, which answers without authentication.
	// Default: "" (not checked).
	Dashboard string
	// HTTPClient makes the dashboard request. Default: a client that
	// follows no redirects.
	HTTPClient *http.Client
}

// Health check names, as HealthCheck.Name reports them.
const (
	HealthRedis     = "redis"
	HealthWorker    = "worker"
	HealthDashboard = "dashboard"
)

// HealthCheck is the result of one check.
type HealthCheck struct {
	// Name is HealthRedis, HealthWorker or HealthDashboard.
	Name string `json:"name"`
	// OK reports the check passed.
	OK bool `json:"ok"`
	// Message says what was found or what failed, secrets masked.
	Message string `json:"message"`
	// Millis is how long the check took, in milliseconds.
	Millis int64 `json:"ms"`
}

// HealthReport is what Health found: healthy when every check passed.
type HealthReport struct {
	Healthy bool          `json:"healthy"`
	Checks  []HealthCheck `json:"checks"`
}

// Failed returns the names of the checks that failed.
func (h HealthReport) Failed() []string {
	var out []string
	for _, c := range h.Checks {
		if !c.OK {
			out = append(out, c.Name)
		}
	}
	return out
}

// Health checks that Redis answers a PING and, as o asks, that a worker
// runs on o.Host and that the dashboard at o.Dashboard answers its
// /healthz, all within ctx's deadline (give it a short one: container
// healthchecks and Kubernetes probes kill a check that hangs). What is
// unhealthy is in the report, not an error: the error is for options that
// cannot be checked (a malformed dashboard URL).
func (r *Runtime) Health(ctx context.Context, o HealthOptions) (HealthReport, error) {
	var dash *url.URL
	if o.Dashboard != "" {
		var err error
		if dash, err = healthzURL(o.Dashboard); err != nil {
			return HealthReport{}, err
		}
	}
	if o.Worker && o.Host == "" {
		h, err := os.Hostname()
		if err != nil {
			return HealthReport{}, fmt.Errorf("health: this machine's host name: %w (give the worker's host)", err)
		}
		o.Host = h
	}
	var (
		wg        sync.WaitGroup
		dashCheck HealthCheck
	)
	if dash != nil {
		// The dashboard is checked beside Redis, so that a Redis that hangs
		// until the deadline does not starve it.
		wg.Go(func() {
			dashCheck = timed(HealthDashboard, func() (bool, string) { return checkDashboard(ctx, o.HTTPClient, dash) })
		})
	}
	var rep HealthReport
	redisCheck := timed(HealthRedis, func() (bool, string) {
		if err := r.Ping(ctx); err != nil {
			return false, err.Error()
		}
		return true, "PONG from " + r.redisWhere()
	})
	rep.Checks = append(rep.Checks, redisCheck)
	if o.Worker {
		if !redisCheck.OK {
			rep.Checks = append(rep.Checks, HealthCheck{Name: HealthWorker, Message: "not checked: Redis does not answer"})
		} else {
			rep.Checks = append(rep.Checks, timed(HealthWorker, func() (bool, string) { return r.checkWorker(ctx, o.Host) }))
		}
	}
	wg.Wait()
	if dash != nil {
		rep.Checks = append(rep.Checks, dashCheck)
	}
	rep.Healthy = len(rep.Failed()) == 0
	return rep, nil
}

func timed(name string, f func() (bool, string)) HealthCheck {
	start := time.Now()
	ok, msg := f()
	return HealthCheck{Name: name, OK: ok, Message: msg, Millis: time.Since(start).Milliseconds()}
}

// redisWhere names the Redis the runtime uses, password masked.
func (r *Runtime) redisWhere() string {
	if addrs := r.cfg.Redis.ClusterAddrs; len(addrs) > 0 {
		return "cluster " + strings.Join(addrs, ",")
	}
	return queue.MaskURL(r.cfg.RedisURLOrDefault())
}

// checkWorker looks for live, active servers of host.
func (r *Runtime) checkWorker(ctx context.Context, host string) (bool, string) {
	in := queue.NewInspector(r.rdb)
	srvs, err := in.Servers(ctx, queue.ServerFilter{Host: host})
	if err != nil {
		return false, "cannot read the worker servers' records: " + err.Error()
	}
	var active []queue.Server
	statuses := map[string]int{}
	for _, s := range srvs {
		statuses[s.Status]++
		if s.Status == "active" {
			active = append(active, s)
		}
	}
	if len(active) == 0 {
		if len(srvs) > 0 {
			return false, fmt.Sprintf("the worker on host %q is not taking tasks: its %d servers are %s", host, len(srvs), countList(statuses))
		}
		msg := fmt.Sprintf("no worker on host %q sent a heartbeat in the last %v (is `%s worker` running there?", host, queue.ServerRecordTTL, r.CommandLine())
		if others, err := in.Servers(ctx, queue.ServerFilter{}); err == nil && len(others) > 0 {
			hosts := map[string]int{}
			for _, s := range others {
				hosts[s.Host]++
			}
			msg += fmt.Sprintf(" Live workers run on other hosts: %s; a worker's host is its os.Hostname(), pass the right one with --host", hostList(hosts))
		}
		return false, msg + ")"
	}
	pids := map[int]bool{}
	queues := map[string]int{}
	last := time.Time{}
	for _, s := range active {
		pids[s.PID] = true
		maps.Copy(queues, s.Queues)
		if s.LastHeartbeat.After(last) {
			last = s.LastHeartbeat
		}
	}
	pidList := slices.Sorted(maps.Keys(pids))
	ps := make([]string, len(pidList))
	for i, p := range pidList {
		ps[i] = strconv.Itoa(p)
	}
	age := max(time.Since(last), 0).Round(100 * time.Millisecond)
	// A worker process runs one asynq server per dequeue loop: count
	// processes as workers and their servers as loops.
	workers := "1 worker"
	if len(pids) > 1 {
		workers = fmt.Sprintf("%d workers", len(pids))
	}
	loops := "dequeue loops, asynq servers"
	if len(active) == 1 {
		loops = "dequeue loop, an asynq server"
	}
	return true, fmt.Sprintf("%s active on host %q (pid %s; %d %s), queues %s, last heartbeat %v ago",
		workers, host, strings.Join(ps, ","), len(active), loops, countList(queues), age)
}

// countList writes m as k=v pairs sorted by key.
func countList(m map[string]int) string {
	parts := make([]string, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, k+"="+strconv.Itoa(m[k]))
	}
	return strings.Join(parts, ",")
}

// hostList names up to five hosts, then how many more.
func hostList(hosts map[string]int) string {
	names := slices.Sorted(maps.Keys(hosts))
	if len(names) > 5 {
		return strings.Join(names[:5], ", ") + fmt.Sprintf(" and %d more", len(names)-5)
	}
	return strings.Join(names, ", ")
}

// healthzURL is the /healthz URL of the dashboard at base. A URL it
// refuses is echoed in its error, a userinfo password masked.
func healthzURL(base string) (*url.URL, error) {
	const want = "want http://host:port or https://host:port"
	shown := maskedURL(base)
	if !strings.Contains(base, "://") {
		return nil, fmt.Errorf("health: dashboard URL %q has no scheme: %s (e.g. %q)", shown, want, "http://"+shown)
	}
	u, err := url.Parse(base)
	switch {
	case err != nil:
		return nil, fmt.Errorf("health: dashboard URL %q does not parse: %s", shown, want)
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, fmt.Errorf("health: dashboard URL %q has scheme %q: %s", shown, u.Scheme, want)
	case u.Host == "":
		return nil, fmt.Errorf("health: dashboard URL %q has no host: %s", shown, want)
	}
	if !strings.HasSuffix(u.Path, "/healthz") {
		u.Path = strings.TrimSuffix(u.Path, "/") + "/healthz"
	}
	u.RawQuery, u.Fragment = "", ""
	return u, nil
}

// maskedURL is raw as the user typed it, masked by redact's TypedURL:
// everything between the first ':' after the scheme and the last '@' is
// the password, since a typed password may hold '@', '/', '?' or '#'
// unescaped, which url.Parse then reads as the host, path, query or
// fragment (and Redacted would show); without a scheme "user:pw@host:1"
// is user info and a host, not scheme "user". Secret query parameters
// are masked as everywhere else.
func maskedURL(raw string) string { return redact.Default().TypedURL(raw) }

// checkDashboard GETs the dashboard's /healthz.
func checkDashboard(ctx context.Context, c *http.Client, u *url.URL) (bool, string) {
	if c == nil {
		c = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	where := maskedURL(u.String())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return false, fmt.Sprintf("dashboard at %s: %v", where, err)
	}
	resp, err := c.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // its text repeats the URL, password included
		}
		return false, fmt.Sprintf("dashboard at %s does not answer: %v", where, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
	text := strings.TrimSpace(strings.ToValidUTF8(string(body), "?"))
	if resp.StatusCode != http.StatusOK {
		return false, fmt.Sprintf("dashboard at %s answered %s: %s", where, resp.Status, text)
	}
	return true, fmt.Sprintf("dashboard at %s answered %s", where, resp.Status)
}

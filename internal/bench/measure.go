package bench

import (
	"bufio"
	"context"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// resetStats zeroes the server's command statistics (CONFIG RESETSTAT).
func resetStats(ctx context.Context, rdb redis.UniversalClient) error {
	if err := rdb.ConfigResetStat(ctx).Err(); err != nil {
		return fmt.Errorf("config resetstat: %w", err)
	}
	return nil
}

// commandCount returns the number of commands the server executed since the
// last resetStats, from INFO commandstats.
func commandCount(ctx context.Context, rdb redis.UniversalClient) (int64, error) {
	info, err := rdb.Info(ctx, "commandstats").Result()
	if err != nil {
		return 0, fmt.Errorf("info commandstats: %w", err)
	}
	return sumCalls(info)
}

// sumCalls adds up the calls of every command in an INFO commandstats reply,
// commands run inside Lua scripts included. CONFIG is left out: the only
// call in a measured window is the CONFIG RESETSTAT that opened it, which
// Redis counts after resetting.
func sumCalls(info string) (int64, error) {
	var total int64
	sc := bufio.NewScanner(strings.NewReader(info))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		name, stats, ok := strings.Cut(line, ":")
		if !ok || !strings.HasPrefix(name, "cmdstat_") {
			continue
		}
		name = strings.TrimPrefix(name, "cmdstat_")
		if name == "config" || strings.HasPrefix(name, "config|") {
			continue
		}
		found := false
		for field := range strings.SplitSeq(stats, ",") {
			k, v, _ := strings.Cut(field, "=")
			if k != "calls" {
				continue
			}
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return 0, fmt.Errorf("info commandstats: calls of %s: %w", name, err)
			}
			total += n
			found = true
		}
		if !found {
			return 0, fmt.Errorf("info commandstats: no calls for %s in %q", name, line)
		}
	}
	return total, sc.Err()
}

// redisVersion returns the server's redis_version from INFO server.
func redisVersion(ctx context.Context, rdb redis.UniversalClient) (string, error) {
	info, err := rdb.Info(ctx, "server").Result()
	if err != nil {
		return "", fmt.Errorf("info server: %w", err)
	}
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "redis_version:"); ok {
			return v, nil
		}
	}
	return "", fmt.Errorf("info server: no redis_version")
}

// pickup measures, per task, the time from the return of its enqueue to the
// start of its handler. The two sides meet in a map keyed by task id, so the
// handler may start before the enqueue call has returned; such a task's
// latency counts as zero.
type pickup struct {
	marks   sync.Map // task id -> time.Time of the side that came first
	mu      sync.Mutex
	samples []time.Duration
}

// enqueued records that the enqueue of task id has returned.
func (p *pickup) enqueued(id string) {
	now := time.Now()
	if v, loaded := p.marks.LoadOrStore(id, now); loaded {
		p.marks.Delete(id)
		p.add(max(v.(time.Time).Sub(now), 0))
	}
}

// started records that the handler of task id has started.
func (p *pickup) started(id string) {
	now := time.Now()
	if v, loaded := p.marks.LoadOrStore(id, now); loaded {
		p.marks.Delete(id)
		p.add(now.Sub(v.(time.Time)))
	}
}

func (p *pickup) add(d time.Duration) {
	p.mu.Lock()
	p.samples = append(p.samples, d)
	p.mu.Unlock()
}

// latency summarizes the samples so far.
func (p *pickup) latency() Latency {
	p.mu.Lock()
	s := slices.Clone(p.samples)
	p.mu.Unlock()
	slices.Sort(s)
	return Latency{
		Tasks: len(s),
		P50MS: ms(percentile(s, 0.50)),
		P99MS: ms(percentile(s, 0.99)),
		MaxMS: ms(percentile(s, 1)),
	}
}

// percentile returns the nearest-rank q-quantile (0 < q <= 1) of sorted.
func percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

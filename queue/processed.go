package queue

import (
	"context"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"
)

// ProcessedTotal returns asynq's running count of the attempts of queue q
// that ended, successes and failures alike (asynq v0.26's
// asynq:{q}:processed, which asynq resets to 1 when it would overflow): 0
// before the first. One GET, cheap enough to poll; `agentq bench` polls it
// to time a worker process it cannot hook.
func ProcessedTotal(ctx context.Context, rdb redis.UniversalClient, q string) (int64, error) {
	n, err := rdb.Get(ctx, asynqProcessedTotalKey(q)).Int64()
	switch {
	case errors.Is(err, redis.Nil):
		return 0, nil
	case err != nil:
		return 0, fmt.Errorf("processed count of queue %s: %w", q, err)
	}
	return n, nil
}

package runs

import (
	"strconv"
	"sync"

	"github.com/agentq/agentq/jobs"
)

// The state cache: a worker that moved a run on (stored a step's success
// and queued the next step) keeps the state it wrote, and the next step's
// task carries that state's version (jobs.HeaderRunVersion). When the same
// process takes that task and the version still matches, the middleware
// starts from the kept state instead of reading it: the compare and set of
// its first write checks that nothing changed meanwhile (a cancel, another
// worker), and reads the state again when something did. So a run whose
// steps stay on one worker costs no read per step; a step on another
// worker, or after any other change, costs the read it always did.
const (
	// cacheMaxBytes bounds the states kept, by their documents' and
	// outputs' sizes.
	cacheMaxBytes = 64 << 20
	// cacheMaxEntry is the largest state kept.
	cacheMaxEntry = 4 << 20
)

type stateCache struct {
	mu    sync.Mutex
	m     map[string]cached
	bytes int
}

type cached struct {
	l    *loaded
	size int
}

func sizeOf(l *loaded) int {
	n := len(l.raw)
	for k, o := range l.outputs {
		n += len(k) + len(o)
	}
	return n
}

// get returns the kept state of s's run when its version is the one s's
// task was queued at, nil otherwise.
func (c *stateCache) get(s *jobs.Step) *loaded {
	v, err := strconv.ParseInt(s.Headers[jobs.HeaderRunVersion], 10, 64)
	if err != nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[s.RunID]
	if !ok || e.l.version != v {
		return nil
	}
	return e.l
}

// put keeps l, the state this process wrote, in place of an older one; a
// finished run's state is dropped instead. The loaded values are never
// changed after they are built, so sharing them is safe.
func (c *stateCache) put(id string, l *loaded) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.m[id]; ok {
		c.bytes -= old.size
		delete(c.m, id)
	}
	if l == nil || l.doc == nil || (l.doc.Status.Terminal() && l.doc.Status != StatusFailed) {
		return
	}
	size := sizeOf(l)
	if size > cacheMaxEntry {
		return
	}
	for id2, e := range c.m { // evict arbitrary entries until it fits
		if c.bytes+size <= cacheMaxBytes {
			break
		}
		c.bytes -= e.size
		delete(c.m, id2)
	}
	if c.m == nil {
		c.m = map[string]cached{}
	}
	c.m[id] = cached{l: l, size: size}
	c.bytes += size
}

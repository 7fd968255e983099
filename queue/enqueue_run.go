package queue

// What package runs needs to know about where a run step's task lands
// before it enqueues it: its run state records the step's queue and task
// id at the change that decides the enqueue, so that a cancel can delete
// the task and `agentq run show` can name it.

// QueueFor returns the queue an enqueue with o goes to: o.Queue, else the
// queue of o.Workflow, else the client's default queue. It does not check
// that the workflow is configured (Enqueue does).
func (c *Client) QueueFor(o EnqueueOptions) string {
	if o.Queue != "" {
		return o.Queue
	}
	if wf, ok := c.cfg.Workflows[o.Workflow]; ok && o.Workflow != "" && wf.Queue != "" {
		return wf.Queue
	}
	return c.cfg.Queue
}

// TaskIDForKey returns the task id the first enqueue of idempotency key key
// in queue q gets (what Enqueue derives from an EnqueueOptions.Key).
func TaskIDForKey(q, key string) string { return taskIDForKey(q, key) }

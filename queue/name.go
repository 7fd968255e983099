package queue

// ValidQueueName reports why q cannot name a queue: empty, longer than 128
// bytes, not UTF-8, holding a control character, a space, ':', '{' or
// '}'. It is the rule Enqueue applies, for packages that check queue names
// in configuration before anything is enqueued.
func ValidQueueName(q string) error { return validQueueName(q) }

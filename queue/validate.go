package queue

// Exported checks of the settings NewClient and NewWorker refuse, so that
// package config applies the same rules to the keys it loads (one rule per
// field, kept here).

// Validate reports the first setting of c that NewClient refuses, after
// filling its defaults (zero fields are valid). Messages start with the
// setting's snake_case name.
func (c ClientConfig) Validate() error { return c.withDefaults().validate() }

// Validate reports the first setting of c that NewWorker refuses, after
// filling its defaults (zero fields are valid). Messages start with the
// setting's snake_case name.
func (c WorkerConfig) Validate() error { return c.withDefaults().validate() }

// CheckQueueName reports why q cannot name a queue: empty, a space, ':',
// '{' or '}' (asynq's keys embed it, in a hash tag), a control character,
// invalid UTF-8, or longer than 128 bytes.
func CheckQueueName(q string) error { return validQueueName(q) }

package ledger

// Validate reports the first setting of c that New refuses, after filling
// its defaults (zero fields are valid). Messages start with the setting's
// snake_case name; package config applies them to the ledger.* keys.
func (c Config) Validate() error { return c.withDefaults().validate() }

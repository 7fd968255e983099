package budget

import "time"

// WindowMin is the shortest budget window: the short window (a twelfth)
// then still spans whole one-second buckets.
const WindowMin = 10 * time.Second

// Validate reports the first setting of p that New refuses, after filling
// its defaults (zero fields other than SLO are valid). Messages start with
// the setting's snake_case name; package config applies them to the
// workflows.<name>.budget keys.
func (p Policy) Validate() error { return p.withDefaults().validate() }

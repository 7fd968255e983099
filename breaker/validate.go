package breaker

// Validate reports the first setting of s that New refuses, after taking
// zero fields from the defaults. Messages start with the setting's
// snake_case name; package config applies them to the breakers.* keys.
func (s Settings) Validate() error {
	return s.merge(Settings{
		Failures: FailuresDefault, FailureRate: FailureRateDefault, RateWindow: RateWindowDefault,
		MinCalls: MinCallsDefault, Cooldown: CooldownDefault,
	}).validate()
}

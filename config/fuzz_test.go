package config

import (
	"bytes"
	"errors"
	"math"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// fuzzFile is the name the fuzzed config file is loaded under.
const fuzzFile = "/fuzz/agentq.yaml"

// checkLoadError asserts that every problem of a failed Load starts with
// "config: " and names a key or the file (or an environment variable when
// env is set).
func checkLoadError(t *testing.T, err error, env bool) {
	t.Helper()
	for _, e := range unwrapJoined(err) {
		msg := e.Error()
		var fe *FieldError
		switch {
		case !strings.HasPrefix(msg, "config: "):
			t.Fatalf("error %q does not start with \"config: \"", msg)
		case errors.As(e, &fe):
			if fe.Key == "" || !strings.Contains(msg, fe.Key) {
				t.Fatalf("field error %q does not name its key", msg)
			}
		case strings.Contains(msg, fuzzFile):
		case env && strings.Contains(msg, "environment variable "):
		default:
			t.Fatalf("error %q names neither a key nor the file", msg)
		}
	}
}

// stringsOf returns every string held in v (fields, slice items, map keys
// and values), for looking for a secret whatever the output's escaping.
func stringsOf(v reflect.Value, out *[]string) {
	switch v.Kind() {
	case reflect.String:
		*out = append(*out, v.String())
	case reflect.Struct:
		for i := range v.NumField() {
			stringsOf(v.Field(i), out)
		}
	case reflect.Slice:
		for i := range v.Len() {
			stringsOf(v.Index(i), out)
		}
	case reflect.Map:
		for _, k := range v.MapKeys() {
			stringsOf(k, out)
			stringsOf(v.MapIndex(k), out)
		}
	}
}

// shown is everything a printed config shows: the strings of Masked and the
// YAML output.
func shown(t *testing.T, c Config) string {
	t.Helper()
	var ss []string
	stringsOf(reflect.ValueOf(c.Masked()), &ss)
	var y bytes.Buffer
	if err := c.WriteYAML(&y); err != nil {
		t.Fatalf("WriteYAML: %v", err)
	}
	return strings.Join(ss, "\n") + "\n" + y.String()
}

// FuzzLoadConfigFile loads any bytes as agentq.yaml: Load never panics; a
// rejection names a key or the file; an accepted config validates, prints
// and loads back as its masked self, and shows no secret. A second config,
// built from a template with the fuzzed secret in every secret place (plain
// fields, a URL's password, secret query values), must never show or report
// that secret.
func FuzzLoadConfigFile(f *testing.F) {
	for _, s := range []struct{ file, secret string }{
		{"", "pw"},
		{"retry:\n  base: 2s\n  max: 1m\n", "hunter2"},
		{secretBundle.file, "url-secret-1"},
		{"retyr:\n  base: 1s\n", "x"},
		{"redis:\n  url: redis://app:%zz@cache:6379/0\n", "%zz"},
		{"redis:\n  url: http://a/%zz\n", "a/%zz"},
		{"worker:\n  queues: {Critical: 6, low: 1}\n  concurrency: 1e3\n", "p@ss/word?x=1#f"},
		{"workflows:\n  Review.PR:\n    retry: {base: 2s}\n    budget: {slo: 0.99}\n", "s3cr3t"},
		{"breakers:\n  overrides:\n    api.example.com:\n      cooldown: 5s\n", "tok en"},
		{"a: &a [*a]\n", "\x00"},
		{"- 1\n- 2\n", "é"},
		{"retry: {base: 1s, base: 2s}\n", "****"},
		{"redis:\n  tls: 3\n", "\n"},
		{"{", "}"},
		{"log:\n  level: !!binary aGk=\n", "hi"},
		{runsFile, "sk-live"},
		{"workflows:\n  a:\n    steps:\n      - {name: s, kind: noop, payload: {x: [1, -0.0, 1e21, 0x10, 18446744073709551615, ~, yes, 2001-12-14]}}\n", "k"},
		{"workflows:\n  a:\n    steps:\n      - {name: s, kind: noop, payload: {1: x}}\n", "k"},
		{"workflows:\n  a:\n    steps:\n      - {name: s, kind: noop, payload: &p {x: *p}}\n", "k"},
		{"llm:\n  providers:\n    p.x: {base_url: \"https://u:pw@h/v1\"}\n", "pw"},
	} {
		f.Add([]byte(s.file), s.secret, uint8(0))
	}
	f.Fuzz(func(t *testing.T, data []byte, secret string, shape uint8) {
		cfg, err := load(Options{Environ: []string{}}, fuzzFile, data)
		if err != nil {
			checkLoadError(t, err, false)
		} else {
			if verr := cfg.Validate(); verr != nil {
				t.Fatalf("Load accepted a config that Validate rejects: %v", verr)
			}
			out := shown(t, cfg)
			for _, s := range []string{cfg.Redis.Password, cfg.Dashboard.BasicAuthPassword, cfg.Dashboard.BearerToken} {
				if s == "" || strings.Contains(mask, s) {
					continue
				}
				clean := cfg
				clean.Redis.Password, clean.Dashboard.BasicAuthPassword, clean.Dashboard.BearerToken = "", "", ""
				if strings.Contains(out, s) && !strings.Contains(shown(t, clean), s) {
					t.Fatalf("printed config shows the secret %q:\n%s", s, out)
				}
			}
			var y bytes.Buffer
			if err := cfg.WriteYAML(&y); err != nil {
				t.Fatal(err)
			}
			back, err := load(Options{Environ: []string{}}, fuzzFile, y.Bytes())
			if err != nil {
				t.Fatalf("printed config does not load back: %v\n%s", err, y.String())
			}
			if !reflect.DeepEqual(withoutOrigins(back), withoutOrigins(cfg.Masked())) {
				t.Fatalf("printed config loads back as\n%+v\nwant\n%+v\n%s", back, cfg.Masked(), y.String())
			}
		}

		if secret == "" {
			return
		}
		// The same template with a neutral secret tells what the template
		// itself shows, so that a secret like "redis" is not a false alarm.
		withS, errS := load(Options{Environ: []string{}}, fuzzFile, secretTemplate(t, secret, shape))
		withP, errP := load(Options{Environ: []string{}}, fuzzFile, secretTemplate(t, "Zq9Placeholder", shape))
		if errP != nil {
			t.Fatalf("template with a neutral secret is rejected: %v", errP)
		}
		escaped := []string{secret, url.QueryEscape(secret), url.PathEscape(secret), url.UserPassword("u", secret).String()[2:]}
		if errS != nil {
			checkLoadError(t, errS, false)
			for _, s := range escaped {
				if strings.Contains(errS.Error(), s) && !strings.Contains(mask+fuzzFile, s) && !strings.Contains(errP.Error()+shown(t, withP), s) {
					t.Fatalf("error shows the secret %q: %v", s, errS)
				}
			}
			return
		}
		out, neutral := shown(t, withS), shown(t, withP)
		for _, s := range escaped {
			if strings.Contains(out, s) && !strings.Contains(neutral, s) {
				t.Fatalf("printed config shows the secret (as %q):\n%s", s, out)
			}
		}
	})
}

// secretTemplate is a config file with secret in every secret place; shape
// picks the form of redis.url.
func secretTemplate(t *testing.T, secret string, shape uint8) []byte {
	t.Helper()
	user := url.UserPassword("app", secret).String()
	q := url.QueryEscape(secret)
	urls := []string{
		"redis://" + user + "@cache:6379/0",
		"rediss://" + user + "@s1:26380/1?master_name=mymaster&password=" + q,
		"redis-sentinel://:" + url.PathEscape(secret) + "@s1:26379,s2:26379/0?master=mymaster",
		"unix://" + user + "@/tmp/redis.sock?db=2",
	}
	doc := map[string]any{
		"redis":     map[string]any{"url": urls[int(shape)%len(urls)], "password": secret},
		"dashboard": map[string]any{"basic_auth_user": "admin", "basic_auth_password": secret, "bearer_token": secret},
		"alerts":    map[string]any{"webhook_url": "https://hooks.example.com/services/" + url.PathEscape(secret) + "?token=" + q},
	}
	b, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// FuzzEnv loads any set of environment entries ("K=V" lines) with planted
// secrets: Load never panics; every problem names a key or the variable;
// warnings name the variable; no planted value (a secret setting, a near
// miss of one, an unknown variable) appears in an error or a warning.
func FuzzEnv(f *testing.F) {
	for _, s := range []struct{ entries, secret string }{
		{"", "pw"},
		{"AGENTQ_RETRY_BASE=2s\nAGENTQ_WORKER_CONCURRENCY=3", "hunter2"},
		{"AGENTQ_REDIS_ULR=redis://x:6379/0", "s3cret"},
		{"AGENTQ_redis_url=redis://x\nAGENTQ_RETRY_BAS=1s", "x"},
		{"AGENTQ_WORKFLOWS=a\nAGENTQ_BREAKERS_OVERRIDES_X_COOLDOWN=1s", "y"},
		{"AGENTQ_DASHBOARD_PASSWORD=p\nAGENTQ_DASHBOARD_USER=u", "p"},
		{"AGENTQ_WORKER_QUEUES=a=1,a=2\nAGENTQ_RETRY_MAX=-1s", "a=1"},
		{"AGENTQ_REDIS_URL=redis://app:%zz@cache:6379/0", "%zz"},
		{"AGENTQ_=1\n=AGENTQ\nAGENTQ_X\x00=1", "\x00"},
		{"AGENTQ_BENCH_FULL=1\nAGENTQ_TEST_X=1\nAGENTQ_E2E_DEAD=9", "9"},
	} {
		f.Add(s.entries, s.secret)
	}
	f.Fuzz(func(t *testing.T, entries, secret string) {
		planted := func(v string) []string {
			env := strings.Split(entries, "\n")
			return append(env, "AGENTQ_REDIS_PASSWORD="+v, "AGENTQ_DASHBOARD_BEARER_TOKEN="+v,
				"AGENTQ_REDIS_PASWORD="+v, "AGENTQ_NOT_A_SETTING="+v)
		}
		run := func(env []string) (string, error) {
			var warnings []string
			_, err := load(Options{Environ: env, Warn: func(m string) { warnings = append(warnings, m) }}, "", nil)
			for _, w := range warnings {
				if !strings.HasPrefix(w, "config: environment variable ") {
					t.Fatalf("warning %q does not name the variable", w)
				}
			}
			return strings.Join(warnings, "\n"), err
		}
		warned, err := run(planted(secret))
		if secret == "" {
			// Empty values are not read: nothing is planted.
			if err != nil {
				checkLoadError(t, err, true)
			}
			return
		}
		if err == nil {
			t.Fatal("Load accepted AGENTQ_REDIS_PASWORD, a near miss")
		}
		checkLoadError(t, err, true)
		if !strings.Contains(err.Error(), "AGENTQ_REDIS_PASWORD (did you mean AGENTQ_REDIS_PASSWORD?)") {
			t.Fatalf("the near miss is not named: %v", err)
		}
		// What the same entries show with a neutral value tells whether
		// the secret's text is there anyway.
		warnedP, errP := run(planted("Zq9Placeholder"))
		neutral := warnedP + "\n" + errP.Error() + "\n" + mask
		if (strings.Contains(err.Error(), secret) || strings.Contains(warned, secret)) && !strings.Contains(neutral, secret) {
			t.Fatalf("a planted value shows:\nerror: %v\nwarnings: %s", err, warned)
		}
	})
}

// FuzzDurationFlag parses any text as a duration setting: convert never
// panics, an accepted duration round-trips through formatDuration (the form
// `agentq config` prints), and Load, given the text for every duration key
// in the environment, either names each bad key and its variable or accepts
// only values the keys allow (positive, or non-negative for dlq.retention_age).
func FuzzDurationFlag(f *testing.F) {
	for _, s := range []string{"1s", "10m", "1h30m", "0", "0s", "-1s", "1.5h", "30", "1e3", " 2s ", "",
		"9223372036854775807ns", "9223372036854775808ns", "2562047h47m16.854775807s", "1µs", "1us", "+5m", ".5s", "1h-1m", "\x00"} {
		f.Add(s)
	}
	var keys []string
	for _, fl := range fields {
		if fl.kind == kindDuration {
			keys = append(keys, fl.key)
		}
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, problem := convert(kindDuration, s, nil, false)
		if problem != "" {
			if !strings.Contains(problem, "duration") {
				t.Fatalf("rejection %q does not say a duration is wanted", problem)
			}
		} else {
			d := v.(time.Duration)
			back, problem := convert(kindDuration, formatDuration(d), nil, false)
			if problem != "" || back.(time.Duration) != d {
				t.Fatalf("%q -> %v -> %q -> %v %q: no round trip", s, d, formatDuration(d), back, problem)
			}
		}
		env := make([]string, 0, len(keys))
		for _, k := range keys {
			env = append(env, envName(k)+"="+s)
		}
		cfg, err := load(Options{Environ: env}, "", nil)
		if err != nil {
			checkLoadError(t, err, true)
			return
		}
		rv := reflect.ValueOf(cfg)
		for _, k := range keys {
			d := time.Duration(rv.FieldByIndex(fieldByKey[k].index).Int())
			if d < 0 || (d == 0 && strings.TrimSpace(s) != "" && k != "dlq.retention_age") {
				t.Fatalf("Load accepted %s = %v from %q", k, d, s)
			}
		}
	})
}

// FuzzRateFlag parses any text as a rate or ratio setting (budget.slo,
// breakers.failure_rate): convert never panics, an accepted number is finite
// and round-trips through formatFloat, and Load accepts a failure rate only
// in (0, 1], naming the key and variable otherwise.
func FuzzRateFlag(f *testing.F) {
	for _, s := range []string{"0.5", "1", "0", "-0", "1.0000001", "1e-300", "NaN", "Inf", "-Inf", "0x1p-2", "5e-324", " .99 ", "", "1_0", "99%"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, problem := convert(kindFloat, s, nil, false)
		if problem != "" {
			if !strings.Contains(problem, "not a number") {
				t.Fatalf("rejection %q does not say a number is wanted", problem)
			}
		} else {
			x := v.(float64)
			if math.IsNaN(x) || math.IsInf(x, 0) {
				t.Fatalf("%q accepted as %v", s, x)
			}
			back, problem := convert(kindFloat, formatFloat(x), nil, false)
			if problem != "" || back.(float64) != x {
				t.Fatalf("%q -> %v -> %q -> %v %q: no round trip", s, x, formatFloat(x), back, problem)
			}
		}
		cfg, err := load(Options{Environ: []string{"AGENTQ_BREAKERS_FAILURE_RATE=" + s}}, "", nil)
		if err != nil {
			checkLoadError(t, err, true)
			if !strings.Contains(err.Error(), "breakers.failure_rate") || !strings.Contains(err.Error(), "AGENTQ_BREAKERS_FAILURE_RATE") {
				t.Fatalf("error does not name the key and variable: %v", err)
			}
			return
		}
		if r := cfg.Breakers.FailureRate; !(r > 0 && r <= 1) {
			t.Fatalf("Load accepted breakers.failure_rate = %v from %q", r, s)
		}
	})
}

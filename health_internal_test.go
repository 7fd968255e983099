package agentq

import (
	"strings"
	"testing"
)

func TestHealthzURLErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, in, want, never string }{
		{"no scheme echoed", "127.0.0.1:18090", `dashboard URL "127.0.0.1:18090" has no scheme: want http://host:port or https://host:port (e.g. "http://127.0.0.1:18090")`, ""},
		{"no scheme, password masked", "u:s3cret@127.0.0.1:1", `"u:****@127.0.0.1:1" has no scheme`, "s3cret"},
		{"other scheme", "ftp://h:1", `dashboard URL "ftp://h:1" has scheme "ftp"`, ""},
		{"other scheme, password masked", "ftp://u:s3cret@h:1", `"ftp://u:****@h:1" has scheme "ftp"`, "s3cret"},
		{"no host", "http:///healthz", `dashboard URL "http:///healthz" has no host`, ""},
		{"unparsable, password masked", "http://u:s3cret@h:1:x%zz", `"http://u:****@h:1:x%zz" does not parse`, "s3cret"},
		{"password with #", "http://admin:s3cr#t@host:8080", `"http://admin:****@host:8080" does not parse`, "s3cr"},
		{"password with ?", "http://admin:s3?cr@host:8080", `"http://admin:****@host:8080" does not parse`, "s3?cr"},
		{"no scheme, password with #", "admin:s3cr#t@host:8080", `"admin:****@host:8080" has no scheme`, "s3cr"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := healthzURL(tc.in)
			if err == nil || !strings.Contains(err.Error(), tc.want) || (tc.never != "" && strings.Contains(err.Error(), tc.never)) {
				t.Fatalf("healthzURL(%q) = %v, want %q", tc.in, err, tc.want)
			}
		})
	}
	if u, err := healthzURL("http://u:p@127.0.0.1:8080/"); err != nil || u.String() != "http://u:p@127.0.0.1:8080/healthz" {
		t.Fatalf("healthzURL of a good URL = %v, %v", u, err)
	}
	// A password with an unescaped '@' and '/' parses (as a wrong host and
	// path); what is shown of it still masks all of the password.
	if got := maskedURL("http://admin:p@ss/w@host:1"); got != "http://admin:****@host:1" {
		t.Fatalf("maskedURL of a password holding @ and / = %q", got)
	}
}

// FuzzMaskedURL: whatever is typed, a userinfo password never shows.
func FuzzMaskedURL(f *testing.F) {
	for _, s := range []string{"127.0.0.1:18090", "u:pw@h:1", "http://u:pw@h:1/x", "ftp://u:pw@h", "http://u:pw@h:1:x%zz", "a@b@c:d", "s3cr#t", "p@ss/w", "a?b#c@d"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, pw string) {
		// Any password, '@', '/', '?', '#' and ':' included, but one that
		// starts with "//": "u://pw@h" is a URL of scheme u with user pw.
		if pw == "" || strings.HasPrefix(pw, "//") {
			return
		}
		for _, tmpl := range []string{"u:PW@h:1", "http://u:PW@h:1/p", "http://u:PW@h:1:x%zz", "ftp://u:PW@h"} {
			raw := strings.Replace(tmpl, "PW", pw, 1)
			if got, want := maskedURL(raw), strings.Replace(tmpl, "PW", "****", 1); got != want {
				t.Fatalf("maskedURL(%q) = %q, want %q", raw, got, want)
			}
			// The error may hold pw only as a piece of its fixed words.
			const words = `health: dashboard URL "" has no scheme: want http://host:port or https://host:port (e.g. "http://") does not parse has scheme "" no host`
			_, err := healthzURL(raw)
			if err != nil && len(pw) >= 4 && !strings.Contains(words+" "+strings.Replace(tmpl, "PW", "****", 1), pw) && strings.Contains(err.Error(), pw) {
				t.Fatalf("healthzURL(%q): %v shows the password", raw, err)
			}
		}
	})
}

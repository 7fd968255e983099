package agentq

import (
	"strings"
	"testing"
)

func TestHealthzURLErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, in, want, never string }{
		{"no scheme echoed", "127.0.0.1:18090", `dashboard URL "127.0.0.1:18090" has no scheme: want http://host:port or https://host:port (e.g. "http://127.0.0.1:18090")`, ""},
		{"no scheme, password masked", "u:s3cret@127.0.0.1:1", `"u:xxxxx@127.0.0.1:1" has no scheme`, "s3cret"},
		{"other scheme", "ftp://h:1", `dashboard URL "ftp://h:1" has scheme "ftp"`, ""},
		{"other scheme, password masked", "ftp://u:s3cret@h:1", `"ftp://u:xxxxx@h:1" has scheme "ftp"`, "s3cret"},
		{"no host", "http:///healthz", `dashboard URL "http:///healthz" has no host`, ""},
		{"unparsable, password masked", "http://u:s3cret@h:1:x%zz", `"http://u:xxxxx@h:1:x%zz" does not parse`, "s3cret"},
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
}

// FuzzMaskedURL: whatever is typed, a userinfo password never shows.
func FuzzMaskedURL(f *testing.F) {
	for _, s := range []string{"127.0.0.1:18090", "u:pw@h:1", "http://u:pw@h:1/x", "ftp://u:pw@h", "http://u:pw@h:1:x%zz", "a@b@c:d"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, pw string) {
		if len(pw) < 4 || strings.ContainsAny(pw, ":@/?#%") || strings.Contains("xxxxx http://u:@h:1/p:x%zz ftp://health: dashboard URL", pw) {
			return
		}
		for _, raw := range []string{"u:" + pw + "@h:1", "http://u:" + pw + "@h:1/p", "http://u:" + pw + "@h:1:x%zz", "ftp://u:" + pw + "@h"} {
			if got := maskedURL(raw); strings.Contains(got, pw) {
				t.Fatalf("maskedURL(%q) = %q shows the password", raw, got)
			}
			if _, err := healthzURL(raw); err != nil && strings.Contains(err.Error(), pw) {
				t.Fatalf("healthzURL(%q): %v shows the password", raw, err)
			}
		}
	})
}

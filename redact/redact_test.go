package redact

import (
	"encoding/json"
	"net/url"
	"strings"
	"testing"
	"time"
)

func TestRedactor(t *testing.T) {
	t.Parallel()
	r := New([]string{"X-Session"}, []string{"Sig"})
	tests := []struct {
		name string
		fn   func(string) string
		in   string
		want string
	}{
		{name: "header authorization", fn: func(v string) string { return r.Header("authorization", v) },
			in: "Bearer abc", want: "****"},
		{name: "header cookie", fn: func(v string) string { return r.Header("Cookie", v) }, in: "a=b", want: "****"},
		{name: "header x-api-key", fn: func(v string) string { return r.Header("X-API-KEY", v) }, in: "k", want: "****"},
		{name: "header extra", fn: func(v string) string { return r.Header("x-session", v) }, in: "s", want: "****"},
		{name: "header plain", fn: func(v string) string { return r.Header("Accept", v) },
			in: "application/json", want: "application/json"},
		{name: "header plain with bearer", fn: func(v string) string { return r.Header("X-Forwarded", v) },
			in: "Bearer abc.def", want: "Bearer ****"},

		{name: "url password", fn: r.URL, in: "https://u:pw@h/p", want: "https://u:****@h/p"},
		{name: "url bare token userinfo", fn: r.URL, in: "https://ghp_abc@h/p", want: "https://****@h/p"},
		{name: "url query", fn: r.URL, in: "https://h/p?a=1&API_KEY=s&b=2&token=t&sig=x",
			want: "https://h/p?a=1&API_KEY=****&b=2&token=****&sig=****"},
		{name: "url escaped name", fn: r.URL, in: "https://h/?api%5Fkey=s", want: "https://h/?api%5Fkey=****"},
		{name: "url fragment", fn: r.URL, in: "https://h/cb#access_token=t&state=1",
			want: "https://h/cb#access_token=****&state=1"},
		{name: "url not a secret", fn: r.URL, in: "https://h/p?monkey=1&keys=2", want: "https://h/p?monkey=1&keys=2"},
		{name: "url unparsable", fn: r.URL, in: "http://a b/?password=pw", want: "http://a b/?password=****"},
		{name: "url query header name", fn: r.URL, in: "https://h/?X-Api-Key=k&a=1", want: "https://h/?X-Api-Key=****&a=1"},

		{name: "path with colon", fn: r.URL, in: "https://api.telegram.org/bot123456:SECRETTOKEN/sendMessage",
			want: "https://api.telegram.org/****/sendMessage"},
		{name: "path with escaped colon", fn: r.URL, in: "https://h/bot1%3Asecret/x", want: "https://h/****/x"},
		{name: "path long token", fn: r.URL, in: "https://hooks.example.com/services/T0123/B0456/aB3dE5gH7jK9mN1pQ3sT5vX7",
			want: "https://hooks.example.com/services/T0123/B0456/****"},
		{name: "path after a field name", fn: r.URL, in: "https://h/api/token/abc/x?a=1", want: "https://h/api/token/****/x?a=1"},
		{name: "path after key", fn: r.URL, in: "https://h/KEY/k1", want: "https://h/KEY/****"},
		{name: "path after an extra field", fn: r.URL, in: "https://h/sig/s1/ok", want: "https://h/sig/****/ok"},
		{name: "path after a header name", fn: r.URL, in: "https://h/x-api-key/k1", want: "https://h/x-api-key/****"},
		{name: "path readable", fn: r.URL, in: "https://h/v1/orders/42?mode=fast", want: "https://h/v1/orders/42?mode=fast"},
		{name: "path short", fn: r.URL, in: "http://127.0.0.1:8080/flaky", want: "http://127.0.0.1:8080/flaky"},
		{name: "path long letters only", fn: r.URL, in: "https://h/docs/getting-started-with-agentq",
			want: "https://h/docs/getting-started-with-agentq"},
		{name: "path not after a secret name", fn: r.URL, in: "https://h/keys/k1", want: "https://h/keys/k1"},
		{name: "path unparsable", fn: r.URL, in: "http://a b/bot1:secret/x?token=t", want: "http://a b/****/x?token=****"},
		{name: "fragment unparsable", fn: r.URL, in: "http://a b/cb#access_token=f&state=1",
			want: "http://a b/cb#access_token=****&state=1"},
		{name: "path unparsable userinfo", fn: r.URL, in: "http://u:pw@a b/x", want: "http://u:****@a b/x"},
		// A password may hold an unescaped '/', '?' or '#'.
		{name: "userinfo password with question mark", fn: r.URL, in: "postgres://admin:pa?ss@db/app", want: "postgres://admin:****@db/app"},
		{name: "userinfo password with hash", fn: r.URL, in: "http://u:pa#ss@h/", want: "http://u:****@h/"},
		{name: "userinfo base64 password with slash", fn: r.URL, in: "redis://:abc/def+ghi@host/0", want: "redis://:****@host/0"},
		{name: "userinfo password with slash and at", fn: r.URL, in: "postgres://u:p/a@b@host/db?x=1", want: "postgres://u:****@host/db?x=1"},
		{name: "userinfo password with slash in text", fn: r.Text, in: "dial redis://:abc/def@host/0: refused", want: "dial redis://:****@host/0: refused"},
		{name: "userinfo ends before white space", fn: r.URL, in: "http://u:p/x y@z", want: "http://u:p/x y@z"},
		{name: "email in query keeps host", fn: r.URL, in: "https://h/p?email=a@b.c", want: "https://h/p?email=a@b.c"},
		{name: "email in query after a port keeps host", fn: r.URL, in: "http://localhost:8080/api?user=a@b.c&n=1", want: "http://localhost:8080/api?user=a@b.c&n=1"},
		{name: "email in path after a port masks the port", fn: r.URL, in: "http://h:8080/users/a@b.c", want: "http://h:****@b.c"},
		{name: "email in query with userinfo", fn: r.URL, in: "https://u:p@h/?email=a@b.c", want: "https://u:****@h/?email=a@b.c"},
		{name: "ipv6 host and an at in the query", fn: r.URL, in: "http://[::1]:80/?e=a@b", want: "http://[::1]:80/?e=a@b"},
		{name: "userinfo password with at and slash", fn: r.URL, in: "redis://u:p@ss/w@rd@cache/0", want: "redis://u:****@cache/0"},
		{name: "userinfo password with at, then a query with an at", fn: r.URL, in: "https://u:p@h/x?e=a@b", want: "https://u:****@h/x?e=a@b"},
		{name: "bare token then an at in the path", fn: r.URL, in: "https://TOKEN@h/@me", want: "https://****@h/@me"},
		{name: "redis token parameter", fn: r.URL, in: "redis://h:6379/0?token=t1", want: "redis://h:6379/0?token=****"},
		{name: "redis sentinel password", fn: r.URL, in: "redis://h:6379/0?sentinel_password=p", want: "redis://h:6379/0?sentinel_password=****"},
		{name: "pass parameter", fn: r.URL, in: "https://h/?user=u&pass=p", want: "https://h/?user=u&pass=****"},
		{name: "pass field is no secret", fn: r.Text, in: `{"pass":"3 of 4"}`, want: `{"pass":"3 of 4"}`},

		{name: "host only", fn: r.HostOnly, in: "https://h/p?a=1&flag&b=2#frag", want: "https://h/****?a=****&****&b=****#****"},
		{name: "host only userinfo", fn: r.HostOnly, in: "https://u:pw@hooks.example.com/T0/SECRET", want: "https://u:****@hooks.example.com/****"},
		{name: "host only at in path", fn: r.HostOnly, in: "https://hooks.example.com/services/p@ss%2Fword?token=x", want: "https://hooks.example.com/****?token=****"},
		{name: "host only no path", fn: r.HostOnly, in: "https://h", want: "https://h"},
		{name: "host only no scheme", fn: r.HostOnly, in: "hooks.example.com/T0/SECRET", want: "****"},

		{name: "typed", fn: r.TypedURL, in: "http://u:pw@h:1/p", want: "http://u:****@h:1/p"},
		{name: "typed no scheme", fn: r.TypedURL, in: "u:s3cret@127.0.0.1:1", want: "u:****@127.0.0.1:1"},
		{name: "typed no scheme, no userinfo", fn: r.TypedURL, in: "127.0.0.1:18090", want: "127.0.0.1:18090"},
		{name: "typed password with at and slash", fn: r.TypedURL, in: "http://admin:p@ss/w@host:1", want: "http://admin:****@host:1"},
		{name: "typed password with hash", fn: r.TypedURL, in: "admin:s3cr#t@host:8080", want: "admin:****@host:8080"},
		{name: "typed secret parameter", fn: r.TypedURL, in: "http://h:1/?token=t", want: "http://h:1/?token=****"},

		{name: "json string", fn: r.Text, in: `{"password":"x","user":"bob"}`, want: `{"password":"****","user":"bob"}`},
		{name: "json spaced, case, escapes", fn: r.Text, in: `{"Client_Secret" : "a\"b", "n": 1}`,
			want: `{"Client_Secret" : "****", "n": 1}`},
		{name: "json number", fn: r.Text, in: `{"key": 12345}`, want: `{"key": "****"}`},
		{name: "json extra field", fn: r.Text, in: `{"sig":"abc"}`, want: `{"sig":"****"}`},
		{name: "json not a secret", fn: r.Text, in: `{"monkey":"x","keys":"y"}`, want: `{"monkey":"x","keys":"y"}`},
		{name: "json escaped in a string", fn: r.Text, in: `"{\"token\":\"abc\",\"x\":1}"`,
			want: `"{\"token\":\"****\",\"x\":1}"`},
		{name: "json cut short", fn: r.Text, in: `{"password":"abc`, want: `{"password":"****"`},
		{name: "pairs", fn: r.Text, in: "token=abc&x=1 then password=hunter2, monkey=3",
			want: "token=****&x=1 then password=****, monkey=3"},
		{name: "bearer", fn: r.Text, in: "Authorization: Bearer eyJ.abc-def_ghi==", want: "Authorization: Bearer ****"},
		{name: "plain text", fn: r.Text, in: "nothing to see", want: "nothing to see"},

		{name: "json echoed headers", fn: r.Text,
			in:   `{"headers":{"Authorization":"Basic dXNlcjpwYXNz","X-Api-Key":"abc","Accept":"*/*"}}`,
			want: `{"headers":{"Authorization":"****","X-Api-Key":"****","Accept":"*/*"}}`},
		{name: "json header arrays", fn: r.Text, in: `{"Cookie":["sid=1", "b=2"],"x-session":["s"],"n":1}`,
			want: `{"Cookie":"****","x-session":"****","n":1}`},
		{name: "json object value", fn: r.Text, in: `{"token":{"a":1,"b":2},"n":1}`, want: `{"token":"****","n":1}`},
		{name: "json escaped header", fn: r.Text, in: `"{\"X-Api-Key\":\"abc\"}"`, want: `"{\"X-Api-Key\":\"****\"}"`},
		{name: "header lines", fn: r.Text, in: "X-Api-Key: abc\nCookie: sid=s1; theme=dark\r\nAccept: */*",
			want: "X-Api-Key: ****\nCookie: ****\r\nAccept: */*"},
		{name: "header line basic", fn: r.Text, in: "Authorization: Basic dXNlcjpwYXNz", want: "Authorization: Basic ****"},
		{name: "header line extra", fn: r.Text, in: "got x-session:s1", want: "got x-session:****"},
		{name: "header line in a JSON string", fn: r.Text, in: `{"echo":"X-Api-Key: k1\nAccept: */*"}`,
			want: `{"echo":"X-Api-Key: ****\nAccept: */*"}`},
		{name: "header pairs", fn: r.Text, in: "X-Api-Key=abc&x=1&cookie=c", want: "X-Api-Key=****&x=1&cookie=****"},
		{name: "basic", fn: r.Text, in: "sent basic dXNlcjpwYXNz=", want: "sent basic ****"},
		{name: "header name in prose kept", fn: r.Text, in: "the cookie jar", want: "the cookie jar"},

		// pairs: one pass, whatever the number of '='.
		{name: "pairs run of equals", fn: r.Text, in: "=====", want: "====="},
		{name: "pairs name after equals", fn: r.Text, in: "a=a=token=x=y&b=1", want: "a=a=token=****&b=1"},
		{name: "pairs secret equals", fn: r.Text, in: "token=token=token=", want: "token=****"},
		{name: "pairs upper case", fn: r.Text, in: "PassWord=x", want: "PassWord=****"},
		// Quoted values run to the matching quote.
		{name: "pairs double-quoted", fn: r.Text, in: `password="hunter2" user=bob`, want: `password="****" user=bob`},
		{name: "pairs double-quoted with space", fn: r.Text, in: `password="hunter 2"`, want: `password="****"`},
		{name: "pairs single-quoted", fn: r.Text, in: `GET /?password='hunter2' 200`, want: `GET /?password='****' 200`},
		{name: "pairs escaped quotes", fn: r.Text, in: `{"log":"password=\"hunter2\" ok"}`, want: `{"log":"password=\"****\" ok"}`},
		{name: "pairs unmatched quote to end of line", fn: r.Text, in: "password=\"hunter 2\nnext", want: "password=\"****\nnext"},
		{name: "pairs empty quotes stay", fn: r.Text, in: `password="" a`, want: `password="" a`},
		{name: "pairs JSON string ending at equals", fn: r.Text, in: `{"q":"password=","n":"x"}`, want: `{"q":"password=","n":"x"}`},
		// name: value, as YAML and log lines write it.
		{name: "colon yaml", fn: r.Text, in: "user: bob\npassword: hunter2\napi_key: k1 k2\n", want: "user: bob\npassword: ****\napi_key: ****\n"},
		{name: "colon yaml indented list", fn: r.Text, in: "db:\n  - token: abc def\n", want: "db:\n  - token: ****\n"},
		{name: "colon yaml quoted", fn: r.Text, in: `secret: "a b"  # c`, want: `secret: "****"  # c`},
		{name: "colon log mid-line", fn: r.Text, in: "login user=bob password: hunter2 host=h", want: "login user=bob password: **** host=h"},
		{name: "colon prose masks a word", fn: r.Text, in: "the key: use it", want: "the key: **** it"},
		{name: "colon in a JSON string", fn: r.Text, in: `{"cfg":"password: a b\nuser: bob"}`, want: `{"cfg":"password: ****\nuser: bob"}`},
		{name: "colon needs a space", fn: r.Text, in: "cache key:abc token:1", want: "cache key:abc token:1"},
		{name: "colon not after a word byte", fn: r.Text, in: "Idempotency-Key: k1 monkey: 3", want: "Idempotency-Key: k1 monkey: 3"},
		{name: "colon JSON field stays JSON", fn: r.Text, in: `{"token": 5}`, want: `{"token": "****"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := tt.fn(tt.in); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestRedactorSecretNames(t *testing.T) {
	t.Parallel()
	r := New([]string{" ", "X-Extra"}, []string{""})
	for _, h := range []string{"Authorization", "proxy-authorization", "COOKIE", "Set-Cookie", "X-Api-Key", "x-auth-token", "x-extra"} {
		if !r.SecretHeader(h) {
			t.Errorf("SecretHeader(%q) = false, want true", h)
		}
	}
	for _, f := range []string{"token", "ACCESS_TOKEN", "refresh_token", "password", "secret", "api_key", "apikey", "client_secret", "key"} {
		if !r.SecretField(f) {
			t.Errorf("SecretField(%q) = false, want true", f)
		}
	}
	if r.SecretHeader("") || r.SecretField("") || r.SecretHeader("Accept") || r.SecretField("name") {
		t.Error("an empty or ordinary name is treated as secret")
	}
}

func TestRedactorJSON(t *testing.T) {
	t.Parallel()
	r := New([]string{"X-Session"}, []string{"sig"})
	tests := []struct {
		name   string
		in     string
		want   string
		wantOK bool
	}{
		{name: "http.call payload",
			in: `{"url":"https://h/bot1:tok/x?token=t&a=1","method":"POST",` +
				`"headers":{"Authorization":"Bearer b","x-session":["s"],"X-Trace":"t1"},"body":{"password":"p","n":1.50}}`,
			want: `{"body":{"n":1.50,"password":"****"},"headers":{"Authorization":"****","X-Trace":"t1","x-session":"****"},` +
				`"method":"POST","url":"https://h/****/x?token=****&a=1"}`,
			wantOK: true},
		{name: "secret names at any depth", in: `[{"a":{"SIG":{"x":1}}},{"api_key":null}]`,
			want: `[{"a":{"SIG":"****"}},{"api_key":"****"}]`, wantOK: true},
		{name: "JSON in a string", in: `{"body":"{\"token\":\"t\",\"n\":1}"}`,
			want: `{"body":"{\"token\":\"****\",\"n\":1}"}`, wantOK: true},
		{name: "text in a string", in: `{"note":"Authorization: Basic dXNlcjpwYXNz"}`,
			want: `{"note":"Authorization: Basic ****"}`, wantOK: true},
		{name: "no HTML escaping", in: `{"q":"a<b&c"}`, want: `{"q":"a<b&c"}`, wantOK: true},
		{name: "not JSON", in: `token=abc`},
		{name: "two values", in: `{} {}`},
		{name: "trailing garbage", in: `{"a":1} ]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, ok := r.JSON([]byte(tt.in))
			if ok != tt.wantOK || string(got) != tt.want {
				t.Errorf("JSON = %s, %v; want %s, %v", got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

func TestTextMasksURLsInFreeText(t *testing.T) {
	t.Parallel()
	r := New(nil, nil)
	got := r.Text(`tool failed: POST https://bob:hunter2@hooks.example.com/services/T0123ABCD/B0456EFGH/Xq9vLm2Zk8Pw4Rt6Yu1Io3Pa: 500; retry http://h/x?api_key=SECRET.`)
	for _, leak := range []string{"hunter2", "Xq9vLm2Zk8Pw4Rt6Yu1Io3Pa", "SECRET"} {
		if strings.Contains(got, leak) {
			t.Fatalf("Text leaked %q: %s", leak, got)
		}
	}
	if !strings.Contains(got, "hooks.example.com/services/") || !strings.Contains(got, ": 500;") {
		t.Fatalf("Text mangled the readable parts: %s", got)
	}
}

// TestRedactorTotal feeds every exported function the strings that made
// URL and Text call each other without end (a stack overflow that killed
// the CLI, workers, the dashboard and dlq list/show), and their relatives.
func TestRedactorTotal(t *testing.T) {
	t.Parallel()
	r := New(nil, nil)
	tests := []struct {
		name string
		in   string
		want string // URL's answer
	}{
		{name: "bad escape", in: "http://a/%zz", want: "http://a/%zz"},
		{name: "unclosed IPv6 host", in: "http://[::1", want: "http://[::1"},
		{name: "control byte and bad escape", in: "http://x/\x01?sig=%zz", want: "http://x/\x01?sig=****"},
		{name: "bad escape in a nested URL", in: "http://u:p@h/?next=http%3A%2F%2Fa%3Ab%40c%2F%zz",
			want: "http://u:****@h/?next=http://a:****@c/%zz"},
		{name: "many schemes", in: "http://http://http://a:b@c/://://x", want: "http://http:****@c/****//****//x"},
		{name: "schemes only", in: "a://b://c://d://e://f", want: "a://b://****//****//****//f"},
		{name: "invalid UTF-8", in: "http://\xff\xfe/%zz?token=\xff#sig=%", want: "http://\xff\xfe/%zz?token=****#sig=****"},
		{name: "bare separators", in: "http://:@/?&=#&=", want: "http://:@/?&=#&="},
		{name: "text with poison URLs", in: "see http://a/%zz and http://[::1 or token=abc",
			want: "see http://a/%zz and http://[::1 or token=****"},
		{name: "control byte before the authority's colon", in: "0A://\x06:#", want: "0A://\x06:#"},
		{name: "empty", in: "", want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := r.URL(tt.in); got != tt.want {
				t.Errorf("URL = %q, want %q", got, tt.want)
			}
			// Text, Header and JSON return, with bounded output.
			if got := r.Text("error: " + tt.in); len(got) > 3*len(tt.in)+16 {
				t.Errorf("Text = %q: too long", got)
			}
			if got := r.Header("Location", tt.in); got != r.Text(tt.in) {
				t.Errorf("Header(Location) = %q, want Text's %q", got, r.Text(tt.in))
			}
			if got := r.Header("Authorization", tt.in); got != Mask {
				t.Errorf("Header(Authorization) = %q, want %q", got, Mask)
			}
			doc, _ := json.Marshal(map[string]string{"url": tt.in, "error": tt.in})
			if out, ok := r.JSON(doc); !ok || !json.Valid(out) {
				t.Errorf("JSON(%s) = %s, %v; want valid JSON", doc, out, ok)
			}
		})
	}
}

// TestRedactorLinear feeds Text, URL, Header and JSON a large input of
// each adversarial shape (see adversarial) and checks that they return
// with bounded output. It times nothing: the deadline only keeps a broken
// build from hanging. A pass that rescans the rest of the input at each
// '=' took 14 s for 64 KiB and would take about 4 minutes per call here;
// the linear passes take 5 s for the whole set (10 s under the race
// detector, with inputs an eighth as large), so the 2-minute deadline
// leaves room for a loaded machine.
func TestRedactorLinear(t *testing.T) {
	if testing.Short() {
		t.Skip("large inputs")
	}
	t.Parallel()
	size := 256 << 10
	if raceEnabled {
		size = 32 << 10 // the race detector slows regexps tenfold
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for _, a := range adversarial {
			in := repeatTo(a.unit, size)
			doc, _ := json.Marshal(map[string]string{"body": in, "url": "http://h/?" + in})
			for _, fn := range []struct {
				name string
				in   string
				out  func() string
			}{
				{"Text", in, func() string { return r.Text(in) }},
				{"URL", in, func() string { return r.URL(in) }},
				{"Header", in, func() string { return r.Header("Location", in) }},
				{"JSON", string(doc), func() string { out, _ := r.JSON(doc); return string(out) }},
			} {
				if out := fn.out(); len(out) > 3*len(fn.in)+16 {
					t.Errorf("%s(%s): %d bytes out for %d in", fn.name, a.name, len(out), len(fn.in))
				}
			}
		}
	}()
	select {
	case <-done:
	case <-time.After(2 * time.Minute):
		t.Fatal("not done after 2 minutes: some pass is not linear")
	}
}

// TestJSONDepth checks that JSON's walk is bounded by encoding/json's own
// limit of 10000 nested values.
func TestJSONDepth(t *testing.T) {
	t.Parallel()
	r := New(nil, nil)
	tests := []struct {
		name   string
		depth  int
		open   string
		close  string
		wantOK bool
	}{
		{name: "arrays at the limit", depth: 10000, open: "[", close: "]", wantOK: true},
		{name: "objects at the limit", depth: 10000, open: `{"a":`, close: "}", wantOK: true},
		{name: "arrays past the limit", depth: 10001, open: "[", close: "]"},
		{name: "objects far past the limit", depth: 1000000, open: `{"a":`, close: "}"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			in := strings.Repeat(tt.open, tt.depth) + `"http://u:p@h/"` + strings.Repeat(tt.close, tt.depth)
			out, ok := r.JSON([]byte(in))
			if ok != tt.wantOK {
				t.Fatalf("JSON ok = %v, want %v", ok, tt.wantOK)
			}
			if ok && (!json.Valid(out) || !strings.Contains(string(out), `"http://u:****@h/"`)) {
				t.Errorf("JSON did not mask the deepest value: %.80s...", out)
			}
		})
	}
}

// TestRedactorSignedURLs checks the default names against the parameters
// of common signed URLs and token redirects: each secret is masked, each
// harmless parameter stays.
func TestRedactorSignedURLs(t *testing.T) {
	t.Parallel()
	r := New(nil, nil)
	tests := []struct {
		name string
		in   string
		want string
	}{
		{name: "Azure SAS", in: "https://a.blob.core.windows.net/c/b?sv=2022-11-02&se=2030-01-01&sr=b&sp=r&sig=abc%2Bdef%3D",
			want: "https://a.blob.core.windows.net/c/b?sv=2022-11-02&se=2030-01-01&sr=b&sp=r&sig=****"},
		{name: "AWS SigV4", in: "https://b.s3.amazonaws.com/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAEXAMPLE%2F20300101%2Fus-east-1%2Fs3%2Faws4_request" +
			"&X-Amz-Date=20300101T000000Z&X-Amz-Expires=900&X-Amz-SignedHeaders=host&X-Amz-Security-Token=FwoG&X-Amz-Signature=f00d",
			want: "https://b.s3.amazonaws.com/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=****" +
				"&X-Amz-Date=20300101T000000Z&X-Amz-Expires=900&X-Amz-SignedHeaders=host&X-Amz-Security-Token=****&X-Amz-Signature=****"},
		{name: "AWS SigV2", in: "https://b.s3.amazonaws.com/k?AWSAccessKeyId=AKIAEXAMPLE&Expires=1&Signature=s%3D",
			want: "https://b.s3.amazonaws.com/k?AWSAccessKeyId=****&Expires=1&Signature=****"},
		{name: "Google Cloud Storage V4", in: "https://storage.googleapis.com/b/o?X-Goog-Algorithm=GOOG4-RSA-SHA256&X-Goog-Credential=sa%40p.iam&X-Goog-Signature=00ff",
			want: "https://storage.googleapis.com/b/o?X-Goog-Algorithm=GOOG4-RSA-SHA256&X-Goog-Credential=****&X-Goog-Signature=****"},
		{name: "CloudFront", in: "https://d.cloudfront.net/v.mp4?Expires=1&Policy=eyJ&Signature=abc~&Key-Pair-Id=K2",
			want: "https://d.cloudfront.net/v.mp4?Expires=1&Policy=eyJ&Signature=****&Key-Pair-Id=K2"},
		{name: "OAuth code redirect", in: "https://app/cb?code=SplxlOBeZQQYbYS6WxSbIA&state=xyz",
			want: "https://app/cb?code=****&state=xyz"},
		{name: "OIDC implicit fragment", in: "https://app/cb#id_token=eyJ&access_token=a&token_type=Bearer&state=s",
			want: "https://app/cb#id_token=****&access_token=****&token_type=Bearer&state=s"},
		{name: "hash-routed fragment", in: "https://app/#/callback?access_token=a&state=s",
			want: "https://app/#/callback?access_token=****&state=s"},
		{name: "second hash", in: "https://app/#a=1#token=t", want: "https://app/#a=1#token=****"},
		{name: "semicolons", in: "https://h/p?a=1;token=t", want: "https://h/p?a=1;token=****"},
		{name: "password variants", in: "https://zoom.us/j/1?pwd=p&passwd=q&passphrase=r",
			want: "https://zoom.us/j/1?pwd=****&passwd=****&passphrase=****"},
		{name: "tokens", in: "https://h/?auth=a&jwt=j&session_token=s&private_token=p&auth_token=t",
			want: "https://h/?auth=****&jwt=****&session_token=****&private_token=****&auth_token=****"},
		{name: "assertions", in: "https://h/token?client_assertion=a&assertion=b&code_verifier=c&client_assertion_type=jwt-bearer",
			want: "https://h/token?client_assertion=****&assertion=****&code_verifier=****&client_assertion_type=jwt-bearer"},
		{name: "keys", in: "https://h/?access_key=a&secret_key=b&key=c&api-key=d",
			want: "https://h/?access_key=****&secret_key=****&key=****&api-key=****"},
		{name: "empty value stays", in: "https://h/?sig=&a=1", want: "https://h/?sig=&a=1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := r.URL(tt.in); got != tt.want {
				t.Errorf("URL = %q\nwant  %q", got, tt.want)
			}
			if got := r.Text("GET " + tt.in + " (403)"); got != "GET "+tt.want+" (403)" {
				t.Errorf("Text = %q\nwant  %q", got, "GET "+tt.want+" (403)")
			}
		})
	}
}

// TestRedactorCodeInURLsOnly checks that code, an OAuth authorization code
// in a redirect URL, stays readable as an error code in JSON and text.
func TestRedactorCodeInURLsOnly(t *testing.T) {
	t.Parallel()
	r := New(nil, nil)
	if got, want := r.Text(`{"error":{"code":400,"message":"bad"}} exit code=2`), `{"error":{"code":400,"message":"bad"}} exit code=2`; got != want {
		t.Errorf("Text = %q, want %q", got, want)
	}
	if got, ok := r.JSON([]byte(`{"code":"rate_limited"}`)); !ok || string(got) != `{"code":"rate_limited"}` {
		t.Errorf("JSON = %s, %v", got, ok)
	}
	if got, want := r.Text("redirected to https://app/cb?code=abc&state=1"), "redirected to https://app/cb?code=****&state=1"; got != want {
		t.Errorf("Text = %q, want %q", got, want)
	}
	if r.SecretField("code") {
		t.Error(`SecretField("code") = true, want false: it is secret in URLs only`)
	}
}

// TestRedactorNestedURLs checks URLs inside query and fragment values,
// raw, percent-encoded, half-encoded and encoded twice, and the depth cap.
func TestRedactorNestedURLs(t *testing.T) {
	t.Parallel()
	r := New(nil, nil)
	tests := []struct {
		name string
		in   string
		want string
	}{
		{name: "raw", in: "https://h/login?next=http://user:pass@host/", want: "https://h/login?next=http://user:****@host/"},
		{name: "encoded", in: "https://h/login?next=http%3A%2F%2Fuser%3Apass%40host%2F", want: "https://h/login?next=http://user:****@host/"},
		{name: "encoded, nothing secret, keeps its encoding", in: "https://h/login?next=https%3A%2F%2Fhost%2Fa%3Fb%3D1",
			want: "https://h/login?next=https%3A%2F%2Fhost%2Fa%3Fb%3D1"},
		{name: "encoded query", in: "https://h/?next=https%3A%2F%2Fh2%2Fp%3Fsig%3Dabc%26a%3D1&b=2",
			want: "https://h/?next=https://h2/p?sig=****&a=1&b=2"},
		{name: "encoded space escaped again", in: "https://h/?next=https%3A%2F%2Fu%3Ap%40h2%2Fa%20b%2525",
			want: "https://h/?next=https://u:****@h2/a%20b%2525"},
		{name: "half-encoded", in: "https://h/?next=https://h2/p?a=1%26token=xyz&b=2", want: "https://h/?next=https://h2/p?a=1&token=****&b=2"},
		{name: "raw with its own query", in: "https://h/?next=http://u:p@h2/?password=p%26ss",
			want: "https://h/?next=http://u:****@h2/?password=****"},
		{name: "encoded twice", in: "https://h/?a=http%3A%2F%2Fh%2F%3Fa%3Dhttp%253A%252F%252Fu%253Ap%2540x%252F",
			want: "https://h/?a=http://h/?a=http://u:****@x/"},
		{name: "fragment, bare", in: "https://h/cb#http://u:p@x/", want: "https://h/cb#http://u:****@x/"},
		{name: "fragment, encoded", in: "https://h/cb#next=http%3A%2F%2Fu%3Ap%40x%2F", want: "https://h/cb#next=http://u:****@x/"},
		{name: "in a parameter name", in: "https://h/?http%3A%2F%2Fu%3Ap%40x=1", want: "https://h/?http://u:****@x=1"},
		{name: "raw, four deep", in: "https://h/?a=http://h/?a=http://h/?a=http://u:p@x/&z=1",
			want: "https://h/?a=http://h/?a=http://h/?a=http://u:****@x/&z=1"},
		{name: "encoded, three deep", in: encodedIn(3, "http://u:p@x/?sig=s"),
			want: "https://h/?a=http://h1/?a=http://h2/?a=http://u:****@x/?sig=****"},
		{name: "encoded four times, masked whole", in: encodedIn(4, "http://u:p@x/?sig=s"),
			want: "https://h/?a=http://h1/?a=http://h2/?a=http://h3/?a=****?sig=****"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := r.URL(tt.in); got != tt.want {
				t.Errorf("URL = %q\nwant  %q", got, tt.want)
			}
			if got := r.URL(tt.want); got != tt.want {
				t.Errorf("URL of the masked URL = %q, want it unchanged", got)
			}
		})
	}
}

// encodedIn returns u percent-encoded in a query value of a URL, that
// encoded in the query of another, n URLs deep: u is encoded n times over.
func encodedIn(n int, u string) string {
	for i := n; i > 0; i-- {
		host := "h" + string(rune('0'+i-1))
		if i == 1 {
			host = "h"
		}
		u = map[bool]string{true: "https", false: "http"}[i == 1] + "://" + host + "/?a=" + url.QueryEscape(u)
	}
	return u
}

// TestTextNestedURLs checks URLs that free text holds percent-encoded, as
// in a form body, and a repeated scheme word.
func TestTextNestedURLs(t *testing.T) {
	t.Parallel()
	r := New(nil, nil)
	tests := []struct {
		name string
		in   string
		want string
	}{
		{name: "form body", in: "grant_type=authorization_code&redirect_uri=https%3A%2F%2Fu%3Ap%40h%2Fcb&x=1",
			want: "grant_type=authorization_code&redirect_uri=https://u:****@h/cb&x=1"},
		{name: "form body, nothing secret", in: "redirect_uri=https%3A%2F%2Fh%2Fcb&x=1", want: "redirect_uri=https%3A%2F%2Fh%2Fcb&x=1"},
		{name: "after an underscore", in: "got _http://u:p@h/", want: "got _http://u:****@h/"},
		{name: "bearer twice", in: "sent Bearer Bearer abc", want: "sent Bearer Bearer ****"},
		{name: "bearer in a pair", in: "token=Bearer abc", want: "token=**** ****"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := r.Text(tt.in); got != tt.want {
				t.Errorf("Text = %q\nwant  %q", got, tt.want)
			}
		})
	}
}

func TestRedactorDefaultHeaders(t *testing.T) {
	t.Parallel()
	r := New(nil, nil)
	for _, h := range []string{"Api-Key", "Ocp-Apim-Subscription-Key", "X-Goog-Api-Key", "Private-Token", "X-Amz-Security-Token"} {
		if !r.SecretHeader(h) {
			t.Errorf("SecretHeader(%q) = false, want true", h)
		}
	}
	for _, h := range []string{"X-Amz-Date", "X-Request-Id", "X-Hub-Signature-256"} {
		if r.SecretHeader(h) {
			t.Errorf("SecretHeader(%q) = true, want false", h)
		}
	}
}

// TestTextIdempotentMasks: a value masked where a URL's value ends (sig=
// ****#x, sig=****>x) is not masked again up to the next ',', so masking
// masked text changes nothing; a value that merely starts with asterisks
// is still masked whole.
func TestTextIdempotentMasks(t *testing.T) {
	t.Parallel()
	r := New(nil, nil)
	for _, tc := range []struct{ name, in, want string }{
		{"fragment", "A://#sig=0>,0", "A://#sig=****>,0"},
		{"hash after mask", "see sig=****#x,y", "see sig=****#x,y"},
		{"asterisks then secret", "password=****hunter2, x", "password=****, x"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := r.Text(tc.in); got != tc.want {
				t.Fatalf("Text(%q) = %q, want %q", tc.in, got, tc.want)
			}
			if again := r.Text(r.Text(tc.in)); again != r.Text(tc.in) {
				t.Fatalf("Text is not idempotent on %q: %q", tc.in, again)
			}
		})
	}
}

func TestUserinfoSplit(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want bool
	}{
		{"redis://u:pw@h:1/0", false},
		{"redis://u:p%40ss%2Fw@h:1/0", false},
		{"https://u:p@h/?e=a@b", false},
		{"redis://u:p@ss/w@rd@h:1/0", true},
		{"https://user:pass@ntfy.example.com/alerts/@ops", true},
		{"redis://h:1/0", false},
	} {
		if got := UserinfoSplit(tc.in); got != tc.want {
			t.Errorf("UserinfoSplit(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestParseURL(t *testing.T) {
	t.Parallel()
	const malformed = "the user name or password is malformed (escape special characters with %XX)"
	for _, tc := range []struct{ name, in, host, reason string }{
		{name: "plain", in: "redis://u:pw@h:1/0", host: "h:1"},
		{name: "escaped password", in: "redis://u:p%40ss%2Fw@h:1/0", host: "h:1"},
		{name: "at in the query", in: "https://u:p@h/?e=a@b", host: "h"},
		{name: "password with at and slash: as url.Parse reads it", in: "redis://u:SECRETa@SECRETb/SECRETc@h:1/0", host: "SECRETb"},
		{name: "at in the path", in: "https://user:pass@ntfy.example.com/alerts/@ops", host: "ntfy.example.com"},
		{name: "at in the fragment", in: "redis://user:pw@host:6379/0#x@y", host: "host:6379"},
		{name: "password with question mark", in: "redis://u:SECRET?pw@h:1/0", reason: malformed},
		{name: "password with hash", in: "redis://u:SECRET#pw@h:1/0", reason: malformed},
		{name: "bad escape", in: "redis://u:SECRET%zz@h/", reason: malformed},
		{name: "bad port", in: "redis://h:port/0", reason: `invalid port ":port" after host`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			u, reason := ParseURL(tc.in)
			if reason != tc.reason || (reason == "") != (u != nil) || u != nil && u.Host != tc.host {
				t.Fatalf("ParseURL(%q) = %v, %q; want host %q, reason %q", tc.in, u, reason, tc.host, tc.reason)
			}
			if strings.Contains(reason, "SECRET") {
				t.Fatalf("reason %q shows the password", reason)
			}
		})
	}
}

package redact

import (
	"strings"
	"testing"
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

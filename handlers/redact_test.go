package handlers

import "testing"

func TestRedactor(t *testing.T) {
	t.Parallel()
	r := NewRedactor([]string{"X-Session"}, []string{"Sig"})
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
	r := NewRedactor([]string{" ", "X-Extra"}, []string{""})
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

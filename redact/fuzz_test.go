package redact

import (
	"encoding/json"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

// The fuzz targets check that every exported function is total (no panic,
// bounded output) and that secrets planted in a document never come out,
// whatever arbitrary text surrounds them. The planted secrets all start
// with marker; inputs that already hold it are skipped for that check.
const marker = "SECRET"

// plantedURL holds a secret in each place URL masks: the userinfo, a path
// segment after a secret name, a long token-like segment, signed-URL and
// token parameters, an OAuth code, and the fragment.
const plantedURL = "http://user:SECRETpass@host/token/SECRETpath/SECRET0123456789abcdef" +
	"?sig=SECRETsig&X-Amz-Signature=SECRETamz&a=1&code=SECRETcode&token=SECRETtok#access_token=SECRETfrag"

// plantedSlashURL holds a password with an unescaped '/', '?' and '#', as
// base64 passwords and careless connection strings have.
const plantedSlashURL = "redis://:SECRET/b64+pw?x#y@host/0"

// poison are the inputs that made Redactor.URL and Redactor.Text recurse
// without end, and their relatives.
var poison = []string{
	"http://a/%zz",
	"http://[::1",
	"http://x/\x01?sig=%zz",
	"http://u:p@h/?next=http%3A%2F%2Fa%3Ab%40c%2F%zz",
	"http://http://http://a:b@c/://://x",
	"a://b://c://d://e://f",
	"http://a/%zz http://[::1 http://x/\x01",
	"{\"url\":\"http://a/%zz\"}",
	"http://\xff\xfe/%zz?token=\xff#sig=%",
	"http://h/?a=http://h/?a=http://h/?a=http://u:p@x/&z=1",
	"http://h/?a=http%3A%2F%2Fh%2F%3Fa%3Dhttp%253A%252F%252Fu%253Ap%2540x%252F",
	"https://h/cb#next=http%3A%2F%2Fu%3Ap%40x%2F",
	"%", "://", "@", "?", "#", "&=", "http://", "http://@", "http://:@/", "",
}

// r is the Redactor of the fuzz targets: the defaults, as agentq runs
// unconfigured.
var r = New(nil, nil)

// maxFuzzBytes keeps the fuzz targets fast: the fuzzer grows its inputs,
// and TestRedactorLinear covers large ones.
const maxFuzzBytes = 8 << 10

// checkBound fails when out is longer than 3*len(in)+16. Why that holds:
// the Redactor only replaces pieces of its input by Mask (4 bytes), or by
// "****" in quotes for a JSON value, and re-escapes a decoded component
// only when that is no longer than the component plus its masks. A masked
// piece is at least one byte, and apart from the first path segment it
// follows a separator that stays ('/', '@', '=', ':', a space): at worst a
// path of 1-byte segments, ":/:/:" to "****/****/****", 2.5 times the
// input plus 3. The regexp passes over text mask pieces that already end
// in a mask or a quote, so they do not compound. JSON re-encodes a byte of
// invalid UTF-8 as U+FFFD, 3 bytes, the largest ratio of all.
func checkBound(t *testing.T, fn, in, out string) {
	t.Helper()
	if len(out) > 3*len(in)+16 {
		t.Fatalf("%s: output %d bytes for %d bytes of input: %q -> %q", fn, len(out), len(in), in, out)
	}
}

// checkSecret fails when out holds a planted secret.
func checkSecret(t *testing.T, fn, in, out string) {
	t.Helper()
	if i := strings.Index(out, marker); i >= 0 {
		t.Fatalf("%s leaked %q: %q -> %q", fn, out[i:min(len(out), i+16)], in, out)
	}
}

func FuzzURL(f *testing.F) {
	for _, p := range poison {
		f.Add(p, "")
		f.Add("", p)
	}
	f.Add("", "")
	f.Add("x ", " y")
	f.Add("http://h/?next=", "&b=2")
	f.Add("http://h/?next=", "")
	f.Add("http://h/#", "")
	f.Add(`"`, `"`)
	f.Add("postgres://admin:pa?ss@db/app", "")
	f.Add("http://u:pa#ss@h/", "")
	f.Add("redis://:abc/def+ghi@host/0", "")
	f.Add("https://h/p?email=a@b.c", "")
	f.Add("http://h:8080/users/a@b.c", "")
	for _, a := range adversarial {
		f.Add("http://h/?"+repeatTo(a.unit, 48), "")
	}
	f.Fuzz(func(t *testing.T, prefix, suffix string) {
		in := prefix + suffix
		if len(in) > maxFuzzBytes {
			return
		}
		out := r.URL(in)
		checkBound(t, "URL", in, out)
		// Masking a masked URL changes nothing. (Not so for text: masking
		// may remove the white space or control byte that made it text.)
		if again := r.URL(out); again != out && !strings.ContainsFunc(in, notInURL) {
			t.Fatalf("URL not idempotent: %q -> %q -> %q", in, out, again)
		}
		if strings.Contains(in, marker) {
			return
		}
		for _, doc := range []string{prefix + plantedURL + suffix, plantedSlashURL + suffix} {
			out = r.URL(doc)
			checkBound(t, "URL", doc, out)
			checkSecret(t, "URL", doc, out)
		}
	})
}

// FuzzHostOnly: HostOnly is total, bounded and idempotent, and leaves
// nothing of a planted URL but its scheme, host and parameter names.
func FuzzHostOnly(f *testing.F) {
	for _, p := range poison {
		f.Add(p)
	}
	f.Add("https://hooks.example.com/services/p@ss%2Fword?token=x#f")
	f.Add("https://u:pw@h/a b?c d")
	f.Fuzz(func(t *testing.T, in string) {
		if len(in) > maxFuzzBytes {
			return
		}
		out := r.HostOnly(in)
		checkBound(t, "HostOnly", in, out)
		if again := r.HostOnly(out); again != out && !strings.ContainsFunc(in, notInURL) {
			t.Fatalf("HostOnly not idempotent: %q -> %q -> %q", in, out, again)
		}
		if strings.Contains(in, marker) {
			return
		}
		for _, doc := range []string{plantedURL + in, plantedSlashURL + in, "https://h/" + marker + in, "https://h/?a=" + marker + in} {
			out := r.HostOnly(doc)
			checkBound(t, "HostOnly", doc, out)
			checkSecret(t, "HostOnly", doc, out)
		}
	})
}

// FuzzTypedURL: TypedURL is total and bounded, and masks a
// planted password whatever it holds.
func FuzzTypedURL(f *testing.F) {
	for _, p := range poison {
		f.Add(p, "")
	}
	f.Add("p@ss/w", "h:1/p")
	f.Add("a?b#c@d", "h")
	f.Add(":", "h/?token=x")
	f.Fuzz(func(t *testing.T, pw, rest string) {
		if len(pw)+len(rest) > maxFuzzBytes {
			return
		}
		out := r.TypedURL(pw + rest)
		checkBound(t, "TypedURL", pw+rest, out)
		// Not idempotent: an '@' that URL left in a nested URL's text
		// (?next=http://a:****@c/) reads as the end of a typed password.
		// The password may hold anything but white space, quotes or
		// control characters (which end a URL in text) and the marker;
		// the rest after the '@' holds no '@'.
		if strings.Contains(pw+rest, marker) || strings.ContainsFunc(pw, notInURL) || strings.Contains(rest, "@") {
			return
		}
		for _, doc := range []string{"http://u:" + marker + pw + "@" + rest, "u:" + marker + pw + "@" + rest} {
			out := r.TypedURL(doc)
			checkBound(t, "TypedURL", doc, out)
			checkSecret(t, "TypedURL", doc, out)
		}
	})
}

func FuzzText(f *testing.F) {
	for _, p := range poison {
		f.Add(p, "")
		f.Add("", p)
	}
	f.Add("tool failed: POST ", ": 500")
	f.Add(`{"error":"redirected to `, `"}`)
	f.Add("token=", "")
	f.Add(`"key":`, "")
	// Shapes that once cost time quadratic in their length (see
	// adversarial), small: the fuzzer grows them.
	for _, a := range adversarial {
		f.Add(repeatTo(a.unit, 64), "")
		f.Add(repeatTo(a.unit, 32), repeatTo(a.unit, 32))
	}
	f.Add(`password="`, `"`)
	f.Add("password: ", "\n")
	f.Fuzz(func(t *testing.T, prefix, suffix string) {
		in := prefix + suffix
		if len(in) > maxFuzzBytes {
			return
		}
		out := r.Text(in)
		checkBound(t, "Text", in, out)
		// Masking masked text changes nothing, percent-encoded URLs aside:
		// one decoded and escaped again may split differently.
		if again := r.Text(out); again != out && !strings.Contains(in, "%") {
			t.Fatalf("Text not idempotent: %q -> %q -> %q", in, out, again)
		}
		if strings.Contains(in, marker) {
			return
		}
		// A URL right next to arbitrary text; a credential after a space;
		// name: value and quoted pairs on lines of their own. A "#" line
		// comes first, as a JSON field ("key":) or scheme word (Bearer)
		// at the end of prefix would take the next line's first word for
		// its value across the line break.
		for _, doc := range []string{
			prefix + plantedURL + suffix,
			prefix + " " + plantedSlashURL + " " + suffix,
			prefix + " Bearer SECRETbearer " + suffix,
			prefix + "\nAuthorization: Basic SECRETbasic\n" + suffix,
			prefix + "\n#\npassword: SECRETyaml words\n" + suffix,
			prefix + "\n#\n  api_key: \"SECRETquoted words\"\n" + suffix,
			prefix + "\n#\ntoken='SECRETsingle words'\n" + suffix,
		} {
			out := r.Text(doc)
			checkBound(t, "Text", doc, out)
			checkSecret(t, "Text", doc, out)
		}
	})
}

func FuzzHeader(f *testing.F) {
	for _, p := range poison {
		f.Add("Location", p)
	}
	f.Add("Authorization", "Bearer abc")
	f.Add("x-amz-security-token", "t")
	f.Add("Accept", "*/*")
	f.Add(" Cookie ", "a=b")
	f.Fuzz(func(t *testing.T, name, value string) {
		if len(name)+len(value) > maxFuzzBytes {
			return
		}
		out := r.Header(name, value)
		checkBound(t, "Header", value, out)
		if r.SecretHeader(name) {
			if out != Mask {
				t.Fatalf("Header(%q, %q) = %q, want %q", name, value, out, Mask)
			}
		} else if want := r.Text(value); out != want {
			t.Fatalf("Header(%q, %q) = %q, want Text's %q", name, value, out, want)
		}
		if strings.Contains(name+value, marker) {
			return
		}
		for _, v := range []string{value + " Bearer SECRETbearer", "Basic SECRETbasic " + value, value + plantedURL} {
			out := r.Header(name, v)
			checkBound(t, "Header", v, out)
			checkSecret(t, "Header", v, out)
		}
	})
}

// secretNames are the names FuzzJSON plants a secret under.
var secretNames = slices.Concat(defaultRedactFields, defaultRedactHeaders)

func FuzzJSON(f *testing.F) {
	for _, p := range poison {
		b, _ := json.Marshal(map[string]string{"url": p, "note": p})
		f.Add(b, "body", "headers", uint8(0))
		f.Add([]byte(p), "", "", uint8(1))
	}
	f.Add([]byte(`{"method":"POST","url":"https://u:p@h/?sig=s","headers":{"Authorization":"Bearer b"}}`), "a", "b", uint8(7))
	f.Add([]byte(`[1,2.50,"x",null,true,{"k":[]}]`), "token", "x", uint8(200))
	f.Add([]byte(strings.Repeat("[", 10000)+strings.Repeat("]", 10000)), "", "", uint8(3))
	f.Add([]byte(`{"a":1}{"b":2}`), "", "", uint8(3))
	f.Add([]byte("\"\xff\u2028\""), "", "", uint8(3))
	f.Fuzz(func(t *testing.T, data []byte, key1, key2 string, n uint8) {
		if len(data)+len(key1)+len(key2) > 4*maxFuzzBytes { // room for 10000 brackets
			return
		}
		out, ok := r.JSON(data)
		if ok {
			if !json.Valid(out) {
				t.Fatalf("JSON(%q) = %q, not valid JSON", data, out)
			}
			checkBound(t, "JSON", string(data), string(out))
			if again, ok := r.JSON(out); !ok || string(again) != string(out) {
				t.Fatalf("JSON not idempotent: %q -> %q -> %q, %v", data, out, again, ok)
			}
		} else if json.Valid(data) && utf8.Valid(data) {
			// json.Valid does not limit depth; Decode does at 10000.
			if depth(data) <= 10000 {
				t.Fatalf("JSON(%q) refused valid JSON", data)
			}
		}
		if strings.Contains(string(data)+key1+key2, marker) {
			return
		}
		// A secret under a secret name, a URL and a header line, n deep
		// in arrays and objects named by the fuzzer, next to its document.
		var doc any
		if json.Unmarshal(data, &doc) != nil {
			doc = string(data)
		} else if depth(data) > 10000-40 {
			doc = nil // with the wrapping below, past encoding/json's limit
		}
		var v any = map[string]any{
			secretNames[int(n)%len(secretNames)]: "SECRETfield",
			"u":                                  plantedURL,
			"h":                                  "Authorization: Bearer SECRETline",
			"e":                                  `{"password":"SECRETescaped"}`,
			key1:                                 doc,
		}
		for i := range int(n % 32) {
			if i%2 == 0 {
				v = []any{v, key2}
			} else {
				v = map[string]any{key2: v, key1: i}
			}
		}
		in, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		out, ok = r.JSON(in)
		if !ok || !json.Valid(out) {
			t.Fatalf("JSON(%s) = %s, %v; want valid JSON", in, out, ok)
		}
		checkBound(t, "JSON", string(in), string(out))
		checkSecret(t, "JSON", string(in), string(out))
	})
}

// depth returns how deep arrays and objects nest in the JSON data.
func depth(data []byte) int {
	d, most, inString, escaped := 0, 0, false, false
	for _, c := range data {
		switch {
		case inString && escaped:
			escaped = false
		case inString && c == '\\':
			escaped = true
		case c == '"':
			inString = !inString
		case !inString && (c == '[' || c == '{'):
			d++
			most = max(most, d)
		case !inString && (c == ']' || c == '}'):
			d--
		}
	}
	return most
}

func FuzzNestedURL(f *testing.F) {
	f.Add("next", uint8(1), uint8(1))
	f.Add("redirect_uri", uint8(2), uint8(2))
	f.Add("a", uint8(5), uint8(0xff))
	f.Add("", uint8(3), uint8(0))
	f.Add("#", uint8(2), uint8(1))
	f.Fuzz(func(t *testing.T, name string, levels, encoded uint8) {
		if strings.Contains(name, marker) || len(name) > 256 {
			return
		}
		u := "http://user:SECRETpass@h/p?sig=SECRETsig&a=1#token=SECRETfrag"
		for i := range int(levels % 6) {
			inner := u
			if encoded&(1<<i) != 0 {
				inner = url.QueryEscape(u)
			}
			u = "https://h" + string(rune('0'+i)) + "/?" + name + "=" + inner + "&b=2"
		}
		for _, fn := range []struct {
			name string
			fn   func(string) string
		}{{"URL", r.URL}, {"Text", r.Text}} {
			out := fn.fn(u)
			checkBound(t, fn.name, u, out)
			checkSecret(t, fn.name, u, out)
		}
	})
}

// FuzzPairs checks the name=value scanner against the regexp it replaced,
// on ASCII text (the regexp's (?i) also folds a few non-ASCII letters, such
// as the Kelvin sign, into its word boundary) without quotes or ':', which
// the regexp knew nothing of: quoted values and name: value pairs have
// table tests, and FuzzText plants secrets in them.
func FuzzPairs(f *testing.F) {
	f.Add("token=abc&x=1 then password=hunter2, monkey=3")
	f.Add("X-Api-Key=abc&x=1&cookie=c;key=k")
	f.Add("a=b=c token==x =x token= x sig=1,sig=2")
	f.Add("xtoken=1 _key=2 -key=3 .key=4 key=5key=6")
	f.Add("http://h/?sig=a&sig=b#sig=c")
	var names []string
	for n := range r.pairNames {
		names = append(names, regexp.QuoteMeta(n))
	}
	slices.SortFunc(names, func(a, b string) int { return len(b) - len(a) })
	pair := regexp.MustCompile(`(?i)(^|[^a-z0-9_])((?:` + strings.Join(names, "|") + `)=)[^&\s"',;]+`)
	f.Fuzz(func(t *testing.T, s string) {
		if len(s) > maxFuzzBytes {
			return
		}
		for _, c := range []byte(s) {
			if c >= utf8.RuneSelf || c == '"' || c == '\'' || c == ':' {
				return
			}
		}
		// A value that is already the mask, ended where a URL's value ends
		// (sig=****#x), is left as it stands, which the regexp knew
		// nothing of either (TestTextIdempotentMasks has it).
		if strings.Contains(s, Mask) {
			return
		}
		if got, want := r.pairs(s), pair.ReplaceAllString(s, `${1}${2}`+Mask); got != want {
			t.Fatalf("pairs(%q) = %q, want the regexp's %q", s, got, want)
		}
	})
}

// Package redact owns the one Redactor that keeps secrets (credential headers,
// URL passwords and tokens, secret JSON fields and query values) out of logs,
// error strings, stored records and the dashboard. Every function in it is
// total: any input string returns in bounded time and stack, never a panic.
package redact

import (
	"bytes"
	"encoding/json"
	"io"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"unicode"
)

// Mask replaces every secret the Redactor finds.
const Mask = "****"

// Secret names masked by every Redactor.
var (
	defaultRedactHeaders = []string{
		"Authorization", "Proxy-Authorization", "Cookie", "Set-Cookie", "X-Api-Key", "X-Auth-Token",
	}
	defaultRedactFields = []string{
		"token", "access_token", "refresh_token", "password", "secret", "api_key", "apikey", "client_secret", "key",
	}
)

// Redactor masks secrets in header values, URLs, JSON documents and free
// text such as response bodies and error strings. Names match
// case-insensitively and exactly: "key" masks key=... but not monkey=....
// Secret header names count as secret field names too, since tools echo
// request headers back in JSON bodies and text. It is safe for concurrent
// use. The zero value is not usable; call New.
type Redactor struct {
	headers map[string]bool
	fields  map[string]bool

	jsonField    *regexp.Regexp // "password": "x"
	escapedField *regexp.Regexp // \"password\": \"x\" (JSON inside a JSON string)
	headerLine   *regexp.Regexp // X-Api-Key: x
	pair         *regexp.Regexp // password=x
	scheme       *regexp.Regexp // Bearer x, Basic x
}

// New returns a Redactor that masks the default secret headers and
// fields plus the given ones. Empty names are ignored.
func New(headers, fields []string) *Redactor {
	r := &Redactor{headers: map[string]bool{}, fields: map[string]bool{}}
	var headerNames, names []string // quoted for a regexp
	seen := map[string]bool{}
	add := func(set map[string]bool, list *[]string, name string) {
		if name = strings.ToLower(strings.TrimSpace(name)); name == "" || set[name] {
			return
		}
		set[name] = true
		if list != nil {
			*list = append(*list, regexp.QuoteMeta(name))
		}
		// Secret header names are secret field names in bodies and text.
		if !seen[name] {
			seen[name] = true
			names = append(names, regexp.QuoteMeta(name))
		}
	}
	for _, h := range slices.Concat(defaultRedactHeaders, headers) {
		add(r.headers, &headerNames, h)
	}
	for _, f := range slices.Concat(defaultRedactFields, fields) {
		add(r.fields, nil, f)
	}
	// Longer names first, so that an alternation never stops at a prefix.
	slices.SortFunc(names, func(a, b string) int { return len(b) - len(a) })
	slices.SortFunc(headerNames, func(a, b string) int { return len(b) - len(a) })
	alt := "(?:" + strings.Join(names, "|") + ")"
	headerAlt := "(?:" + strings.Join(headerNames, "|") + ")"
	// A value is a string (perhaps cut short), a flat array or object, or a
	// bare scalar.
	r.jsonField = regexp.MustCompile(`(?i)("` + alt + `"\s*:\s*)(?:"(?:[^"\\]|\\.)*"?|` +
		`\[(?:[^\]"]|"(?:[^"\\]|\\.)*"?)*\]?|\{(?:[^}"]|"(?:[^"\\]|\\.)*"?)*\}?|[^\s,}\]]+)`)
	r.escapedField = regexp.MustCompile(`(?i)(\\"` + alt + `\\"\s*:\s*)(?:\\"(?:[^\\]|\\[^"])*(?:\\")?|\[[^\]]*\]?|[^\s,}\]\\]+)`)
	// A header line's value runs to the end of the line, or of the JSON
	// string it sits in; an authentication scheme before it stays readable.
	r.headerLine = regexp.MustCompile(`(?i)(^|[^a-z0-9_-])(` + headerAlt + `[ \t]*:[ \t]*)((?:basic|bearer|digest|negotiate|token)[ \t]+)?[^\s"\\][^\r\n"\\]*`)
	r.pair = regexp.MustCompile(`(?i)(^|[^a-z0-9_])(` + alt + `=)[^&\s"',;]+`)
	r.scheme = regexp.MustCompile(`(?i)\b(bearer|basic)\s+[a-z0-9\-._~+/]+=*`)
	return r
}

// SecretHeader reports whether name is a secret header.
func (r *Redactor) SecretHeader(name string) bool {
	return r.headers[strings.ToLower(strings.TrimSpace(name))]
}

// SecretField reports whether name is a secret JSON field or query parameter.
func (r *Redactor) SecretField(name string) bool {
	return r.fields[strings.ToLower(strings.TrimSpace(name))]
}

// Header returns value masked when name is a secret header; other values
// pass through Text, so that a stray bearer token is masked too.
func (r *Redactor) Header(name, value string) string {
	if r.SecretHeader(name) {
		return Mask
	}
	return r.Text(value)
}

// URL returns u with its secrets masked: the userinfo password, the values
// of secret query and fragment parameters (secret field or header names),
// and path segments that look like credentials. Userinfo with no password
// is a bare credential (https://TOKEN@host) and is masked whole. A string
// that does not parse as a URL is masked as Text, its userinfo and path
// segments as here.
//
// Tools often take a credential in the path (Telegram's /bot<id>:<token>/,
// webhook URLs, /token/<t>/). A path segment is masked when, unescaped, it
// contains ':'; or it is at least 20 bytes long and mixes letters and
// digits, like a token (long ids such as UUIDs are masked too); or the
// segment before it is a secret field or header name (/token/<t>,
// /key/<k>). Short readable segments such as /v1/orders/42 are kept.
func (r *Redactor) URL(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return r.Text(r.rawURL(u))
	}
	// url.Userinfo would escape the mask, so the userinfo is put back by hand.
	userinfo := ""
	if p.User != nil {
		userinfo = Mask + "@"
		if _, ok := p.User.Password(); ok {
			userinfo = url.User(p.User.Username()).String() + ":" + Mask + "@"
		}
		p.User = nil
	}
	if path := p.EscapedPath(); path != "" {
		if masked := r.path(path); masked != path {
			p.RawPath = masked
			p.Path, _ = url.PathUnescape(masked) // masked is escaped like path
		}
	}
	p.RawQuery = r.params(p.RawQuery)
	frag := p.EscapedFragment()
	p.Fragment, p.RawFragment = "", ""
	s := p.String()
	if i := strings.Index(s, "//"); userinfo != "" && i >= 0 {
		s = s[:i+2] + userinfo + s[i+2:]
	}
	if frag != "" {
		s += "#" + r.params(frag)
	}
	return s
}

// rawURL masks the userinfo, path segments and secret parameters of a URL
// that does not parse, working on the text: scheme://authority/path?query.
func (r *Redactor) rawURL(u string) string {
	i := strings.Index(u, "://")
	if i < 0 {
		return u
	}
	rest := u[i+3:]
	end := len(rest)
	if j := strings.IndexAny(rest, "?#"); j >= 0 {
		end = j
	}
	authority, path := rest[:end], ""
	if j := strings.IndexByte(authority, '/'); j >= 0 {
		authority, path = authority[:j], authority[j:]
	}
	if at := strings.LastIndexByte(authority, '@'); at >= 0 {
		if user, _, ok := strings.Cut(authority[:at], ":"); ok {
			authority = user + ":" + Mask + authority[at:]
		} else {
			authority = Mask + authority[at:]
		}
	}
	tail := rest[end:]
	if q, ok := strings.CutPrefix(tail, "?"); ok {
		q, frag, hasFrag := strings.Cut(q, "#")
		tail = "?" + r.params(q)
		if hasFrag {
			tail += "#" + r.params(frag)
		}
	} else if f, ok := strings.CutPrefix(tail, "#"); ok {
		tail = "#" + r.params(f)
	}
	return u[:i+3] + authority + r.path(path) + tail
}

// path masks the segments of an escaped URL path that look like credentials
// (see URL), keeping the escaping of the others.
func (r *Redactor) path(p string) string {
	segs := strings.Split(p, "/")
	afterName := false
	for i, seg := range segs {
		name, err := url.PathUnescape(seg)
		if err != nil {
			name = seg
		}
		if name != "" && (afterName || credentialSegment(name)) {
			segs[i] = Mask
		}
		afterName = r.SecretField(name) || r.SecretHeader(name)
	}
	return strings.Join(segs, "/")
}

// credentialSegment reports whether a path segment looks like a credential:
// it holds a ':' (id:secret), or it is at least 20 bytes long and mixes
// letters and digits.
func credentialSegment(s string) bool {
	if strings.ContainsRune(s, ':') {
		return true
	}
	if len(s) < 20 {
		return false
	}
	return strings.ContainsFunc(s, unicode.IsLetter) && strings.ContainsFunc(s, unicode.IsDigit)
}

// params masks the values of secret names in an a=1&b=2 list, keeping the
// order and encoding of everything else.
func (r *Redactor) params(q string) string {
	if q == "" {
		return q
	}
	parts := strings.Split(q, "&")
	for i, part := range parts {
		k, _, ok := strings.Cut(part, "=")
		if !ok {
			continue
		}
		name, err := url.QueryUnescape(k)
		if err != nil {
			name = k
		}
		if r.SecretField(name) || r.SecretHeader(name) {
			parts[i] = k + "=" + Mask
		}
	}
	return strings.Join(parts, "&")
}

// Text masks secrets in free text: the values of secret JSON fields
// ("password":"x" becomes "password":"****", in plain or string-escaped
// JSON; a secret header name is a secret field name too), secret header
// lines ("X-Api-Key: x" becomes "X-Api-Key: ****", to the end of the line;
// an authentication scheme such as Bearer is kept), secret name=value pairs
// (as in query strings and form bodies) and Bearer and Basic credentials.
func (r *Redactor) Text(s string) string {
	if s == "" {
		return s
	}
	// URLs inside free text (errors of custom handlers) get URL's masking:
	// user info, token-like path segments, secret query values.
	s = urlInText.ReplaceAllStringFunc(s, r.URL)
	s = r.jsonField.ReplaceAllString(s, `${1}"`+Mask+`"`)
	s = r.escapedField.ReplaceAllString(s, `${1}\"`+Mask+`\"`)
	s = r.headerLine.ReplaceAllString(s, `${1}${2}${3}`+Mask)
	s = r.pair.ReplaceAllString(s, `${1}${2}`+Mask)
	s = r.scheme.ReplaceAllString(s, `${1} `+Mask)
	return s
}

// urlInText finds absolute URLs in free text.
var urlInText = regexp.MustCompile(`\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s"'<>\\]*[^\s"'<>\\:,;.)\]]`)

// JSON returns the JSON document data with its secrets masked, and false
// when data is not a single JSON value. The value of every secret field or
// secret header name, at any depth, becomes "****" whatever its type, so a
// "headers" object keeps only its harmless values; every other string is
// masked as URL when it is an absolute URL, else as Text. Objects come back
// with their keys sorted and no insignificant space.
func (r *Redactor) JSON(data []byte) ([]byte, bool) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, false
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, false // more than one value
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(r.value(v)); err != nil {
		return nil, false
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), true
}

// value returns v, decoded from JSON, with its secrets masked (see JSON).
func (r *Redactor) value(v any) any {
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			if r.SecretField(k) || r.SecretHeader(k) {
				v[k] = Mask
			} else {
				v[k] = r.value(e)
			}
		}
	case []any:
		for i, e := range v {
			v[i] = r.value(e)
		}
	case string:
		if p, err := url.Parse(v); err == nil && p.Scheme != "" && p.Host != "" {
			return r.URL(v)
		}
		return r.Text(v)
	}
	return v
}

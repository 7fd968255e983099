package handlers

import (
	"net/url"
	"regexp"
	"slices"
	"strings"
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

// defaultRedactor masks the default names only. Validate uses it, having no
// configuration.
var defaultRedactor = NewRedactor(nil, nil)

// Redactor masks secrets in header values, URLs and free text such as
// response bodies and error strings. Names match case-insensitively and
// exactly: "key" masks key=... but not monkey=.... It is safe for concurrent
// use. The zero value is not usable; call NewRedactor.
type Redactor struct {
	headers map[string]bool
	fields  map[string]bool

	jsonField    *regexp.Regexp // "password": "x"
	escapedField *regexp.Regexp // \"password\": \"x\" (JSON inside a JSON string)
	pair         *regexp.Regexp // password=x
	bearer       *regexp.Regexp // Bearer x
}

// NewRedactor returns a Redactor that masks the default secret headers and
// fields plus the given ones. Empty names are ignored.
func NewRedactor(headers, fields []string) *Redactor {
	r := &Redactor{headers: map[string]bool{}, fields: map[string]bool{}}
	for _, h := range slices.Concat(defaultRedactHeaders, headers) {
		if h = strings.ToLower(strings.TrimSpace(h)); h != "" {
			r.headers[h] = true
		}
	}
	names := make([]string, 0, len(defaultRedactFields)+len(fields))
	for _, f := range slices.Concat(defaultRedactFields, fields) {
		if f = strings.ToLower(strings.TrimSpace(f)); f != "" && !r.fields[f] {
			r.fields[f] = true
			names = append(names, regexp.QuoteMeta(f))
		}
	}
	// Longer names first, so that an alternation never stops at a prefix.
	slices.SortFunc(names, func(a, b string) int { return len(b) - len(a) })
	alt := "(?:" + strings.Join(names, "|") + ")"
	r.jsonField = regexp.MustCompile(`(?i)("` + alt + `"\s*:\s*)(?:"(?:[^"\\]|\\.)*"?|[^\s,}\]]+)`)
	r.escapedField = regexp.MustCompile(`(?i)(\\"` + alt + `\\"\s*:\s*)(?:\\"(?:[^\\]|\\[^"])*(?:\\")?|[^\s,}\]\\]+)`)
	r.pair = regexp.MustCompile(`(?i)(^|[^a-z0-9_])(` + alt + `=)[^&\s"',;]+`)
	r.bearer = regexp.MustCompile(`(?i)\b(bearer)\s+[a-z0-9\-._~+/]+=*`)
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

// URL returns u with the userinfo password and the values of secret query
// and fragment parameters masked. Userinfo with no password is a bare
// credential (https://TOKEN@host) and is masked whole. A string that does
// not parse as a URL is masked as Text.
func (r *Redactor) URL(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return r.Text(u)
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
		if r.SecretField(name) {
			parts[i] = k + "=" + Mask
		}
	}
	return strings.Join(parts, "&")
}

// Text masks secrets in free text: the values of secret JSON fields
// ("password":"x" becomes "password":"****", in plain or string-escaped
// JSON), secret name=value pairs (as in query strings and form bodies) and
// bearer tokens.
func (r *Redactor) Text(s string) string {
	if s == "" {
		return s
	}
	s = r.jsonField.ReplaceAllString(s, `${1}"`+Mask+`"`)
	s = r.escapedField.ReplaceAllString(s, `${1}\"`+Mask+`\"`)
	s = r.pair.ReplaceAllString(s, `${1}${2}`+Mask)
	s = r.bearer.ReplaceAllString(s, `${1} `+Mask)
	return s
}

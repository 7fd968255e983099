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
	"sync"
	"unicode"
)

// Mask replaces every secret the Redactor finds.
const Mask = "****"

// Secret names masked by every Redactor, matched case-insensitively and
// exactly. The rule for adding one: its value grants access (a password, a
// key, a token, a signature that authorises a request) or names the key a
// signature was made with. Names of harmless parameters (Azure SAS's sv, se,
// sp; OAuth's state; CloudFront's Policy and Key-Pair-Id) stay readable.
var (
	defaultRedactHeaders = []string{
		// HTTP's own credentials (RFC 9110, RFC 6265).
		"Authorization", "Proxy-Authorization", "Cookie", "Set-Cookie",
		// API keys and tokens of common APIs: the generic pair; Azure OpenAI
		// and Azure API Management; Google APIs (Gemini); GitLab; the
		// session token of AWS temporary credentials (STS).
		"X-Api-Key", "X-Auth-Token",
		"Api-Key", "Ocp-Apim-Subscription-Key",
		"X-Goog-Api-Key",
		"Private-Token",
		"X-Amz-Security-Token",
	}
	defaultRedactFields = []string{
		// Passwords (pwd= is Zoom's meeting password, among others) and
		// generic secrets; private_key is the key in a Google service
		// account file.
		"password", "passwd", "pwd", "passphrase", "sentinel_password", "secret", "client_secret", "private_key",
		// API keys; access_key and secret_key as in AWS and ipstack-style
		// query APIs.
		"key", "api_key", "apikey", "access_key", "secret_key", "secret_access_key",
		// Tokens: OAuth 2.0 (RFC 6749) and OpenID Connect, generic auth and
		// session tokens (AWS STS), GitLab's private_token, JWTs. auth is
		// Firebase's auth= and a Docker config's base64 user:password.
		"token", "access_token", "refresh_token", "id_token", "auth", "auth_token", "session_token",
		"private_token", "jwt",
		// OAuth client authentication and grants by JWT assertion (RFC 7521,
		// RFC 7523); the PKCE verifier (RFC 7636).
		"client_assertion", "assertion", "code_verifier",
		// Signed URLs: sig (Azure SAS, and the only secret of its
		// parameters), Signature (AWS SigV2, CloudFront), AWS SigV4 and Google
		// Cloud Storage V4 query authentication. The credential and access id
		// parameters name the signing key; not a secret alone, but secret
		// scanners flag AWS key ids and triage never needs them.
		"sig", "signature",
		"x-amz-signature", "x-amz-credential", "x-amz-security-token", "awsaccesskeyid",
		"x-goog-signature", "x-goog-credential", "googleaccessid",
	}
	// defaultRedactParams are secret only as URL query or fragment
	// parameters: code is the OAuth 2.0 authorization code of a redirect
	// (RFC 6749 4.1.2), while a "code" field or code=500 in text is
	// usually an error code that triage needs; pass (?user=u&pass=p) is a
	// password in a URL, but a "pass" field or "pass: 3 of 4" in text
	// seldom is.
	defaultRedactParams = []string{"code", "pass"}
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
	urlOnly map[string]bool // secret as URL parameters only

	// pairNames are the secret field and header names, for password=x;
	// nameLen is the longest in bytes, and nameByte holds every byte of
	// them in either ASCII case: pairs looks no further back from an '='
	// or ':' than these allow.
	pairNames map[string]bool
	nameLen   int
	nameByte  [256]bool

	jsonField    *regexp.Regexp // "password": "x"
	escapedField *regexp.Regexp // \"password\": \"x\" (JSON inside a JSON string)
	headerLine   *regexp.Regexp // X-Api-Key: x
	scheme       *regexp.Regexp // Bearer x, Basic x
}

// New returns a Redactor that masks the default secret headers and
// fields plus the given ones. Empty names are ignored.
func New(headers, fields []string) *Redactor {
	r := &Redactor{headers: map[string]bool{}, fields: map[string]bool{}, urlOnly: map[string]bool{}, pairNames: map[string]bool{}}
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
		r.pairNames[name] = true
		r.nameLen = max(r.nameLen, len(name))
		for _, c := range []byte(name) {
			r.nameByte[c] = true
			r.nameByte[upper(c)] = true
		}
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
	for _, p := range defaultRedactParams {
		r.urlOnly[p] = true
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
	// A scheme word may repeat (Bearer Bearer x, a common client bug). A
	// credential already masked matches as it is, so that a second pass
	// does not take the last scheme word for a credential.
	r.scheme = regexp.MustCompile(`(?i)\b((?:bearer|basic)(?:\s+(?:bearer|basic)\b)*)\s+(?:\*\*\*\*|[a-z0-9\-._~+/]+=*)`)
	return r
}

// Default returns the Redactor of the default names, New(nil, nil), made
// once and shared: what masks a URL where no configuration names more
// secrets (connection strings, endpoints in errors and log lines).
var Default = sync.OnceValue(func() *Redactor { return New(nil, nil) })

// URL masks u as Default().URL does. It is the one URL masker of agentq:
// Redis URLs, LLM base URLs, webhook and dashboard URLs are masked by it or
// by the Redactor methods built on it (HostOnly, TypedURL).
func URL(u string) string { return Default().URL(u) }

// SecretHeader reports whether name is a secret header.
func (r *Redactor) SecretHeader(name string) bool {
	return r.headers[strings.ToLower(strings.TrimSpace(name))]
}

// SecretField reports whether name is a secret JSON field or query parameter.
func (r *Redactor) SecretField(name string) bool {
	return r.fields[strings.ToLower(strings.TrimSpace(name))]
}

// SecretParam reports whether name is a secret URL query or fragment
// parameter: a secret field or header name, or one secret in URLs only
// (code, pass).
func (r *Redactor) SecretParam(name string) bool {
	n := strings.ToLower(strings.TrimSpace(name))
	return r.fields[n] || r.headers[n] || r.urlOnly[n]
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
// of secret query and fragment parameters (secret field or header names,
// and code, an OAuth authorization code), and path segments that look like
// credentials. Userinfo with no password is a bare credential
// (https://TOKEN@host) and is masked whole.
//
// URL works on the text, split as RFC 3986 (and net/url) split it:
// scheme:, //authority, path, ?query, #fragment. Nothing else is changed,
// so a URL that net/url rejects (http://a/%zz, http://[::1) is masked the
// same way, and masking a masked URL changes nothing. A string holding
// white space, quotes or control characters is not one URL: when it starts
// with a scheme, it is masked as a URL and then as Text masks text, without
// looking for URLs again; else it is masked as Text.
//
// A URL inside a query or fragment value (?next=http://user:pass@host/,
// raw or percent-encoded) is masked like this one, and so are URLs and
// secret parameters nested in that, down to a URL percent-encoded three
// times over; what is nested deeper is masked whole.
//
// Tools often take a credential in the path (Telegram's /bot<id>:<token>/,
// webhook URLs, /token/<t>/). A path segment is masked when, unescaped, it
// contains ':'; or it is at least 20 bytes long and mixes letters and
// digits, like a token (long ids such as UUIDs are masked too); or the
// segment before it is a secret field or header name (/token/<t>,
// /key/<k>). Short readable segments such as /v1/orders/42 are kept.
func (r *Redactor) URL(u string) string {
	if !strings.ContainsFunc(u, notInURL) {
		return r.url(u, 0)
	}
	if schemeLen(u) == 0 {
		return r.Text(u) // text, perhaps with URLs in it
	}
	return r.textMasks(r.url(u, 0))
}

// notInURL reports whether c cannot appear in a URL that Text finds in
// free text: white space, quotes, angle brackets, backslash, control
// characters.
func notInURL(c rune) bool {
	return c <= ' ' || c == 0x7f || strings.ContainsRune(`"'<>\`, c)
}

// maxDepth bounds how deep URL looks into query values: each URL entered
// and each percent-decoding is one step, and what only maxDepth steps or
// more reach is replaced by Mask. Five reach a URL percent-encoded in a
// query value of an encoded URL in the query of an encoded URL in the
// outer one's query (three deep). As nested looks at each value both as it
// stands and decoded, the work per byte is at most 2^maxDepth passes.
const maxDepth = 5

// url masks u (see URL) depth steps deep. Every path from url back to url
// (params, nested, urlsIn, decoded) takes at least one step, so the
// recursion stops at maxDepth.
func (r *Redactor) url(u string, depth int) string {
	var b strings.Builder
	b.Grow(len(u))
	rest := r.head(&b, u, depth)
	rest, frag, hasFrag := strings.Cut(rest, "#")
	rest, query, hasQuery := strings.Cut(rest, "?")
	b.WriteString(r.path(rest))
	if hasQuery {
		b.WriteByte('?')
		b.WriteString(r.params(query, depth))
	}
	if hasFrag {
		b.WriteByte('#')
		b.WriteString(r.params(frag, depth))
	}
	return b.String()
}

// head writes u's scheme and authority to b, its userinfo masked (see
// URL), and returns the rest of u: path, query and fragment.
func (r *Redactor) head(b *strings.Builder, u string, depth int) string {
	rest := u
	if i := schemeLen(u); i > 0 {
		b.WriteString(u[:i+1])
		rest = u[i+1:]
	}
	if tail, ok := strings.CutPrefix(rest, "//"); ok {
		at := userinfoEnd(tail)
		end := len(tail)
		if j := strings.IndexAny(tail[at+1:], "/?#"); j >= 0 {
			end = at + 1 + j
		}
		b.WriteString("//")
		authority := maskUserinfo(tail[:end], at)
		if strings.ContainsAny(authority, "%=") && r.nested(authority, depth) != authority {
			// No host holds a secret: one that does (A://=https%3A%2F%2F...,
			// text read as a URL) is masked whole, which a second pass
			// reads the same way.
			authority = Mask
		}
		b.WriteString(authority)
		rest = tail[end:]
	}
	return rest
}

// HostOnly returns u with only its scheme, host, port, user name and query
// parameter names readable: the userinfo is masked as URL masks it, the
// path from its first '/' on, every query value (and a bare parameter) and
// the fragment become Mask. It is for URLs that are secret as a whole,
// such as webhook URLs (https://hooks.example.com/services/T0/B0/SECRET).
// A path not after "//" (hooks.example.com/x typed without a scheme) is
// masked whole. Like URL it works on the text, so it masks URLs that
// net/url rejects, and masking its output changes nothing.
func (r *Redactor) HostOnly(u string) string {
	var b strings.Builder
	b.Grow(len(u))
	rest := r.head(&b, u, 0)
	rest, frag, hasFrag := strings.Cut(rest, "#")
	rest, query, hasQuery := strings.Cut(rest, "?")
	switch {
	case rest == "" || rest == "/":
		b.WriteString(rest)
	case rest[0] == '/':
		b.WriteString("/" + Mask)
	default:
		b.WriteString(Mask)
	}
	if hasQuery {
		b.WriteByte('?')
		for i, p := range strings.Split(query, "&") {
			if i > 0 {
				b.WriteByte('&')
			}
			k, _, hasValue := strings.Cut(p, "=")
			if m := r.nested(k, 0); m != k {
				// A name that holds a secret goes whole: its masked form
				// may hold an '=' or '&' that a second pass would split.
				k = Mask
			}
			switch {
			case hasValue:
				b.WriteString(k + "=" + Mask)
			case p != "":
				b.WriteString(Mask)
			}
		}
	}
	if hasFrag {
		b.WriteByte('#')
		if frag != "" {
			b.WriteString(Mask)
		}
	}
	out := b.String()
	if strings.ContainsFunc(out, notInURL) {
		out = r.textMasks(out)
	}
	return out
}

// TypedURL masks a URL as a person typed it on a command line or in a
// config file, where a password is seldom escaped: everything between the
// first ':' after the scheme (or from the start, when raw has no scheme)
// and the last '@' of raw is the password, whatever '@', '/', '?', '#' or
// ':' it holds, and becomes Mask; then the result is masked as URL masks
// it. Without a scheme, raw is read as user:password@host:port/path. A URL
// with an '@' in its path or query and no userinfo is masked too much,
// never too little; so is, a second time, a URL masked once that still
// holds an '@' (http://h/?next=http://a:****@c/).
func (r *Redactor) TypedURL(raw string) string {
	prefix, rest := "", raw
	if i := strings.Index(raw, "://"); i > 0 && schemeLen(raw[:i+1]) == i {
		prefix, rest = raw[:i+3], raw[i+3:]
	}
	if at := strings.LastIndexByte(rest, '@'); at >= 0 {
		if c := strings.IndexByte(rest[:at], ':'); c >= 0 {
			rest = rest[:c+1] + Mask + rest[at:]
		}
	}
	if prefix != "" {
		return r.URL(prefix + rest)
	}
	// A network-path reference (//user:pw@host:port): read as URL reads
	// an authority, not "user:" as a scheme.
	out := r.url("//"+rest, 0)
	if strings.ContainsFunc(out, notInURL) {
		out = r.textMasks(out)
	}
	return strings.TrimPrefix(out, "//")
}

// schemeLen returns the index of the ':' that ends u's scheme, or 0 when u
// has none (RFC 3986: a letter, then letters, digits, '+', '-', '.').
func schemeLen(u string) int {
	for i := 0; i < len(u); i++ {
		c := u[i]
		switch {
		case 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z':
		case i > 0 && ('0' <= c && c <= '9' || c == '+' || c == '-' || c == '.'):
		case i > 0 && c == ':':
			return i
		default:
			return 0
		}
	}
	return 0
}

// userinfoEnd returns the index of the '@' that ends the userinfo of
// tail, a URL after its "//", or -1 when it has none. As in net/url, that
// is the last '@' before the first '/', '?' or '#'. But a password may
// hold an unescaped '/', '?', '#' or '@' (postgres://admin:pa?ss@db/app,
// redis://:abc/def+ghi@host/0, redis://u:p@ss/w@rd@host/0, a base64
// password). So when the userinfo so far holds a ':' (a password), or
// there is no '@' before that separator but a ':', the userinfo runs on to
// the last '@' before the first separator after the next '@' (and before
// any white space or quote), unless what lies between reads as a query or
// path of host:port (http://h:8080/p?email=a@b.c), or, after a userinfo,
// of any host (https://u:p@h/?email=a@b.c), that is holds '=' or '&'; or
// the host is an IPv6 literal; or a URL nested in a query or fragment
// follows. Without a ':' the '@' is not a password's
// (https://h/p?email=a@b.c keeps its host, https://TOKEN@h/@me its path).
func userinfoEnd(tail string) int {
	d := strings.IndexAny(tail, "/?#")
	if d < 0 {
		return strings.LastIndexByte(tail, '@')
	}
	at := strings.LastIndexByte(tail[:d], '@')
	host := tail[at+1 : d]
	colon := strings.IndexByte(host, ':')
	switch {
	case at >= 0 && strings.IndexByte(tail[:at], ':') < 0:
		return at // no password: a user name or a bare token
	case at < 0 && colon < 0:
		return -1
	case strings.HasPrefix(host, "["):
		return at
	}
	url := tail
	if k := strings.IndexFunc(tail, notInURL); k >= 0 {
		url = tail[:k]
	}
	if d >= len(url) {
		return at // white space or a quote before the separator
	}
	port := ""
	if colon > 0 {
		port = host[colon+1:]
	}
	// An '@' after the separator ends a password that holds the separator
	// (u:p@ss/w@rd@host). Extend as far as the rule holds, separator after
	// separator, so that masking what this returns leaves nothing a second
	// pass would extend again (masking stays idempotent).
	end, pos := at, d
	for pos < len(url) {
		at1 := strings.IndexByte(url[pos:], '@')
		if at1 < 0 {
			break
		}
		at1 += pos
		between := url[pos:at1]
		if (end >= 0 || port != "" && strings.Trim(port, "0123456789") == "") && strings.ContainsAny(between, "=&") {
			break // host[:port], then a query with an '@' in it
		}
		if q := strings.IndexAny(between, "?#"); q >= 0 && strings.Contains(between[q:], "://") {
			break // a URL nested in a query or fragment (#a://u@h), not a password
		}
		d2 := len(url)
		if j := strings.IndexAny(url[at1:], "/?#"); j >= 0 {
			d2 = at1 + j
		}
		end, pos = strings.LastIndexByte(url[:d2], '@'), d2
	}
	if end >= 0 && strings.IndexAny(tail[end+1:], "/?#") < 0 {
		// What follows has no separator left: as for a tail with none
		// (above), its last '@' ends the user info, so that a second pass
		// over the masked text finds nothing more to extend.
		end = strings.LastIndexByte(tail, '@')
	}
	return end
}

// maskUserinfo masks the password of an authority's user:password@, or the
// whole userinfo when it has no password (https://TOKEN@host). at is the
// index of the '@' that ends the userinfo (see userinfoEnd), or -1.
func maskUserinfo(authority string, at int) string {
	if at <= 0 {
		return authority
	}
	user, pass, ok := strings.Cut(authority[:at], ":")
	switch {
	case !ok:
		return Mask + authority[at:]
	case pass == "":
		return authority
	}
	return user + ":" + Mask + authority[at:]
}

// path masks the segments of an escaped URL path that look like credentials
// (see URL), keeping the escaping of the others.
func (r *Redactor) path(p string) string {
	if p == "" {
		return p
	}
	segs := strings.Split(p, "/")
	afterName := false
	for i, seg := range segs {
		// A character no URL holds (DEL, a control character) ends the
		// URL as Text and userinfoEnd read it: a mask keeps it in place,
		// so that masking the masked text reads the URL the same way.
		head, tail := seg, ""
		if k := strings.IndexFunc(seg, notInURL); k >= 0 {
			head, tail = seg[:k], seg[k:]
		}
		name := unescape(head)
		if name != "" && (afterName || credentialSegment(name)) {
			segs[i] = Mask + tail
			if len(tail) > 1 {
				segs[i] = Mask + tail[:1] + Mask
			}
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
	// A mask counts for nothing, so that masking a masked path keeps it.
	if len(s)-len(Mask)*strings.Count(s, Mask) < 20 {
		return false
	}
	return strings.ContainsFunc(s, unicode.IsLetter) && strings.ContainsFunc(s, unicode.IsDigit)
}

// params masks the values of secret names in an a=1&b=2 list, and the URLs
// nested in the others, keeping the order and encoding of everything else.
// An empty value stays empty. Besides '&', a '?', '#' or ';' starts a new
// parameter too: a hash-routed page puts its query in the fragment
// (#/cb?access_token=t), a '#' after the first is part of the fragment, a
// raw nested URL brings its own query (?next=http://h/?sig=s), and some
// servers split on ';'.
func (r *Redactor) params(q string, depth int) string {
	if q == "" {
		return q
	}
	var b strings.Builder
	b.Grow(len(q))
	for q != "" {
		part, sep := q, ""
		if i := strings.IndexAny(q, "&?#;"); i >= 0 {
			part, sep, q = q[:i], q[i:i+1], q[i+1:]
		} else {
			q = ""
		}
		k, v, hasValue := strings.Cut(part, "=")
		switch {
		case !hasValue || strings.Contains(k, "://"):
			// A bare value (#http://u:p@h/), or a raw URL whose own query
			// this is.
			part = r.nested(part, depth)
		case r.SecretParam(unescape(k)) || r.SecretParam(unescape(strings.ReplaceAll(k, "+", " "))):
			// A query's '+' is a space to the server (token+=t is "token ").
			if v != "" {
				part = k + "=" + Mask
			}
		default:
			part = r.nested(k, depth) + "=" + r.nested(v, depth)
		}
		b.WriteString(part)
		b.WriteString(sep)
	}
	return b.String()
}

// nested masks the URLs and secret parameters in s, a query or fragment
// component depth steps deep (see maxDepth): first the URLs as they stand
// in s, then what s reads once percent-decoded, as the server that parses
// the query reads it (next=https%3A%2F%2Fh%2F%3Fa%3D1%26token%3Dt, or
// half-encoded next=https://h/?a=1%26token=t).
func (r *Redactor) nested(s string, depth int) string {
	if strings.Contains(s, "://") {
		s = r.urlsIn(s, depth+1)
	}
	return r.decoded(s, depth)
}

// decoded masks what s, depth steps deep, holds percent-encoded: URLs and
// name=value pairs, masked as params masks a query. An s that decoding
// shows to hold secrets comes back masked and escaped again (see escape),
// or as Mask if escaping would make it longer than s and its masks, or if
// decoding takes it past maxDepth; one without keeps its encoding.
func (r *Redactor) decoded(s string, depth int) string {
	d := unescape(s)
	if len(d) == len(s) || !strings.Contains(d, "://") && !strings.Contains(d, "=") {
		return s
	}
	if depth+1 >= maxDepth {
		return Mask
	}
	m := r.params(d, depth+1)
	if m == d {
		return s
	}
	if e := escape(m); len(e)-len(s) <= max(0, len(m)-len(d)) {
		return e
	}
	return Mask
}

// urlsIn masks the URLs in s, found as Text finds them, depth steps deep:
// a raw one as URL does, a percent-encoded one (http%3A%2F%2F...) as the
// query component it is (see params), and any of them whole from maxDepth
// on.
func (r *Redactor) urlsIn(s string, depth int) string {
	return urlInText.ReplaceAllStringFunc(s, func(u string) string {
		switch {
		case depth >= maxDepth:
			return Mask
		case strings.Contains(u, "://"):
			return r.url(u, depth)
		}
		// Percent-encoded, u ends at a raw '&' or the like: what follows
		// is the next parameter of a query or form body.
		return r.params(u, depth)
	})
}

// unescape decodes the valid %XX escapes of s and keeps everything else,
// '+' and a stray '%' included, as it is. Unlike url.QueryUnescape it
// never fails, so a name or nested URL after a bad escape is still found.
func unescape(s string) string {
	i := strings.IndexByte(s, '%')
	if i < 0 {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	b.WriteString(s[:i])
	for ; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]) {
			b.WriteByte(unhex(s[i+1])<<4 | unhex(s[i+2]))
			i += 2
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// escape percent-encodes what would change how a decoded and masked
// component s is found in text or decoded once put back: white space,
// quotes, angle brackets, backslash, control characters, and a '%' that
// would read as an escape. Separators ('&', '#', '=') stay: params split
// there when it masked s, so a second pass finds the same parts. Every byte
// it encodes came from an escape that unescape decoded, except stray ones
// such as a literal space, so the result is seldom longer than the
// original component.
func escape(s string) string {
	const hexDigits = "0123456789ABCDEF"
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if notInURL(rune(c)) || c == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]) {
			b.WriteByte('%')
			b.WriteByte(hexDigits[c>>4])
			b.WriteByte(hexDigits[c&15])
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c <= 'F':
		return c - 'A' + 10
	}
	return c - 'a' + 10
}

// Text masks secrets in free text: the URLs in it as URL masks them, the
// values of secret JSON fields ("password":"x" becomes "password":"****",
// in plain or string-escaped JSON; a secret header name is a secret field
// name too), secret header lines ("X-Api-Key: x" becomes "X-Api-Key: ****",
// to the end of the line; an authentication scheme such as Bearer is
// kept), secret name=value pairs (as in query strings and form bodies) and
// Bearer and Basic credentials.
func (r *Redactor) Text(s string) string {
	if s == "" {
		return s
	}
	// URLs inside free text (errors of custom handlers) get URL's masking:
	// user info, token-like path segments, secret query values. Nothing
	// urlsIn calls comes back into Text.
	return r.textMasks(r.urlsIn(s, 0))
}

// textMasks masks what Text masks, except URLs. Credentials go first, so
// that a wider mask around one (token=Bearer x) cannot take its scheme word
// and leave it bare.
func (r *Redactor) textMasks(s string) string {
	s = r.scheme.ReplaceAllString(s, `${1} `+Mask)
	// A regexp pass costs time on every byte; skip those that cannot match.
	colon := strings.IndexByte(s, ':') >= 0
	if colon && strings.IndexByte(s, '"') >= 0 {
		s = r.jsonField.ReplaceAllString(s, `${1}"`+Mask+`"`)
	}
	if colon && strings.Contains(s, `\"`) {
		s = r.escapedField.ReplaceAllString(s, `${1}\"`+Mask+`\"`)
	}
	if colon {
		s = r.headerLine.ReplaceAllString(s, `${1}${2}${3}`+Mask)
	}
	return r.pairs(s)
}

// pairs masks the values of secret name=value and name: value pairs in
// s, in one pass over it, in time linear in len(s).
//
// name=value: a secret field or header name, at the start or after a byte
// other than an ASCII letter, digit or '_', then '=', then a value running
// to '&', white space, a quote, ',' or ';'.
//
// name: value (YAML, logs, config dumps): a secret field name (header
// names are headerLine's), at the start, after white space, a quote or one
// of "([{,;|" or an escaped \n or \t, then ':' and at least one space or
// tab. At the start of a line (after indentation and a YAML "- ", or at the
// start of a JSON string) the value runs to the end of the line or of the
// JSON string, as a header line's does, so a passphrase of several words is
// masked whole. Elsewhere it runs to the next white space, quote, '\', '&',
// ',' or ';': "the key: use it" becomes "the key: **** it", one word masked
// too many, as the price of "user=bob password: hunter2 host=h".
//
// In both, a value that starts with a quote (", ' or an escaped \") runs to
// the matching quote, or to the end of the line if there is none, and its
// quotes stay: password="a b" becomes password="****". A quote followed by
// white space, another quote or one of ",;&)]}:" is no value
// ({"q":"password=","n":1} stays as it is).
//
// Names compare case-insensitively in ASCII only. Each '=' or ':' costs at
// most nameLen bytes looked at before it; a value is looked at once, as the
// scan goes on after it.
func (r *Redactor) pairs(s string) string {
	var b strings.Builder
	var lower [64]byte // the bytes before a separator, lowercased
	buf := lower[:]
	if r.nameLen > len(buf) {
		buf = make([]byte, r.nameLen)
	}
	done := 0 // s[:done] is in b, and no name starts before it
	for i := 0; i < len(s); {
		k := strings.IndexAny(s[i:], "=:")
		if k < 0 {
			break
		}
		sep := i + k
		i = sep + 1
		colon := s[sep] == ':'
		if colon && (i == len(s) || s[i] != ' ' && s[i] != '\t') {
			continue
		}
		j := r.nameStart(s, done, sep, buf, colon)
		if j < 0 {
			continue
		}
		start := i
		tokenEnd := "&\t\n\f\r \"',;"
		if colon {
			for start < len(s) && (s[start] == ' ' || s[start] == '\t') {
				start++
			}
			tokenEnd = "&\t\n\f\r \"',;\\"
			if lineStart(s, j) {
				tokenEnd = "\r\n\"\\"
			}
		}
		from, to := quotedValue(s, start)
		if from < 0 {
			from, to = start, start
			if !colon && strings.HasPrefix(s[start:], Mask) && start+len(Mask) < len(s) && strings.IndexByte("#?<>\\", s[start+len(Mask)]) >= 0 {
				// A value URL masked in a query or fragment, which ends at
				// '#' or '?' (sig=****#x) or where the URL did ('>'):
				// masking it again must not take what follows, or masking
				// masked text would change it.
				continue
			}
			for to < len(s) && strings.IndexByte(tokenEnd, s[to]) < 0 {
				to++
			}
		}
		if to == from {
			continue // no value
		}
		if b.Len() == 0 {
			b.Grow(len(s) + len(Mask))
		}
		b.WriteString(s[done:from])
		b.WriteString(Mask)
		done, i = to, to
	}
	if done == 0 {
		return s
	}
	b.WriteString(s[done:])
	return b.String()
}

// nameStart returns where the longest secret name that ends at s[sep]
// starts (see pairs), or -1. For name: value (colon) it looks for field
// names only. buf holds at least nameLen bytes.
func (r *Redactor) nameStart(s string, done, sep int, buf []byte, colon bool) int {
	lo := sep
	for lo > done && sep-lo < r.nameLen && r.nameByte[s[lo-1]] {
		lo--
	}
	if lo == sep {
		return -1
	}
	w := buf[:sep-lo]
	for n := range w {
		w[n] = lower(s[lo+n])
	}
	for j := lo; j < sep; j++ { // the longest name first
		if j > 0 && (j == done || !nameBoundary(s, j, colon)) {
			continue
		}
		name := w[j-lo:]
		if colon && r.fields[string(name)] || !colon && r.pairNames[string(name)] {
			return j
		}
	}
	return -1
}

// nameBoundary reports whether a name may start at s[j], j > 0: after a
// byte other than an ASCII letter, digit or '_' for name=value; after white
// space, a quote, one of "([{,;|", or an escaped \n or \t for name: value.
func nameBoundary(s string, j int, colon bool) bool {
	c := s[j-1]
	if !colon {
		return !wordByte(c)
	}
	return strings.IndexByte(" \t\r\n\f\"'`([{,;|", c) >= 0 ||
		j >= 2 && s[j-2] == '\\' && (c == 'n' || c == 't')
}

// lineStart reports whether the name at s[j] starts a line: after nothing
// but indentation and a YAML list's "- " (up to 64 bytes of them), at the
// start of s, of a line, or of a JSON string (plain, or escaped \n).
func lineStart(s string, j int) bool {
	k := j
	for k > 0 && j-k < 64 && (s[k-1] == ' ' || s[k-1] == '\t' || s[k-1] == '-') {
		k--
	}
	return k == 0 || s[k-1] == '\n' || s[k-1] == '\r' || s[k-1] == '"' ||
		k >= 2 && s[k-2] == '\\' && s[k-1] == 'n'
}

// quotedValue returns the bounds of a value that starts with a quote at
// s[start] (see pairs): from after the opening quote to the matching quote
// or the end of the line. It returns -1, -1 when s[start] opens no quoted
// value.
func quotedValue(s string, start int) (from, to int) {
	if start >= len(s) {
		return -1, -1
	}
	var ends string
	switch {
	case s[start] == '"':
		from, ends = start+1, "\"\r\n"
	case s[start] == '\'':
		from, ends = start+1, "'\r\n"
	case s[start] == '\\' && start+1 < len(s) && s[start+1] == '"':
		from, ends = start+2, "\"\r\n" // JSON-escaped; its \" ends it
	default:
		return -1, -1
	}
	if from == len(s) || strings.IndexByte(" \t\r\n\f\"'\\,;&)]}:", s[from]) >= 0 {
		return -1, -1
	}
	to = from
	for to < len(s) && strings.IndexByte(ends, s[to]) < 0 {
		to++
	}
	if s[start] == '\\' && to < len(s) && s[to] == '"' && s[to-1] == '\\' {
		to--
	}
	return from, to
}

// lower returns c in ASCII lower case.
func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// upper returns c in ASCII upper case.
func upper(c byte) byte {
	if 'a' <= c && c <= 'z' {
		return c - ('a' - 'A')
	}
	return c
}

// wordByte reports whether c is an ASCII letter, digit or '_'.
func wordByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_'
}

// urlInText finds absolute URLs in free text, raw or with their "://"
// percent-encoded (a redirect_uri in a form body). A scheme may follow any
// character: a word boundary would miss the URL in _http://u:p@h/.
var urlInText = regexp.MustCompile(`[a-zA-Z][a-zA-Z0-9+.-]*(?::|%3[aA])(?:/|%2[fF]){2}[^\s"'<>\\]*[^\s"'<>\\:,;.)\]]`)

// JSON returns the JSON document data with its secrets masked, and false
// when data is not a single JSON value. The value of every secret field or
// secret header name, at any depth, becomes "****" whatever its type, so a
// "headers" object keeps only its harmless values; every other string is
// masked as URL when it is an absolute URL, else as Text. Objects come back
// with their keys sorted and no insignificant space. encoding/json refuses
// documents nested more than 10000 deep, which bounds value's recursion.
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
		return r.StringValue(v)
	}
	return v
}

// StringValue returns s, a string value of a document (JSON, YAML), masked
// as JSON masks one: as URL when it is an absolute URL, else as Text, and
// valid UTF-8.
func (r *Redactor) StringValue(s string) string {
	var out string
	if p, err := url.Parse(s); err == nil && p.Scheme != "" && p.Host != "" {
		out = r.URL(s)
	} else {
		out = r.Text(s)
	}
	// Masking may decode percent-escapes into bytes that are not UTF-8;
	// the encoder would write them as \ufffd escapes, and a second pass
	// the rune itself. Write the rune at once, so that masking masked
	// JSON changes nothing.
	return strings.ToValidUTF8(out, "\uFFFD")
}

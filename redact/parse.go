package redact

import (
	"errors"
	"net/url"
	"strings"
)

// ParseURL parses raw as url.Parse does. When it fails, reason says why
// without quoting raw: url.Parse's errors quote the URL, password included.
// A URL whose password holds an unescaped '@' followed by '/', '?' or '#'
// parses as url.Parse reads it (redis://u:p@ss/w@rd@host/0 has host "ss"):
// such a URL is also a valid URL with an '@' in its path, which a webhook
// may have; a caller whose URLs never hold one (Redis URLs) refuses it with
// UserinfoSplit.
func ParseURL(raw string) (u *url.URL, reason string) {
	const malformed = "the user name or password is malformed (escape special characters with %XX)"
	u, err := url.Parse(raw)
	if err == nil {
		return u, ""
	}
	// Parse again without the user info, so the reason cannot hold the password.
	if _, err2 := url.Parse(stripUserinfo(raw)); err2 != nil {
		var ue *url.Error
		if errors.As(err2, &ue) {
			return nil, ue.Err.Error()
		}
		return nil, "cannot be parsed"
	}
	return nil, malformed
}

// UserinfoSplit reports whether URL reads raw's user info as longer than
// url.Parse does: a password that holds an unescaped '@' before a '/',
// '?' or '#' that holds more of it, or an '@' after the host.
func UserinfoSplit(raw string) bool {
	tail, ok := afterSlashes(raw)
	if !ok {
		return false
	}
	d := strings.IndexAny(tail, "/?#")
	if d < 0 {
		d = len(tail)
	}
	return userinfoEnd(tail) != strings.LastIndexByte(tail[:d], '@')
}

// stripUserinfo removes the user info from raw as URL reads it (see
// userinfoEnd), so that a password holding '/', '?', '#' or '@' goes
// whole.
func stripUserinfo(raw string) string {
	tail, ok := afterSlashes(raw)
	if !ok {
		return raw
	}
	head := raw[:len(raw)-len(tail)] // "scheme://"
	if at := userinfoEnd(tail); at >= 0 {
		tail = tail[at+1:]
	}
	return head + tail
}

// afterSlashes returns what follows "scheme://" in raw: the authority
// onwards; false when raw does not start with a scheme and "//".
func afterSlashes(raw string) (string, bool) {
	i := schemeLen(raw)
	if i == 0 {
		return "", false
	}
	return strings.CutPrefix(raw[i+1:], "//")
}

package redact

import (
	"errors"
	"net/url"
	"strings"
)

// ParseURL parses raw as url.Parse does. When it fails, reason says why
// without quoting raw: url.Parse's errors quote the URL, password included.
func ParseURL(raw string) (u *url.URL, reason string) {
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
	return nil, "the user name or password is malformed (escape special characters with %XX)"
}

// stripUserinfo removes the user info from raw: everything between the
// scheme and the last "@" before the query, so that a password holding
// "/", "?" or "#" goes too.
func stripUserinfo(raw string) string {
	scheme, rest := "", raw
	if i := strings.Index(raw, "://"); i >= 0 {
		scheme, rest = raw[:i+3], raw[i+3:]
	}
	head, query, hasQuery := strings.Cut(rest, "?")
	if at := strings.LastIndex(head, "@"); at >= 0 {
		head = head[at+1:]
	}
	if hasQuery {
		head += "?" + query
	}
	return scheme + head
}

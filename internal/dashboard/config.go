// Package dashboard owns the `agentq dashboard` web server: the asynqmon UI
// and API mounted at "/" (task payloads and results shown with their secrets
// masked by redact.Redactor), an unauthenticated /healthz that pings Redis, any
// extra handlers the caller mounts (such as /metrics), optional basic or
// bearer-token authentication in front of everything but /healthz, and the
// listener's lifecycle.
//
// The server refuses to listen on a non-loopback address unless
// authentication is configured.
package dashboard

import (
	"cmp"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// AddrDefault is the listen address used when Config.Addr is empty.
const AddrDefault = "127.0.0.1:8080"

// Config configures the dashboard server.
type Config struct {
	// Addr is the host:port to listen on. A host other than a loopback
	// address or "localhost" requires BasicAuthUser/BasicAuthPassword or
	// BearerToken. Default: "127.0.0.1:8080".
	Addr string

	// ReadOnly puts asynqmon in view-only mode: its API refuses every
	// request but GET. Default: false.
	ReadOnly bool

	// BasicAuthUser, together with BasicAuthPassword, turns on HTTP basic
	// authentication. Default: "" (off).
	BasicAuthUser string

	// BasicAuthPassword is the basic-auth password. It is a secret and never
	// appears in logs or errors. Default: "".
	BasicAuthPassword string

	// BearerToken turns on "Authorization: Bearer <token>" authentication.
	// It is a secret and never appears in logs or errors. Default: "" (off).
	BearerToken string

	// RedactHeaders are secret header names (case-insensitive) whose values
	// are masked in the task payloads and results the UI shows, on top of
	// handlers' built-in ones (Authorization, Cookie, X-Api-Key, ...).
	// Default: none.
	RedactHeaders []string

	// RedactFields are secret JSON field and query parameter names
	// (case-insensitive) masked in the task payloads and results the UI
	// shows, on top of handlers' built-in ones (token, password, key, ...).
	// Default: none.
	RedactFields []string
}

// withDefaults returns c with every empty field set to its default.
func (c Config) withDefaults() Config {
	c.Addr = cmp.Or(c.Addr, AddrDefault)
	return c
}

// basicAuth reports whether basic authentication is configured.
func (c Config) basicAuth() bool { return c.BasicAuthUser != "" && c.BasicAuthPassword != "" }

// bearerAuth reports whether bearer-token authentication is configured.
func (c Config) bearerAuth() bool { return c.BearerToken != "" }

// Validate reports whether c is usable, after filling in defaults. It
// refuses an Addr that is not host:port, a non-loopback Addr without
// authentication, and half-configured basic authentication. Errors name the
// configuration key and never contain a secret.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error

	switch {
	case c.BasicAuthUser != "" && c.BasicAuthPassword == "":
		errs = append(errs, errors.New("dashboard.basic_auth_password: required when dashboard.basic_auth_user is set"))
	case c.BasicAuthUser == "" && c.BasicAuthPassword != "":
		errs = append(errs, errors.New("dashboard.basic_auth_user: required when dashboard.basic_auth_password is set"))
	}
	if strings.Contains(c.BasicAuthUser, ":") {
		// RFC 7617: the user-id cannot contain a colon.
		errs = append(errs, errors.New("dashboard.basic_auth_user: must not contain ':'"))
	}
	if strings.ContainsAny(c.BearerToken, " \t\r\n") {
		errs = append(errs, errors.New("dashboard.bearer_token: must not contain whitespace"))
	}

	host, port, err := net.SplitHostPort(c.Addr)
	if err != nil {
		errs = append(errs, fmt.Errorf("dashboard.addr: %q is not host:port: %w", c.Addr, err))
		return errors.Join(errs...)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		errs = append(errs, fmt.Errorf("dashboard.addr: %q has an invalid port %q", c.Addr, port))
	}
	if !isLoopback(host) && !c.basicAuth() && !c.bearerAuth() {
		errs = append(errs, fmt.Errorf("dashboard.addr: %s is not a loopback address; "+
			"configure dashboard.basic_auth_user/basic_auth_password or dashboard.bearer_token first", c.Addr))
	}
	return errors.Join(errs...)
}

// isLoopback reports whether host names only the local machine: "localhost",
// 127.0.0.0/8 or ::1. An empty host, an unspecified address (0.0.0.0, ::) and
// any other name bind or may bind beyond the machine, so they are not.
func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return false
	}
	return ip.Unmap().IsLoopback()
}

package dashboard

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"strings"
	"time"

	"github.com/rs/zerolog"
)

// authRealm is the realm announced in WWW-Authenticate challenges.
const authRealm = "agentq dashboard"

// requireAuth wraps next so that it only runs for requests carrying valid
// basic-auth credentials or a valid bearer token, whichever cfg configures
// (either one is enough when both are). With no authentication configured
// it returns next unchanged. Comparisons are constant-time over SHA-256
// digests, so neither the content nor the length of a secret leaks through
// timing.
func requireAuth(cfg Config, next http.Handler) http.Handler {
	basic, bearer := cfg.basicAuth(), cfg.bearerAuth()
	if !basic && !bearer {
		return next
	}
	user, pass, token := digest(cfg.BasicAuthUser), digest(cfg.BasicAuthPassword), digest(cfg.BearerToken)

	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if bearer {
			if t, ok := bearerToken(r); ok && equal(token, digest(t)) {
				next.ServeHTTP(w, r)
				return
			}
		}
		if basic {
			if u, p, ok := r.BasicAuth(); ok {
				// Evaluate both comparisons so timing does not reveal which failed.
				userOK, passOK := equal(user, digest(u)), equal(pass, digest(p))
				if userOK && passOK {
					next.ServeHTTP(w, r)
					return
				}
			}
		}
		if basic {
			w.Header().Add("WWW-Authenticate", `Basic realm="`+authRealm+`", charset="UTF-8"`)
		}
		if bearer {
			w.Header().Add("WWW-Authenticate", `Bearer realm="`+authRealm+`"`)
		}
		http.Error(w, "unauthorized", http.StatusUnauthorized)
	})
}

// bearerToken returns the token of an "Authorization: Bearer <token>"
// header. The scheme is matched case-insensitively (RFC 9110).
func bearerToken(r *http.Request) (string, bool) {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.TrimSpace(token)
	return token, token != ""
}

func digest(s string) [sha256.Size]byte { return sha256.Sum256([]byte(s)) }

func equal(a, b [sha256.Size]byte) bool { return subtle.ConstantTimeCompare(a[:], b[:]) == 1 }

// logRequests wraps next so that every request is logged at debug level
// with its method, path, status and duration. The query string is left out:
// it is not needed to follow traffic and may carry values that should not be
// logged.
func logRequests(log zerolog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w}
		next.ServeHTTP(rec, r)
		log.Debug().
			Str("method", r.Method).
			Str("path", r.URL.Path).
			Int("status", rec.statusOrOK()).
			Float64("duration_ms", float64(time.Since(start).Microseconds())/1000).
			Msg("http request")
	})
}

// statusRecorder remembers the status code written through it.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	if r.status == 0 && code >= 200 { // 1xx responses are not final
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer (Flush,
// deadlines).
func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

func (r *statusRecorder) statusOrOK() int {
	if r.status == 0 {
		return http.StatusOK
	}
	return r.status
}

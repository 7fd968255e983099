package handlers

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/agentq/agentq/jobs"
)

// roundTripFunc answers requests in memory, so a fuzz target needs no
// network.
type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// The secrets FuzzHTTPCallAnswer plants in a tool's answer. None may reach
// the step's error.
const (
	fuzzSecretField  = "S3cretFieldV4lue"
	fuzzSecretHeader = "S3cretHeaderV4lue"
	fuzzSecretURL    = "S3cretURLPassw0rd"
)

// FuzzHTTPCallAnswer feeds http.call any answer a tool can give: any status,
// Retry-After and Location header values and body bytes, with secrets
// planted in the body. The handler must classify it without panicking, the
// error must keep every planted secret out of its message, and a Retry-After
// it honours is never negative.
func FuzzHTTPCallAnswer(f *testing.F) {
	f.Add(200, "", "", []byte("ok"), []byte(""))
	f.Add(500, "", "", []byte("see http://a/%zz and http://[::1"), []byte("\x00\xff"))
	f.Add(503, "99999999999999999999", "", []byte(`{"error":"busy"}`), []byte(""))
	f.Add(429, "Wed, 21 Oct 2015 07:28:00 GMT", "", []byte(""), []byte(""))
	f.Add(302, "", "http://a/%zz", []byte(""), []byte(""))
	f.Add(307, "", "http://u:p@h/?next=http%3A%2F%2Fa%3Ab%40c%2F%zz", []byte(""), []byte(""))
	f.Add(404, "-1", "", []byte("\\\"token\\\":\\\""), []byte("\""))
	f.Add(0, "", "", []byte(""), []byte(""))
	f.Add(999, " 5 ", "\x01", []byte("\xff\xfe"), []byte("http://x/\x01?sig=%zz"))

	f.Fuzz(func(t *testing.T, code int, retryAfter, location string, prefix, suffix []byte) {
		for _, s := range []string{string(prefix), string(suffix), retryAfter, location} {
			for _, secret := range []string{fuzzSecretField, fuzzSecretHeader, fuzzSecretURL} {
				if strings.Contains(s, secret) {
					t.Skip("the input already holds a planted secret")
				}
			}
		}
		if code < 100 || code > 999 {
			code = 100 + (code%900+900)%900
		}
		body := string(prefix) + "\n" + `{"token":"` + fuzzSecretField + `"}` + "\n" +
			"Authorization: Bearer " + fuzzSecretHeader + "\n" +
			"http://user:" + fuzzSecretURL + "@tool.example/x\n" + string(suffix)
		client := &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
			if r.URL.Path != "/" {
				// A followed redirect: answer it plainly.
				return &http.Response{StatusCode: 200, Header: http.Header{}, Body: io.NopCloser(strings.NewReader("")), Request: r}, nil
			}
			h := http.Header{"Set-Cookie": {"sid=" + fuzzSecretHeader}, "X-Echo": {"Bearer " + fuzzSecretHeader, location}}
			if retryAfter != "" {
				h["Retry-After"] = []string{retryAfter}
			}
			if location != "" {
				h["Location"] = []string{location}
			}
			return &http.Response{StatusCode: code, Header: h, Body: io.NopCloser(strings.NewReader(body)), Request: r}, nil
		})}
		call := NewHTTPCall(Config{Client: client, Now: func() time.Time { return testNow }})
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s := step()
		err := call.Handle(ctx, s, HTTPCallArgs{Method: http.MethodPost, URL: "http://tool.example/"})
		if err == nil {
			// The output: JSON, headers masked (the body is the tool's
			// data and is kept as it is).
			var out HTTPCallOutput
			if err := json.Unmarshal(s.Output(), &out); err != nil {
				t.Fatalf("status %d: output %q: %v", code, s.Output(), err)
			}
			for name, v := range out.Headers {
				if strings.Contains(v, fuzzSecretHeader) {
					t.Fatalf("status %d: output header %s shows the planted secret: %q", code, name, v)
				}
			}
			return
		}
		if s.Output() != nil {
			t.Fatalf("status %d: a failed call recorded output %s", code, s.Output())
		}
		msg := err.Error()
		for _, secret := range []string{fuzzSecretField, fuzzSecretHeader, fuzzSecretURL} {
			if strings.Contains(msg, secret) {
				t.Fatalf("status %d: the error shows the planted secret %q: %s", code, secret, msg)
			}
		}
		if d, ok := jobs.RequestedDelay(err); ok && d < 0 {
			t.Fatalf("status %d, Retry-After %q: negative delay %v", code, retryAfter, d)
		}
		var he *jobs.HTTPError
		if errors.As(err, &he) {
			if he.Status != code {
				t.Fatalf("HTTPError status %d, the tool answered %d", he.Status, code)
			}
			if len(he.Body) > 2*maxExcerptBytes {
				t.Fatalf("status %d: the body excerpt is %d bytes, over its limit", code, len(he.Body))
			}
		}
	})
}

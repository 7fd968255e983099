package redact

import (
	"encoding/json"
	"strings"
	"testing"
)

// adversarial are the units that, repeated, made a pass of Text, URL or
// JSON do work per byte that grew with the input (see TestRedactorLinear).
var adversarial = []struct{ name, unit string }{
	{"equals", "="},
	{"name equals", "A=A="},
	{"escaped equals", "%41=%41="},
	{"query equals", "http://h/?a=a=a=a="},
	{"secret equals", "token="},
	{"ampersands", "&"},
	{"percents", "%"},
	{"colons", ":"},
	{"slashes", "/"},
	{"ats", "@"},
	{"questions", "?"},
	{"hashes", "#"},
	{"quotes", `"`},
	{"backslashes", `\`},
	{"schemes", "http://"},
	{"encoded schemes", "%3A%2F%2F"},
	{"scheme encoded schemes", "a%3A%2F%2F"},
	{"bearers", "Bearer "},
	{"authorization lines", "Authorization:"},
	{"secret name colons", "password:"},
	{"letters and digits", "a1b2c3d4e5"},
	{"nested query", "http://h/?a=http://h/?a="},
	{"json fields", `{"token":`},
	{"escaped json fields", `\"token\":`},
	{"quoted pairs", `password="`},
	{"userinfo", "http://u:p@"},
	{"mixed", `a=b&token=x&Bearer Bearer http://u@h/?p=%3D#`},
}

func repeatTo(unit string, n int) string {
	return strings.Repeat(unit, n/len(unit)+1)[:n]
}

func BenchmarkText1MiB(b *testing.B) {
	for _, a := range adversarial {
		in := repeatTo(a.unit, 1<<20)
		b.Run(a.name, func(b *testing.B) {
			b.SetBytes(int64(len(in)))
			for range b.N {
				r.Text(in)
			}
		})
	}
}

func BenchmarkJSON1MiB(b *testing.B) {
	for _, a := range adversarial {
		doc, _ := json.Marshal(map[string]string{"body": repeatTo(a.unit, 1<<20)})
		b.Run(a.name, func(b *testing.B) {
			b.SetBytes(int64(len(doc)))
			for range b.N {
				r.JSON(doc)
			}
		})
	}
}

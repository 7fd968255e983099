package queue

import "testing"

func TestIsEmptyObject(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		raw  string
		want bool
	}{
		{"bare", `{}`, true},
		{"spaces", " { \n} ", true},
		{"field", `{"a":1}`, false},
		{"array", `[]`, false},
		{"open only", `{`, false},
		{"two objects", `{}{}`, false},
		{"empty", ``, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := isEmptyObject([]byte(tc.raw)); got != tc.want {
				t.Fatalf("isEmptyObject(%q) = %v, want %v", tc.raw, got, tc.want)
			}
		})
	}
}

package dlq

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/agentq/agentq/jobs"
)

// TestEveryDeadClassParses: every class a dead letter can carry
// (jobs.DeadLetterClasses, which queue's TestDeadLetterClassesAreDecides
// holds to what Decide dead-letters) parses, so `dlq list --class` takes
// it; the classes of jobs that never dead-letter do not.
func TestEveryDeadClassParses(t *testing.T) {
	t.Parallel()
	for _, class := range jobs.Classes() {
		t.Run(string(class), func(t *testing.T) {
			t.Parallel()
			dead := slices.Contains(jobs.DeadLetterClasses(), class)
			got, err := ParseClass(string(class))
			if dead && (err != nil || got != class) {
				t.Fatalf("ParseClass(%q) = %q, %v: dlq refuses a class it stores", class, got, err)
			}
			if !dead && err == nil {
				t.Fatalf("ParseClass(%q) accepts a class no dead letter has", class)
			}
		})
	}
	if got, err := ParseClass(" Manual "); err != nil || got != ClassManual {
		t.Fatalf("ParseClass(manual) = %q, %v", got, err)
	}
}

// TestReadmeNamesEveryClass: the README's list of `dlq list --class`
// values is Classes.
func TestReadmeNamesEveryClass(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, list, ok := strings.Cut(string(data), "`--class` is one of ")
	list, _, ok2 := strings.Cut(list, " (archived")
	if !ok || !ok2 {
		t.Fatal("the README's list of --class values is gone")
	}
	var named []jobs.Class
	for _, m := range regexp.MustCompile("`([a-z_]+)`").FindAllStringSubmatch(list, -1) {
		named = append(named, jobs.Class(m[1]))
	}
	if !slices.Equal(named, Classes) {
		t.Fatalf("the README names the classes %v, want %v", named, Classes)
	}
}

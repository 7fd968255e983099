package queue

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// asynqAllowed are the directories (relative to the module root, with
// everything below them) whose code may know asynq: queue owns it, the
// dashboard mounts asynqmon, and the bench runs raw asynq as the baseline
// every ratio is measured against.
var asynqAllowed = []string{"queue", "internal/dashboard", "internal/bench"}

// asynqKey matches an asynq Redis key or key prefix ("asynq:{q}:pending",
// "asynq:queues"), not prose such as "deleted from asynq: %v".
var asynqKey = regexp.MustCompile(`asynq:[^\s]`)

// TestAsynqStaysInQueue enforces that no other package's code imports asynq
// or spells one of asynq's Redis keys ("asynq:..."): what they need of
// asynq goes through queue (Client, Worker, Inspector). Test files are
// left out: they may drive asynq directly to act as asynqmon or a crashed
// worker would.
func TestAsynqStaysInQueue(t *testing.T) {
	t.Parallel()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	checked := 0
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			name := d.Name()
			if rel != "." && (strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_") || name == "testdata" || name == "vendor") {
				return filepath.SkipDir
			}
			for _, a := range asynqAllowed {
				if rel == a {
					return filepath.SkipDir
				}
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		checked++
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			if p == "github.com/hibiken/asynq" || strings.HasPrefix(p, "github.com/hibiken/asynq/") {
				t.Errorf("%s imports %s: only queue (and the dashboard) may know asynq; add what it needs to queue", fset.Position(imp.Pos()), p)
			}
		}
		ast.Inspect(f, func(n ast.Node) bool {
			lit, ok := n.(*ast.BasicLit)
			if !ok || lit.Kind != token.STRING {
				return true
			}
			if s, err := strconv.Unquote(lit.Value); err == nil && asynqKey.MatchString(s) {
				t.Errorf("%s spells asynq's Redis keys (%q): only queue may know asynq's layout", fset.Position(lit.Pos()), s)
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if checked < 20 {
		t.Fatalf("checked only %d files under %s; the walk is broken", checked, root)
	}
}

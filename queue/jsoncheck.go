package queue

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"
)

// MaxPayloadDepth is how deeply a payload's arrays and objects may nest:
// `{}` is depth 1, `{"a":[1]}` depth 2. Deeper payloads are refused at
// enqueue, so that no parser after agentq (a tool's JSON library, often
// recursive: serde_json stops at 128, Ruby's JSON at 100, Python's at about
// 1000) can be driven into a stack overflow by a payload agentq accepted.
const MaxPayloadDepth = 128

// UTF8BOM is the UTF-8 encoding of U+FEFF, the byte order mark some Windows
// tools put at the start of a text file: a file's encoding, not its content.
const UTF8BOM = "\xef\xbb\xbf"

// jsonProblem is what checkJSON found wrong with a JSON text.
type jsonProblem struct {
	// what is one of the problem constants.
	what int
	// offset is the byte offset the problem was found at.
	offset int
	// key is the duplicated key, decoded.
	key string
	// path is the JSON pointer of the object holding the duplicated key.
	path string
	// limit is the depth limit that was exceeded.
	limit int
}

const (
	problemUTF8 = iota + 1
	problemDepth
	problemDuplicate
)

// maxShown bounds the key and path quoted in an error message.
const maxShown = 120

func (p *jsonProblem) Error() string {
	switch p.what {
	case problemUTF8:
		return fmt.Sprintf("invalid UTF-8 at byte offset %d (JSON text must be UTF-8; send binary data encoded, e.g. as base64)", p.offset)
	case problemDepth:
		return fmt.Sprintf("arrays and objects nest deeper than %d levels at byte offset %d", p.limit, p.offset)
	default:
		path := p.path
		if path == "" {
			path = "/"
		}
		return fmt.Sprintf("duplicate key %s in object at %s (each key may appear once)", shorten(strconv.Quote(p.key)), shorten(path))
	}
}

func shorten(s string) string {
	if len(s) <= maxShown {
		return s
	}
	cut := maxShown
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}

// invalidUTF8 returns the offset of the first byte of b that is not part of
// valid UTF-8, or -1.
func invalidUTF8(b []byte) int {
	if utf8.Valid(b) {
		return -1
	}
	for i := 0; i < len(b); {
		if b[i] < utf8.RuneSelf {
			i++
			continue
		}
		r, n := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && n == 1 {
			return i
		}
		i += n
	}
	return -1
}

// checkStructure reports a duplicate object key at any depth, or nesting
// deeper than maxDepth, in b, which must be valid JSON (json.Valid). It
// walks the text once with an explicit stack: no recursion, time linear in
// len(b) (objects with many keys switch to a map), memory bounded by
// maxDepth frames plus the keys of the open objects. Keys are compared
// decoded, so "a" and "\u0061" are the same key, as they are to every JSON
// decoder.
func checkStructure(b []byte, maxDepth int) *jsonProblem {
	c := checkers.Get().(*structChecker)
	p := c.check(b, maxDepth)
	// Drop the references into b before the checker is reused, and keep
	// only small checkers.
	clear(c.stack[:cap(c.stack)])
	clear(c.keys[:cap(c.keys)])
	if cap(c.stack) <= 64 && cap(c.keys) <= 256 {
		c.stack, c.keys = c.stack[:0], c.keys[:0]
		checkers.Put(c)
	}
	return p
}

// checkers reuses checkers, so that a typical payload is checked without
// allocating.
var checkers = sync.Pool{New: func() any { return &structChecker{stack: make([]frame, 0, 8), keys: make([][]byte, 0, 32)} }}

type frame struct {
	obj bool
	// idx is the index of the current element of an array.
	idx int
	// first is where this object's keys start in structChecker.keys.
	first int
	// cur is the key of the object's current member.
	cur []byte
	// seen holds the keys once an object has more than linearKeys.
	seen map[string]struct{}
}

// linearKeys is how many keys of one object are compared one by one before
// a map is built.
const linearKeys = 16

type structChecker struct {
	stack []frame
	keys  [][]byte
}

func (c *structChecker) check(b []byte, maxDepth int) *jsonProblem {
	c.stack, c.keys = c.stack[:0], c.keys[:0]
	expectKey := false
	for i := 0; i < len(b); {
		switch b[i] {
		case '{', '[':
			if len(c.stack) == maxDepth {
				return &jsonProblem{what: problemDepth, offset: i, limit: maxDepth}
			}
			obj := b[i] == '{'
			c.stack = append(c.stack, frame{obj: obj, first: len(c.keys)})
			expectKey = obj
			i++
		case '}', ']':
			if n := len(c.stack); n > 0 {
				c.keys = c.keys[:c.stack[n-1].first]
				c.stack = c.stack[:n-1]
			}
			expectKey = false
			i++
		case ',':
			if n := len(c.stack); n > 0 {
				if c.stack[n-1].obj {
					expectKey = true
				} else {
					c.stack[n-1].idx++
				}
			}
			i++
		case '"':
			end := stringEnd(b, i)
			if expectKey && len(c.stack) > 0 {
				expectKey = false
				if p := c.addKey(b[i:end]); p != nil {
					return p
				}
			}
			i = end
		default:
			i++
		}
	}
	return nil
}

// stringEnd returns the offset just past the JSON string starting at b[i].
func stringEnd(b []byte, i int) int {
	j := i + 1
	for {
		k := bytes.IndexByte(b[j:], '"')
		if k < 0 {
			return len(b)
		}
		j += k
		// The quote ends the string unless an odd number of backslashes
		// precede it.
		bs := 0
		for m := j - 1; m > i && b[m] == '\\'; m-- {
			bs++
		}
		j++
		if bs%2 == 0 {
			return j
		}
	}
}

// addKey records the quoted key raw in the innermost object and reports it
// if the object already has it.
func (c *structChecker) addKey(raw []byte) *jsonProblem {
	key := raw[1 : len(raw)-1]
	if bytes.IndexByte(key, '\\') >= 0 {
		var s string
		if err := json.Unmarshal(raw, &s); err == nil {
			key = []byte(s)
		}
	}
	f := &c.stack[len(c.stack)-1]
	f.cur = key
	dup := false
	switch {
	case f.seen != nil:
		_, dup = f.seen[string(key)]
		f.seen[string(key)] = struct{}{}
	case len(c.keys)-f.first >= linearKeys:
		f.seen = make(map[string]struct{}, 2*linearKeys)
		for _, k := range c.keys[f.first:] {
			f.seen[string(k)] = struct{}{}
		}
		_, dup = f.seen[string(key)]
		f.seen[string(key)] = struct{}{}
	default:
		for _, k := range c.keys[f.first:] {
			if bytes.Equal(k, key) {
				dup = true
				break
			}
		}
		c.keys = append(c.keys, key)
	}
	if !dup {
		return nil
	}
	return &jsonProblem{what: problemDuplicate, key: string(key), path: c.pointer()}
}

// pointer returns the JSON pointer (RFC 6901) of the innermost open value.
func (c *structChecker) pointer() string {
	var sb strings.Builder
	for _, f := range c.stack[:len(c.stack)-1] {
		sb.WriteByte('/')
		if f.obj {
			sb.WriteString(strings.NewReplacer("~", "~0", "/", "~1").Replace(string(f.cur)))
		} else {
			sb.WriteString(strconv.Itoa(f.idx))
		}
		if sb.Len() > 4*maxShown {
			break
		}
	}
	return sb.String()
}

// checkJSON reports the first problem of payload as JSON text: invalid
// UTF-8, invalid JSON, nesting deeper than MaxPayloadDepth or a duplicate
// key. It returns the reason, in words, or "".
func checkJSON(payload []byte) string {
	if bytes.HasPrefix(payload, []byte(UTF8BOM)) {
		return "starts with a UTF-8 byte order mark (BOM); remove it, JSON text has none"
	}
	if off := invalidUTF8(payload); off >= 0 {
		return (&jsonProblem{what: problemUTF8, offset: off}).Error()
	}
	if !json.Valid(payload) {
		var v any
		err := json.Unmarshal(payload, &v)
		return "payload is not valid JSON: " + errString(err)
	}
	if p := checkStructure(payload, MaxPayloadDepth); p != nil {
		return p.Error()
	}
	return ""
}

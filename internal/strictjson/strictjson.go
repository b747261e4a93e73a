// Package strictjson owns the one check encoding/json does not make of a
// request body: that no object names a key twice. encoding/json keeps the
// last of two equal keys, so {"to":0,"to":5000} would silently scale to
// 5000; Spillway's API refuses such bodies instead.
package strictjson

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// DuplicateKeyError is an object that names a key twice.
type DuplicateKeyError struct {
	// Path is the JSON path of the object's second key, e.g. "alerts[2].labels.service".
	Path string
	// Line and Column locate the second key in the body (1-based).
	Line, Column int
}

func (e *DuplicateKeyError) Error() string {
	return fmt.Sprintf("line %d, column %d: %s: duplicate key", e.Line, e.Column, e.Path)
}

// Keys says how two keys of an object are the same key.
type Keys int

const (
	// Exact compares keys as JSON decodes them (escapes resolved, invalid
	// UTF-8 as U+FFFD): for objects decoded into maps, such as labels,
	// where "Service" and "service" are two keys.
	Exact Keys = iota
	// FoldCase also takes keys that differ only in case as the same, as
	// encoding/json does when it decodes into a struct: {"to":0,"TO":5000}
	// sets one field twice.
	FoldCase
)

// CheckDuplicateKeys reports the first object in data that names a key
// twice, as a *DuplicateKeyError. It returns nil for valid JSON without
// duplicates, and also for malformed JSON: the decoder that follows reports
// that with its own position. It scans the bytes once, without decoding
// them, so a 16 MB Alertmanager notification costs milliseconds.
func CheckDuplicateKeys(data []byte, same Keys) error {
	var stack []frame
	for i := 0; i < len(data); i++ {
		switch data[i] {
		case '{', '[':
			if n := len(stack); n > 0 && stack[n-1].obj && stack[n-1].wantKey {
				return nil // a value where a key belongs: malformed
			}
			stack = push(stack, data[i] == '{')
		case '}', ']':
			if len(stack) == 0 {
				return nil // malformed
			}
			stack = stack[:len(stack)-1]
		case ',':
			if len(stack) == 0 {
				return nil
			}
			if top := &stack[len(stack)-1]; top.obj {
				top.wantKey = true
			} else {
				top.idx++
			}
		case '"':
			end := stringEnd(data, i+1)
			if end < 0 {
				return nil // unterminated: malformed
			}
			if n := len(stack); n > 0 && stack[n-1].obj && stack[n-1].wantKey {
				top := &stack[n-1]
				top.wantKey = false
				key := data[i+1 : end]
				if key, dup := top.seen(key, same); dup {
					line, col := Position(data, int64(i))
					return &DuplicateKeyError{Path: path(stack, key), Line: line, Column: col}
				}
			}
			i = end
		}
	}
	return nil
}

// push opens an object or an array, reusing the memory of a frame that
// was popped.
func push(stack []frame, obj bool) []frame {
	if len(stack) == cap(stack) {
		return append(stack, frame{obj: obj, wantKey: obj})
	}
	stack = stack[:len(stack)+1]
	f := &stack[len(stack)-1]
	*f = frame{obj: obj, wantKey: obj, keys: f.keys[:0]}
	return stack
}

// frame is an object or array being scanned.
type frame struct {
	obj, wantKey bool
	idx          int      // an array's current element
	keys         [][]byte // an object's keys so far, raw
	set          map[string]struct{}
}

// seen records key and reports whether the object already had it, with
// the key as compared: as JSON decodes it, escapes resolved.
func (f *frame) seen(raw []byte, same Keys) ([]byte, bool) {
	key := raw
	if bytes.IndexByte(raw, '\\') >= 0 || !utf8.Valid(raw) {
		var s string
		if json.Unmarshal(append(append([]byte{'"'}, raw...), '"'), &s) != nil {
			return raw, false // a malformed escape: the decoder reports it
		}
		key = []byte(s)
	}
	equal := bytes.Equal
	if same == FoldCase {
		equal = bytes.EqualFold
	}
	if f.set == nil && len(f.keys) < 16 {
		for _, k := range f.keys {
			if equal(k, key) {
				return key, true
			}
		}
		f.keys = append(f.keys, key)
		return key, false
	}
	index := func(k []byte) string {
		if same == FoldCase {
			return strings.ToLower(strings.ToUpper(string(k)))
		}
		return string(k)
	}
	if f.set == nil {
		f.set = make(map[string]struct{}, 2*len(f.keys))
		for _, k := range f.keys {
			f.set[index(k)] = struct{}{}
		}
	}
	if _, dup := f.set[index(key)]; dup {
		return key, true
	}
	f.set[index(key)] = struct{}{}
	f.keys = append(f.keys, key)
	return key, false
}

// stringEnd returns the index of the quote that closes the string whose
// content starts at i, or -1.
func stringEnd(data []byte, i int) int {
	for i < len(data) {
		j := bytes.IndexAny(data[i:], "\"\\")
		if j < 0 {
			return -1
		}
		i += j
		if data[i] == '"' {
			return i
		}
		i += 2 // a backslash and the character it escapes
	}
	return -1
}

// path is the JSON path of dup, a key of the innermost object.
func path(stack []frame, dup []byte) string {
	var b strings.Builder
	for i, f := range stack {
		if !f.obj {
			b.WriteString("[" + strconv.Itoa(f.idx) + "]")
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		switch {
		case i == len(stack)-1:
			b.Write(dup)
		case len(f.keys) > 0:
			b.Write(f.keys[len(f.keys)-1])
		}
	}
	return b.String()
}

// Position converts a byte offset in data into a 1-based line and column,
// for errors that point into a JSON body (an offset past the end points at
// the end).
func Position(data []byte, offset int64) (line, col int) {
	offset = min(max(offset, 0), int64(len(data)))
	before := data[:offset]
	line = bytes.Count(before, []byte{'\n'}) + 1
	col = int(offset) - bytes.LastIndexByte(before, '\n')
	return line, col
}

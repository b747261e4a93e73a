// Package strictjson owns the one check encoding/json does not make of a
// request body: that no object names a key twice. encoding/json keeps the
// last of two equal keys, so {"to":0,"to":5000} would silently scale to
// 5000; Spillway's API refuses such bodies instead.
package strictjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
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

// CheckDuplicateKeys reports the first object in data that names a key
// twice, as a *DuplicateKeyError. It returns nil for valid JSON without
// duplicates, and also for malformed JSON: the decoder that follows reports
// that with its own position.
func CheckDuplicateKeys(data []byte) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	err := walk(dec, data, "")
	var dup *DuplicateKeyError
	if errors.As(err, &dup) {
		return dup
	}
	return nil
}

// walk reads one value from dec, checking the keys of every object in it.
func walk(dec *json.Decoder, data []byte, path string) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	d, ok := tok.(json.Delim)
	if !ok {
		return nil // a scalar
	}
	switch d {
	case '{':
		seen := map[string]struct{}{}
		for dec.More() {
			at := dec.InputOffset()
			tok, err := dec.Token()
			if err != nil {
				return err
			}
			key, _ := tok.(string)
			child := key
			if path != "" {
				child = path + "." + key
			}
			if _, dup := seen[key]; dup {
				line, col := position(data, at)
				return &DuplicateKeyError{Path: child, Line: line, Column: col}
			}
			seen[key] = struct{}{}
			if err := walk(dec, data, child); err != nil {
				return err
			}
		}
	case '[':
		for i := 0; dec.More(); i++ {
			if err := walk(dec, data, path+"["+strconv.Itoa(i)+"]"); err != nil {
				return err
			}
		}
	}
	_, err = dec.Token() // the closing delimiter
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// position converts the offset just before a key (it may point at the
// separator or space before it) into the 1-based line and column of the
// key's opening quote.
func position(data []byte, offset int64) (int, int) {
	offset = min(offset, int64(len(data)))
	for offset < int64(len(data)) && strings.IndexByte(", \t\r\n", data[offset]) >= 0 {
		offset++
	}
	before := data[:offset]
	line := bytes.Count(before, []byte{'\n'}) + 1
	col := int(offset) - bytes.LastIndexByte(before, '\n')
	return line, col
}

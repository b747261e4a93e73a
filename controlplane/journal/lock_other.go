//go:build !unix

package journal

import (
	"errors"
	"os"
)

var errWouldBlock = errors.New("would block")

// flock is a no-op where flock(2) does not exist: the journal is not
// guarded against a second process there.
func flock(*os.File) error { return nil }

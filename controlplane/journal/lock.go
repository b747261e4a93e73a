package journal

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
)

// ErrInUse is wrapped by OpenExclusive when another process holds the
// journal.
var ErrInUse = errors.New("the journal is in use by another process")

// fileLock is an advisory lock on a journal's lock file, held for the life
// of the open journal. The kernel drops it when the process ends, however
// it ends, so a crashed serve never leaves the journal locked.
type fileLock struct{ f *os.File }

// lockFile takes the lock on path without waiting and writes this
// process's ID into the file, for the error a second process gets. It
// fails, wrapping ErrInUse, while another process holds it.
func lockFile(path string) (*fileLock, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening the lock file %s: %w", path, err)
	}
	if err := flock(f); err != nil {
		holder, _ := os.ReadFile(path)
		f.Close()
		if errors.Is(err, errWouldBlock) {
			who := "another process"
			if pid := string(bytes.TrimSpace(holder)); pid != "" {
				who = "process " + pid
			}
			return nil, fmt.Errorf("%w: %s holds %s", ErrInUse, who, path)
		}
		return nil, fmt.Errorf("locking %s: %w", path, err)
	}
	// Best effort: the PID only improves the message.
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &fileLock{f: f}, nil
}

// unlock releases the lock. The lock file stays: removing it would let a
// third process lock a new file while a second still holds the old one.
func (l *fileLock) unlock() error {
	if l == nil {
		return nil
	}
	return l.f.Close()
}

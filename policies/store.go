package policies

import (
	"sync"
	"sync/atomic"
)

// Store holds the active policy set of a directory and replaces it only
// when a reload loads and validates completely. Readers call Set without
// locking; SIGHUP and POST /v1/reload can share one Reload.
type Store struct {
	dir string
	mu  sync.Mutex // serializes reloads
	set atomic.Pointer[Set]
}

// NewStore loads dir. The first load must succeed: there is nothing to
// fall back to.
func NewStore(dir string) (*Store, error) {
	set, err := LoadDir(dir)
	if err != nil {
		return nil, err
	}
	s := &Store{dir: dir}
	s.set.Store(set)
	return s, nil
}

// Dir is the directory the store loads.
func (s *Store) Dir() string { return s.dir }

// Set returns the active set.
func (s *Store) Set() *Set { return s.set.Load() }

// Reload loads the directory again. On success it swaps the new set in
// and reports whether the content changed (by [Set.Hash]); on failure it
// keeps the active set and returns every error ([strictyaml.Errors]).
func (s *Store) Reload() (changed bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	set, err := LoadDir(s.dir)
	if err != nil {
		return false, err
	}
	old := s.set.Swap(set)
	return old == nil || old.Hash() != set.Hash(), nil
}

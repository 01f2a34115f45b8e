package config

import "sync"

// Shared holds the values built from config settings that every plugin
// instance with the same settings shares within the plugin-server process
// (Redis clients, JWKS sets, followers, caches): go-pdk starts a new
// instance on every config change and never stops the old one, so sharing
// by settings keeps one of each instead of one per instance ever made.
type Shared[K comparable, V any] struct {
	mu sync.Mutex
	m  map[K]V
}

// Get returns the value for key, building it on first use. A failed build
// is not kept: the next call tries again.
func (s *Shared[K, V]) Get(key K, build func() (V, error)) (V, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if v, ok := s.m[key]; ok {
		return v, nil
	}
	v, err := build()
	if err != nil {
		return v, err
	}
	if s.m == nil {
		s.m = map[K]V{}
	}
	s.m[key] = v
	return v, nil
}

// Range calls fn for every value built so far, in no particular order (for
// metrics collectors). It works on a copy taken under the lock, so fn may be
// slow or call Get without blocking other callers or deadlocking.
func (s *Shared[K, V]) Range(fn func(K, V)) {
	s.mu.Lock()
	keys := make([]K, 0, len(s.m))
	vals := make([]V, 0, len(s.m))
	for k, v := range s.m {
		keys = append(keys, k)
		vals = append(vals, v)
	}
	s.mu.Unlock()
	for i := range keys {
		fn(keys[i], vals[i])
	}
}

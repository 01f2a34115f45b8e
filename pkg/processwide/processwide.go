// Package processwide holds what a plugin server builds once per process
// and every plugin instance shares (Redis clients, JWKS sets, followers,
// caches), away from any one instance: go-pdk starts a new instance on
// every config change and drops idle ones, so a value kept per instance
// would be built again and again, and lost with it.
package processwide

import "sync"

// Map holds the values built from config settings that every plugin
// instance with the same settings shares within the plugin-server process:
// one of each per key (the settings) instead of one per instance ever made.
type Map[K comparable, V any] struct {
	mu sync.Mutex
	m  map[K]V
}

// Get returns the value for key, building it on first use. A failed build
// is not kept: the next call tries again.
func (s *Map[K, V]) Get(key K, build func() (V, error)) (V, error) {
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
func (s *Map[K, V]) Range(fn func(K, V)) {
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

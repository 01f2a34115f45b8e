package ownership

import (
	"bufio"
	"context"
	"crypto/subtle"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/redis/go-redis/v9"
)

// Store reads and writes pairs under one layout.
type Store struct {
	rdb    redis.UniversalClient
	layout Layout
}

// NewStore uses rdb with the given key prefix ("" for DefaultPrefix).
func NewStore(rdb redis.UniversalClient, prefix string) *Store {
	if prefix == "" {
		prefix = DefaultPrefix
	}
	return &Store{rdb: rdb, layout: Layout{Prefix: prefix}}
}

// Layout returns the store's layout.
func (s *Store) Layout() Layout { return s.layout }

// Put records that customer owns (country, id). The backend calls it before
// committing the subscription, and rolls its transaction back if Put fails.
func (s *Store) Put(ctx context.Context, country string, id int64, customer UUID) error {
	return s.rdb.HSet(ctx, s.layout.Key(country, id), s.layout.Field(id), customer[:]).Err()
}

// Delete removes the pair (for a rollback, or a subscription moved away).
func (s *Store) Delete(ctx context.Context, country string, id int64) error {
	return s.rdb.HDel(ctx, s.layout.Key(country, id), s.layout.Field(id)).Err()
}

// Lookup returns the owner of (country, id); found is false when the pair
// does not exist. A stored value that is not 16 bytes is an error, never
// an owner.
func (s *Store) Lookup(ctx context.Context, country string, id int64) (owner UUID, found bool, err error) {
	v, err := s.rdb.HGet(ctx, s.layout.Key(country, id), s.layout.Field(id)).Bytes()
	if errors.Is(err, redis.Nil) {
		return owner, false, nil
	}
	if err != nil {
		return owner, false, err
	}
	if len(v) != len(owner) {
		return owner, false, fmt.Errorf("ownership: value for %s:%d has %d bytes, want 16", country, id, len(v))
	}
	copy(owner[:], v)
	return owner, true, nil
}

// Owns reports whether customer owns (country, id), comparing in constant
// time. An unknown pair is simply not owned.
func (s *Store) Owns(ctx context.Context, country string, id int64, customer UUID) (bool, error) {
	owner, found, err := s.Lookup(ctx, country, id)
	if err != nil || !found {
		return false, err
	}
	return subtle.ConstantTimeCompare(owner[:], customer[:]) == 1, nil
}

// Rejection is a CSV line that was not imported.
type Rejection struct {
	Line   int
	Reason string
}

// Report is the outcome of an import.
type Report struct {
	Written  int
	Rejected []Rejection
}

// ImportBatch is the number of HSETs sent per pipeline round trip.
const ImportBatch = 1000

// Import backfills pairs from CSV lines "country,subscription_id,customer_uuid"
// (a header line with those names is skipped), pipelined in batches. Bad
// lines are reported with their line numbers and skipped; a Redis error
// stops the import and is returned with the report so far (rows already
// written stay written: HSET is idempotent, so rerunning is safe).
func (s *Store) Import(ctx context.Context, r io.Reader) (Report, error) {
	var rep Report
	cr := csv.NewReader(bufio.NewReader(r))
	cr.FieldsPerRecord = -1
	cr.ReuseRecord = true
	pipe := s.rdb.Pipeline()
	pending := 0
	flush := func() error {
		if pending == 0 {
			return nil
		}
		_, err := pipe.Exec(ctx)
		if err == nil {
			rep.Written += pending
		}
		pending = 0
		return err
	}
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			var pe *csv.ParseError
			if errors.As(err, &pe) {
				rep.Rejected = append(rep.Rejected, Rejection{Line: pe.StartLine, Reason: pe.Err.Error()})
				continue
			}
			return rep, err
		}
		line, _ := cr.FieldPos(0)
		if line == 1 && len(rec) == 3 && strings.EqualFold(strings.TrimSpace(rec[0]), "country") {
			continue
		}
		country, id, customer, err := parseRow(rec)
		if err != nil {
			rep.Rejected = append(rep.Rejected, Rejection{Line: line, Reason: err.Error()})
			continue
		}
		pipe.HSet(ctx, s.layout.Key(country, id), s.layout.Field(id), customer[:])
		if pending++; pending == ImportBatch {
			if err := flush(); err != nil {
				return rep, err
			}
		}
	}
	return rep, flush()
}

func parseRow(rec []string) (string, int64, UUID, error) {
	if len(rec) != 3 {
		return "", 0, UUID{}, fmt.Errorf("want 3 fields (country,subscription_id,customer_uuid), got %d", len(rec))
	}
	country, err := Country(strings.TrimSpace(rec[0]))
	if err != nil {
		return "", 0, UUID{}, err
	}
	id, err := ParseID(strings.TrimSpace(rec[1]))
	if err != nil {
		return "", 0, UUID{}, fmt.Errorf("subscription_id %q: %w", rec[1], err)
	}
	customer, err := ParseUUID(strings.TrimSpace(rec[2]))
	if err != nil {
		return "", 0, UUID{}, err
	}
	return country, id, customer, nil
}

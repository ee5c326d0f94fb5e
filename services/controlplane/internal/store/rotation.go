package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/google/uuid"

	"github.com/orrery/orrery/services/controlplane/internal/store/internal/dbsqlc"
)

// rotationPage is how many rows a rotation reads at a time.
const rotationPage = 100

// Rotation counts what RotateSecrets sealed again.
type Rotation struct {
	// KeyID is the key every secret is now sealed with.
	KeyID string
	// Rows counts rows that held a secret sealed with another key; Values counts those secrets.
	Rows, Values int
}

// RotateSecrets seals every stored secret that was sealed with another key again with the keyring's current
// key. Each row is rewritten in its own short transaction under a row lock, so writers wait at most for one
// row and nothing is stopped; every replica must hold the old and the new key until it returns. Values are
// only re-encrypted, never changed, so satellites see the same configuration and nothing restarts.
func (s *Store) RotateSecrets(ctx context.Context) (Rotation, error) {
	r := Rotation{KeyID: s.keyring.Current()}
	err := rotateTable(ctx, s, &r, "catalog entry", func(after uuid.UUID) ([]sealedRow[uuid.UUID], error) {
		rows, err := s.q.ListCatalogEntrySecrets(ctx, after, rotationPage)
		out := make([]sealedRow[uuid.UUID], len(rows))
		for i, row := range rows {
			out[i] = sealedRow[uuid.UUID]{row.ID, [][]byte{row.Env, row.Headers, row.QueryParams}}
		}
		return out, err
	}, s.rotateCatalogEntry)
	if err != nil {
		return r, err
	}
	err = rotateTable(ctx, s, &r, "installation", func(after uuid.UUID) ([]sealedRow[uuid.UUID], error) {
		rows, err := s.q.ListInstallationSecrets(ctx, after, rotationPage)
		out := make([]sealedRow[uuid.UUID], len(rows))
		for i, row := range rows {
			out[i] = sealedRow[uuid.UUID]{row.ID, [][]byte{row.ArgValues, row.Env, row.Headers, row.QueryParams}}
		}
		return out, err
	}, s.rotateInstallation)
	if err != nil {
		return r, err
	}
	err = rotateTable(ctx, s, &r, "user configuration", func(after userKey) ([]sealedRow[userKey], error) {
		rows, err := s.q.ListUserConfigurationSecrets(ctx, after.installationID, after.userID, rotationPage)
		out := make([]sealedRow[userKey], len(rows))
		for i, row := range rows {
			out[i] = sealedRow[userKey]{userKey{row.InstallationID, row.UserID}, [][]byte{row.ArgValues, row.Env, row.Headers, row.QueryParams}}
		}
		return out, err
	}, s.rotateUserConfiguration)
	return r, err
}

// userKey identifies a user configuration.
type userKey struct{ installationID, userID uuid.UUID }

// sealedRow is a row's key and its settings columns, as listed without a lock.
type sealedRow[K any] struct {
	key  K
	cols [][]byte
}

// rotateTable pages through a table by key and rotates each row that holds a stale secret.
func rotateTable[K any](ctx context.Context, s *Store, r *Rotation, what string, list func(after K) ([]sealedRow[K], error),
	rotate func(ctx context.Context, q *dbsqlc.Queries, key K) (int, error)) error {
	var after K
	for {
		rows, err := list(after)
		if err != nil {
			return translate(err, "list "+what+" secrets")
		}
		for _, row := range rows {
			after = row.key
			if !s.stale(row.cols...) {
				continue
			}
			if err := s.rotateRow(ctx, r, func(q *dbsqlc.Queries) (int, error) { return rotate(ctx, q, row.key) }); err != nil {
				return fmt.Errorf("%s %v: %w", what, row.key, err)
			}
		}
		if len(rows) < rotationPage {
			return nil
		}
	}
}

// rotateRow runs one row's rotation in its own transaction and counts it. A row deleted since it was listed
// needs nothing.
func (s *Store) rotateRow(ctx context.Context, r *Rotation, fn func(q *dbsqlc.Queries) (int, error)) error {
	var n int
	err := s.inTx(ctx, func(q *dbsqlc.Queries) error {
		var err error
		n, err = fn(q)
		return err
	})
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err == nil && n > 0 {
		r.Rows++
		r.Values += n
	}
	return err
}

func (s *Store) rotateCatalogEntry(ctx context.Context, q *dbsqlc.Queries, id uuid.UUID) (int, error) {
	row, err := q.LockCatalogEntrySecrets(ctx, id)
	if err != nil {
		return 0, translate(err, "lock")
	}
	cols, n, err := s.reseal(row.Env, row.Headers, row.QueryParams)
	if err != nil || n == 0 {
		return 0, err
	}
	return n, translate(q.SetCatalogEntrySecrets(ctx, cols[0], cols[1], cols[2], id), "store")
}

func (s *Store) rotateInstallation(ctx context.Context, q *dbsqlc.Queries, id uuid.UUID) (int, error) {
	row, err := q.LockInstallationSecrets(ctx, id)
	if err != nil {
		return 0, translate(err, "lock")
	}
	cols, n, err := s.reseal(row.ArgValues, row.Env, row.Headers, row.QueryParams)
	if err != nil || n == 0 {
		return 0, err
	}
	return n, translate(q.SetInstallationSecrets(ctx, dbsqlc.SetInstallationSecretsParams{
		ArgValues: cols[0], Env: cols[1], Headers: cols[2], QueryParams: cols[3], ID: id,
	}), "store")
}

func (s *Store) rotateUserConfiguration(ctx context.Context, q *dbsqlc.Queries, key userKey) (int, error) {
	row, err := q.LockUserConfigurationSecrets(ctx, key.installationID, key.userID)
	if err != nil {
		return 0, translate(err, "lock")
	}
	cols, n, err := s.reseal(row.ArgValues, row.Env, row.Headers, row.QueryParams)
	if err != nil || n == 0 {
		return 0, err
	}
	return n, translate(q.SetUserConfigurationSecrets(ctx, dbsqlc.SetUserConfigurationSecretsParams{
		ArgValues: cols[0], Env: cols[1], Headers: cols[2], QueryParams: cols[3], InstallationID: key.installationID,
		UserID: key.userID,
	}), "store")
}

// stale reports whether any of the stored settings columns holds a secret sealed with another key. Columns
// that do not decode are left to reseal, which reports them.
func (s *Store) stale(cols ...[]byte) bool {
	for _, raw := range cols {
		stored, err := decodeStored(raw)
		if err != nil {
			return true
		}
		for _, v := range stored {
			if v.Secret && s.keyring.Stale(v.Sealed) {
				return true
			}
		}
	}
	return false
}

// reseal seals the stale secrets of settings columns again with the current key, returning the columns and
// how many values changed.
func (s *Store) reseal(cols ...[]byte) ([][]byte, int, error) {
	out := make([][]byte, len(cols))
	changed := 0
	for i, raw := range cols {
		stored, err := decodeStored(raw)
		if err != nil {
			return nil, 0, err
		}
		for name, v := range stored {
			if !v.Secret || !s.keyring.Stale(v.Sealed) {
				continue
			}
			plain, err := s.keyring.Open(v.Sealed)
			if err != nil {
				return nil, 0, fmt.Errorf("open %q: %w", name, err)
			}
			if v.Sealed, err = s.keyring.Seal(plain); err != nil {
				return nil, 0, fmt.Errorf("seal %q: %w", name, err)
			}
			stored[name] = v
			changed++
		}
		if stored == nil {
			stored = map[string]storedSetting{}
		}
		if out[i], err = json.Marshal(stored); err != nil {
			return nil, 0, err
		}
	}
	return out, changed, nil
}

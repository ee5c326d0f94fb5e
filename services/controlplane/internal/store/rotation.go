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
	for after := uuid.Nil; ; {
		rows, err := s.q.ListCatalogEntrySecrets(ctx, after, rotationPage)
		if err != nil {
			return r, translate(err, "list catalog entries")
		}
		for _, row := range rows {
			after = row.ID
			if s.stale(row.Env, row.Headers, row.QueryParams) {
				if err := s.rotateRow(ctx, &r, func(q *dbsqlc.Queries) (int, error) { return s.rotateCatalogEntry(ctx, q, row.ID) }); err != nil {
					return r, fmt.Errorf("catalog entry %s: %w", row.ID, err)
				}
			}
		}
		if len(rows) < rotationPage {
			break
		}
	}
	for after := uuid.Nil; ; {
		rows, err := s.q.ListInstallationSecrets(ctx, after, rotationPage)
		if err != nil {
			return r, translate(err, "list installations")
		}
		for _, row := range rows {
			after = row.ID
			if s.stale(row.ArgValues, row.Env, row.Headers, row.QueryParams) {
				if err := s.rotateRow(ctx, &r, func(q *dbsqlc.Queries) (int, error) { return s.rotateInstallation(ctx, q, row.ID) }); err != nil {
					return r, fmt.Errorf("installation %s: %w", row.ID, err)
				}
			}
		}
		if len(rows) < rotationPage {
			break
		}
	}
	for afterInst, afterUser := uuid.Nil, uuid.Nil; ; {
		rows, err := s.q.ListUserConfigurationSecrets(ctx, afterInst, afterUser, rotationPage)
		if err != nil {
			return r, translate(err, "list user configurations")
		}
		for _, row := range rows {
			afterInst, afterUser = row.InstallationID, row.UserID
			if s.stale(row.ArgValues, row.Env, row.Headers, row.QueryParams) {
				if err := s.rotateRow(ctx, &r, func(q *dbsqlc.Queries) (int, error) {
					return s.rotateUserConfiguration(ctx, q, row.InstallationID, row.UserID)
				}); err != nil {
					return r, fmt.Errorf("user configuration %s/%s: %w", row.InstallationID, row.UserID, err)
				}
			}
		}
		if len(rows) < rotationPage {
			break
		}
	}
	return r, nil
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

func (s *Store) rotateUserConfiguration(ctx context.Context, q *dbsqlc.Queries, installationID, userID uuid.UUID) (int, error) {
	row, err := q.LockUserConfigurationSecrets(ctx, installationID, userID)
	if err != nil {
		return 0, translate(err, "lock")
	}
	cols, n, err := s.reseal(row.ArgValues, row.Env, row.Headers, row.QueryParams)
	if err != nil || n == 0 {
		return 0, err
	}
	return n, translate(q.SetUserConfigurationSecrets(ctx, dbsqlc.SetUserConfigurationSecretsParams{
		ArgValues: cols[0], Env: cols[1], Headers: cols[2], QueryParams: cols[3], InstallationID: installationID,
		UserID: userID,
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

package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	"github.com/google/uuid"

	"github.com/orrery/orrery/services/controlplane/internal/store/internal/dbsqlc"
)

// PutSourceArchive stores an archive teamID uploaded for its templates built from source and returns its
// SHA-256 in lowercase hex. Storing the same archive again changes nothing.
func (s *Store) PutSourceArchive(ctx context.Context, teamID uuid.UUID, content []byte) (string, error) {
	sum := sha256.Sum256(content)
	digest := hex.EncodeToString(sum[:])
	if err := s.q.DeleteUnusedSourceArchives(ctx, teamID); err != nil {
		return "", translate(err, "put source archive")
	}
	stored, err := s.q.PutSourceArchive(ctx, dbsqlc.PutSourceArchiveParams{
		TeamID: teamID, Sha256: digest, Content: content, Size: int64(len(content)), MaxBytes: MaxTeamSourceArchiveBytes,
	})
	if err != nil {
		return "", translate(err, "put source archive")
	}
	if stored == 0 {
		exists, err := s.SourceArchiveExists(ctx, teamID, digest)
		if err != nil {
			return "", err
		}
		if !exists {
			return "", fmt.Errorf("put source archive: %w", ErrLimit)
		}
	}
	return digest, nil
}

// MaxTeamSourceArchiveBytes bounds what one team's uploaded archives take in the database all tenants share.
const MaxTeamSourceArchiveBytes = 256 << 20

// SourceArchive returns the archive teamID uploaded with the SHA-256 digest, or ErrNotFound: another
// team's archive is not found either.
func (s *Store) SourceArchive(ctx context.Context, teamID uuid.UUID, digest string) ([]byte, error) {
	content, err := s.q.GetSourceArchive(ctx, teamID, digest)
	if err != nil {
		return nil, translate(err, "source archive")
	}
	return content, nil
}

// SourceArchiveExists reports whether teamID uploaded an archive with the SHA-256 digest.
func (s *Store) SourceArchiveExists(ctx context.Context, teamID uuid.UUID, digest string) (bool, error) {
	ok, err := s.q.SourceArchiveExists(ctx, teamID, digest)
	if err != nil {
		return false, translate(err, "source archive")
	}
	return ok, nil
}

package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"

	"github.com/google/uuid"
)

// PutSourceArchive stores an archive teamID uploaded for its templates built from source and returns its
// SHA-256 in lowercase hex. Storing the same archive again changes nothing.
func (s *Store) PutSourceArchive(ctx context.Context, teamID uuid.UUID, content []byte) (string, error) {
	sum := sha256.Sum256(content)
	digest := hex.EncodeToString(sum[:])
	if err := s.q.PutSourceArchive(ctx, teamID, digest, content, int64(len(content))); err != nil {
		return "", translate(err, "put source archive")
	}
	return digest, nil
}

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

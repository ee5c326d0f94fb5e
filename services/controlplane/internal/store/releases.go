package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/orrery/orrery/services/controlplane/internal/store/internal/dbsqlc"
)

// ReleaseChunkSize is the largest piece of a release's binary stored in one row and sent in one answer.
const ReleaseChunkSize = 1 << 20

// ErrReleaseMismatch means an uploaded binary is not the one its release describes: another size or
// another SHA-256.
var ErrReleaseMismatch = errors.New("the uploaded binary does not match the release's size and SHA-256")

// SatelliteRelease is a satellite binary published for self-update.
type SatelliteRelease struct {
	ID            uuid.UUID
	Version       string
	Platform      string
	SHA256        string
	Signature     []byte
	Size          int64
	UploadedBytes int64
	Complete      bool
	CreatedBy     *uuid.UUID
	CreatedAt     time.Time
}

func releaseFromRow(r dbsqlc.SatelliteRelease) SatelliteRelease {
	return SatelliteRelease{
		ID: r.ID, Version: r.Version, Platform: r.Platform, SHA256: r.Sha256, Signature: r.Signature, Size: r.Size,
		UploadedBytes: r.UploadedBytes, Complete: r.Complete, CreatedBy: r.CreatedBy, CreatedAt: r.CreatedAt,
	}
}

// CreateSatelliteRelease stores a release waiting for its binary. A release of the same version and
// platform is ErrAlreadyExists.
func (s *Store) CreateSatelliteRelease(ctx context.Context, r SatelliteRelease) (SatelliteRelease, error) {
	row, err := s.q.CreateSatelliteRelease(ctx, dbsqlc.CreateSatelliteReleaseParams{
		ID: uuid.New(), Version: r.Version, Platform: r.Platform, Sha256: r.SHA256, Signature: r.Signature,
		Size: r.Size, CreatedBy: r.CreatedBy,
	})
	if err != nil {
		return SatelliteRelease{}, translate(err, "create satellite release")
	}
	return releaseFromRow(row), nil
}

// UploadSatelliteReleaseChunk stores data at offset, which must be where the upload stands (or where an
// identical piece already is, so a retried piece is harmless). A piece past the release's size, a gap, or
// an upload to a complete release is ErrConflict.
func (s *Store) UploadSatelliteReleaseChunk(ctx context.Context, id uuid.UUID, offset int64, data []byte) (SatelliteRelease, error) {
	var rel SatelliteRelease
	err := s.inTx(ctx, func(q *dbsqlc.Queries) error {
		row, err := q.GetSatelliteReleaseForUpdate(ctx, id)
		if err != nil {
			return translate(err, "satellite release")
		}
		rel = releaseFromRow(row)
		switch {
		case rel.Complete:
			return fmt.Errorf("satellite release %s is complete: %w", id, ErrConflict)
		case offset+int64(len(data)) > rel.Size:
			return fmt.Errorf("the piece ends past the release's %d bytes: %w", rel.Size, ErrConflict)
		case offset < rel.UploadedBytes:
			chunks, err := q.SatelliteReleaseChunks(ctx, id, offset, 1)
			if err != nil {
				return translate(err, "satellite release chunks")
			}
			if len(chunks) == 1 && chunks[0].Offset == offset && bytes.Equal(chunks[0].Data, data) {
				return nil
			}
			return fmt.Errorf("the upload stands at %d, not %d: %w", rel.UploadedBytes, offset, ErrConflict)
		case offset > rel.UploadedBytes:
			return fmt.Errorf("the upload stands at %d, not %d: %w", rel.UploadedBytes, offset, ErrConflict)
		}
		if err := q.InsertSatelliteReleaseChunk(ctx, id, offset, data); err != nil {
			return translate(err, "store satellite release chunk")
		}
		rel.UploadedBytes += int64(len(data))
		return translate(q.SetSatelliteReleaseUploaded(ctx, rel.UploadedBytes, id), "satellite release")
	})
	return rel, err
}

// CompleteSatelliteRelease checks the uploaded binary against the release's size and SHA-256 and makes
// the release downloadable; ErrReleaseMismatch when it does not match. Completing twice is harmless.
func (s *Store) CompleteSatelliteRelease(ctx context.Context, id uuid.UUID) (SatelliteRelease, error) {
	var rel SatelliteRelease
	err := s.inTx(ctx, func(q *dbsqlc.Queries) error {
		row, err := q.GetSatelliteReleaseForUpdate(ctx, id)
		if err != nil {
			return translate(err, "satellite release")
		}
		rel = releaseFromRow(row)
		if rel.Complete {
			return nil
		}
		if rel.UploadedBytes != rel.Size {
			return fmt.Errorf("%d of %d bytes uploaded: %w", rel.UploadedBytes, rel.Size, ErrReleaseMismatch)
		}
		h := sha256.New()
		// A few pieces at a time: a binary of hundreds of MiB never sits in memory whole.
		for offset := int64(0); offset < rel.Size; {
			chunks, err := q.SatelliteReleaseChunks(ctx, id, offset, 8)
			if err != nil {
				return translate(err, "satellite release chunks")
			}
			if len(chunks) == 0 {
				return fmt.Errorf("binary ends at %d of %d bytes: %w", offset, rel.Size, ErrReleaseMismatch)
			}
			for _, c := range chunks {
				if c.Offset != offset {
					return fmt.Errorf("binary has a gap at %d: %w", offset, ErrReleaseMismatch)
				}
				h.Write(c.Data)
				offset += int64(len(c.Data))
			}
		}
		if got := hex.EncodeToString(h.Sum(nil)); got != rel.SHA256 {
			return fmt.Errorf("SHA-256 is %s: %w", got, ErrReleaseMismatch)
		}
		row, err = q.MarkSatelliteReleaseComplete(ctx, id)
		if err != nil {
			return translate(err, "satellite release")
		}
		rel = releaseFromRow(row)
		return nil
	})
	return rel, err
}

// SatelliteReleasePiece returns the complete release of version for platform and the piece of its binary
// that starts at offset, at most ReleaseChunkSize bytes; empty at or past the end.
func (s *Store) SatelliteReleasePiece(ctx context.Context, version, platform string, offset int64) (SatelliteRelease, []byte, error) {
	row, err := s.q.CompleteSatelliteReleaseByVersion(ctx, version, platform)
	if err != nil {
		return SatelliteRelease{}, nil, translate(err, "satellite release "+version+" for "+platform)
	}
	rel := releaseFromRow(row)
	if offset >= rel.Size {
		return rel, nil, nil
	}
	chunks, err := s.q.SatelliteReleaseChunks(ctx, rel.ID, offset, 1)
	if err != nil {
		return SatelliteRelease{}, nil, translate(err, "satellite release chunks")
	}
	if len(chunks) == 0 || chunks[0].Offset > offset {
		return SatelliteRelease{}, nil, fmt.Errorf("satellite release %s has no piece at %d", rel.ID, offset)
	}
	data := chunks[0].Data[offset-chunks[0].Offset:]
	if len(data) > ReleaseChunkSize {
		data = data[:ReleaseChunkSize]
	}
	return rel, data, nil
}

// ListSatelliteReleases returns up to limit releases before cursor, newest first.
func (s *Store) ListSatelliteReleases(ctx context.Context, before *Cursor, limit int) ([]SatelliteRelease, error) {
	at, id := cursorArgs(before)
	rows, err := s.q.ListSatelliteReleases(ctx, at, id, int32(limit))
	if err != nil {
		return nil, translate(err, "list satellite releases")
	}
	out := make([]SatelliteRelease, len(rows))
	for i, r := range rows {
		out[i] = releaseFromRow(r)
	}
	return out, nil
}

// SatelliteReleaseVersions lists the versions that have a complete release.
func (s *Store) SatelliteReleaseVersions(ctx context.Context) ([]string, error) {
	versions, err := s.q.CompleteSatelliteReleaseVersions(ctx)
	return versions, translate(err, "satellite release versions")
}

// DeleteSatelliteRelease deletes a release and its binary.
func (s *Store) DeleteSatelliteRelease(ctx context.Context, id uuid.UUID) error {
	n, err := s.q.DeleteSatelliteRelease(ctx, id)
	if err != nil {
		return translate(err, "delete satellite release")
	}
	if n == 0 {
		return fmt.Errorf("satellite release %s: %w", id, ErrNotFound)
	}
	return nil
}

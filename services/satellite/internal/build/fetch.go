package build

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
)

// fetchUploaded fetches an uploaded archive of teamID into a new file in dir and checks it like fetch.
func (b *Builder) fetchUploaded(ctx context.Context, teamID, want, dir string) (*os.File, error) {
	ctx, cancel := context.WithTimeout(ctx, b.cfg.FetchTimeout)
	defer cancel()
	content, err := b.cfg.Uploaded(ctx, teamID, want)
	if err != nil {
		return nil, fmt.Errorf("fetch the uploaded archive: %w", err)
	}
	if int64(len(content)) > b.cfg.MaxArchiveBytes {
		return nil, fmt.Errorf("%w: the archive is larger than %d bytes", ErrUnsafeArchive, b.cfg.MaxArchiveBytes)
	}
	sum := sha256.Sum256(content)
	if got := hex.EncodeToString(sum[:]); got != want {
		return nil, fmt.Errorf("%w: got sha256 %s, the template expects %s", ErrChecksum, got, want)
	}
	f, err := os.CreateTemp(dir, "archive-*")
	if err != nil {
		return nil, err
	}
	if _, err := f.Write(content); err != nil {
		_ = f.Close()
		_ = os.Remove(f.Name())
		return nil, err
	}
	return f, nil
}

// ErrChecksum is the error of an archive whose SHA-256 is not the one the template expects.
var ErrChecksum = errors.New("archive checksum mismatch")

// fetch downloads url into a new file in dir, at most limit bytes, and checks its SHA-256 against want.
// The caller removes the file.
func (b *Builder) fetch(ctx context.Context, url, want, dir string) (*os.File, error) {
	ctx, cancel := context.WithTimeoutCause(ctx, b.cfg.FetchTimeout,
		fmt.Errorf("the archive did not download within %v", b.cfg.FetchTimeout))
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("archive url: %w", err)
	}
	resp, err := b.cfg.HTTPClient.Do(req)
	if err != nil {
		if cause := context.Cause(ctx); cause != nil {
			return nil, cause
		}
		return nil, fmt.Errorf("download the archive: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("download the archive: %s", resp.Status)
	}
	if resp.ContentLength > b.cfg.MaxArchiveBytes {
		return nil, fmt.Errorf("%w: the archive is larger than %d bytes", ErrUnsafeArchive, b.cfg.MaxArchiveBytes)
	}
	f, err := os.CreateTemp(dir, "archive-*")
	if err != nil {
		return nil, err
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, h), io.LimitReader(resp.Body, b.cfg.MaxArchiveBytes+1))
	if err == nil && n > b.cfg.MaxArchiveBytes {
		err = fmt.Errorf("%w: the archive is larger than %d bytes", ErrUnsafeArchive, b.cfg.MaxArchiveBytes)
	}
	if err != nil {
		if cause := context.Cause(ctx); cause != nil {
			err = cause
		}
		_ = f.Close()
		_ = os.Remove(f.Name())
		return nil, fmt.Errorf("download the archive: %w", err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != want {
		_ = f.Close()
		_ = os.Remove(f.Name())
		return nil, fmt.Errorf("%w: got sha256 %s, the template expects %s", ErrChecksum, got, want)
	}
	return f, nil
}

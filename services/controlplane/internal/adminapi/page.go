package adminapi

import (
	"encoding/base64"
	"errors"
	"strconv"
	"strings"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"

	"github.com/orrery/orrery/services/controlplane/internal/store"
)

const (
	defaultPageSize = 50
	maxPageSize     = 500
)

func pageSize(requested uint32) int {
	if requested == 0 {
		return defaultPageSize
	}
	return min(int(requested), maxPageSize)
}

// encodePageToken makes an opaque token of the last item of a page.
func encodePageToken(createdAt time.Time, id uuid.UUID) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(createdAt.UnixMicro(), 10) + ":" + id.String()))
}

// decodePageToken reads a token made by encodePageToken; an empty token means the first page.
func decodePageToken(token string) (*store.Cursor, error) {
	if token == "" {
		return nil, nil
	}
	invalid := connect.NewError(connect.CodeInvalidArgument, errors.New("page_token: not a token from a previous response"))
	raw, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil {
		return nil, invalid
	}
	micros, id, ok := strings.Cut(string(raw), ":")
	if !ok {
		return nil, invalid
	}
	us, err := strconv.ParseInt(micros, 10, 64)
	if err != nil {
		return nil, invalid
	}
	uid, err := uuid.Parse(id)
	if err != nil {
		return nil, invalid
	}
	return &store.Cursor{CreatedAt: time.UnixMicro(us), ID: uid}, nil
}

// nextPageToken returns the token for the page after items when the page is full, else "".
func nextPageToken[T any](items []T, size int, key func(T) (time.Time, uuid.UUID)) string {
	if len(items) < size {
		return ""
	}
	return encodePageToken(key(items[len(items)-1]))
}

// Package page turns list requests' page sizes and opaque page tokens into store cursors and back.
package page

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

// Page sizes: what an unset page_size means, and the most a caller may ask for.
const (
	DefaultSize = 50
	MaxSize     = 500
)

// Size returns the page size for a requested one.
func Size[N int32 | uint32](requested N) int {
	if requested <= 0 {
		return DefaultSize
	}
	return min(int(requested), MaxSize)
}

// encodeToken makes an opaque token of the last item of a page.
func encodeToken(createdAt time.Time, id uuid.UUID) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(createdAt.UnixMicro(), 10) + ":" + id.String()))
}

// Decode reads a page token of a previous response; an empty token means the first page.
func Decode(token string) (*store.Cursor, error) {
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

// Next returns the token for the page after items when the page is full, else "".
func Next[T any](items []T, size int, key func(T) (time.Time, uuid.UUID)) string {
	if len(items) < size {
		return ""
	}
	return encodeToken(key(items[len(items)-1]))
}

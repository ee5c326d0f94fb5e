// Package page pages through list RPCs: page sizes and opaque page tokens.
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

const (
	defaultSize = 50
	maxSize     = 500
)

// Size returns the page size for a requested one: 0 means the default, 50, and no page exceeds 500.
func Size[N int32 | uint32](requested N) int {
	if requested <= 0 {
		return defaultSize
	}
	return min(int(requested), maxSize)
}

// encodeToken makes an opaque token of the last item of a page.
func encodeToken(createdAt time.Time, id uuid.UUID) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(createdAt.UnixMicro(), 10) + ":" + id.String()))
}

// DecodeToken reads a token made by NextToken; an empty token means the first page.
func DecodeToken(token string) (*store.Cursor, error) {
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

// NextToken returns the token for the page after items when the page is full, else "".
func NextToken[T any](items []T, size int, key func(T) (time.Time, uuid.UUID)) string {
	if len(items) < size {
		return ""
	}
	return encodeToken(key(items[len(items)-1]))
}

// DecodeKeyToken reads a token made by NextKeyToken; an empty token means the first page.
func DecodeKeyToken(token string) (string, error) {
	raw, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil {
		return "", connect.NewError(connect.CodeInvalidArgument, errors.New("page_token: not a token from a previous response"))
	}
	return string(raw), nil
}

// NextKeyToken returns the token for the page after items, in a list ordered by a unique string key, when
// the page is full, else "".
func NextKeyToken[T any](items []T, size int, key func(T) string) string {
	if len(items) < size {
		return ""
	}
	return base64.RawURLEncoding.EncodeToString([]byte(key(items[len(items)-1])))
}

package store

import (
	"context"
	"time"

	"github.com/google/uuid"

	"github.com/orrery/orrery/services/controlplane/internal/store/internal/dbsqlc"
)

// Device authorization request states (RFC 8628).
const (
	DevicePending  = "pending"
	DeviceApproved = "approved"
	DeviceDenied   = "denied"
	DeviceUsed     = "used"
)

// DeviceCode is a device authorization request, stored under the hashes of its device and user codes.
type DeviceCode struct {
	DeviceCodeHash []byte
	UserCodeHash   []byte
	ClientID       string
	Scopes         []string
	Resource       string
	Status         string
	// UserID is who approved or denied the request.
	UserID    *uuid.UUID
	Interval  time.Duration
	ExpiresAt time.Time
	// LastPolledAt and PreviousPollAt are, for a request returned by PollDeviceCode, the database's times
	// of this poll and of the one before.
	LastPolledAt, PreviousPollAt *time.Time
}

// CreateDeviceCode stores a new device authorization request, first dropping requests that expired before
// pruneBefore.
func (s *Store) CreateDeviceCode(ctx context.Context, d DeviceCode, pruneBefore time.Time) error {
	return s.inTx(ctx, func(q *dbsqlc.Queries) error {
		if _, err := q.PruneDeviceCodes(ctx, pruneBefore); err != nil {
			return translate(err, "prune device codes")
		}
		return translate(q.CreateDeviceCode(ctx, dbsqlc.CreateDeviceCodeParams{
			DeviceCodeHash: d.DeviceCodeHash, UserCodeHash: d.UserCodeHash, ClientID: d.ClientID, Scopes: nonNil(d.Scopes),
			Resource: d.Resource, IntervalSeconds: int32(d.Interval / time.Second), ExpiresAt: d.ExpiresAt,
		}), "create device code")
	})
}

// PendingDeviceCode returns the request with a user code that is undecided and live at now, or ErrNotFound.
func (s *Store) PendingDeviceCode(ctx context.Context, userCodeHash []byte, now time.Time) (DeviceCode, error) {
	r, err := s.q.GetPendingDeviceCode(ctx, userCodeHash, now)
	if err != nil {
		return DeviceCode{}, translate(err, "get device code")
	}
	return DeviceCode{
		DeviceCodeHash: r.DeviceCodeHash, UserCodeHash: r.UserCodeHash, ClientID: r.ClientID, Scopes: r.Scopes,
		Resource: r.Resource, Status: r.Status, UserID: r.UserID, Interval: time.Duration(r.IntervalSeconds) * time.Second,
		ExpiresAt: r.ExpiresAt,
	}, nil
}

// DecideDeviceCode approves or denies as userID a request pending and live at now; ErrNotFound when there
// is none.
func (s *Store) DecideDeviceCode(ctx context.Context, userCodeHash []byte, status string, userID uuid.UUID, now time.Time) error {
	n, err := s.q.DecideDeviceCode(ctx, status, &userID, userCodeHash, now)
	return rowsAffected(n, err, "decide device code")
}

// PollDeviceCode notes a client's poll and returns the request, expired or not, or ErrNotFound.
func (s *Store) PollDeviceCode(ctx context.Context, deviceCodeHash []byte) (DeviceCode, error) {
	r, err := s.q.PollDeviceCode(ctx, deviceCodeHash)
	if err != nil {
		return DeviceCode{}, translate(err, "poll device code")
	}
	return DeviceCode{
		DeviceCodeHash: r.DeviceCodeHash, UserCodeHash: r.UserCodeHash, ClientID: r.ClientID, Scopes: r.Scopes,
		Resource: r.Resource, Status: r.Status, UserID: r.UserID, Interval: time.Duration(r.IntervalSeconds) * time.Second,
		ExpiresAt: r.ExpiresAt, LastPolledAt: r.LastPolledAt, PreviousPollAt: r.PreviousPollAt,
	}, nil
}

// SlowDeviceCode lengthens a request's polling interval by five seconds.
func (s *Store) SlowDeviceCode(ctx context.Context, deviceCodeHash []byte) error {
	return translate(s.q.SlowDeviceCode(ctx, deviceCodeHash), "slow device code")
}

// UseDeviceCode marks an approved request used; ErrNotFound when it is not approved or already used, so of
// two concurrent polls only one gets tokens.
func (s *Store) UseDeviceCode(ctx context.Context, deviceCodeHash []byte) error {
	n, err := s.q.UseDeviceCode(ctx, deviceCodeHash)
	return rowsAffected(n, err, "use device code")
}

// APIAccessTokenUser returns the user of a live OAuth access token whose audience is the control plane's
// API, or ErrNotFound.
func (s *Store) APIAccessTokenUser(ctx context.Context, tokenHash []byte, audience string) (User, error) {
	r, err := s.q.GetAPIAccessTokenUser(ctx, tokenHash, audience)
	if err != nil {
		return User{}, translate(err, "get API access token")
	}
	return userFromRow(r), nil
}

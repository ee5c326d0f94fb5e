package backend

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"connectrpc.com/connect"

	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
	"github.com/orrery/orrery/services/satellite/internal/identity"
)

// establish returns the stored identity or, when there is none, registers with the registration token and
// stores the identity it gets. Registering happens at most once per state directory: an identity that
// exists is always reused, because the token that created it is spent.
func (c *Communicator) establish(ctx context.Context) (identity.Identity, error) {
	store := c.cfg.Identity
	id, err := store.Load()
	if err == nil {
		if c.cfg.RegistrationToken != "" {
			c.logger.InfoContext(ctx, "satellite is already registered; ignoring the registration token",
				slog.String("identity_file", store.Path()))
		}
		return id, nil
	}
	if !errors.Is(err, identity.ErrNotFound) {
		return identity.Identity{}, err
	}
	if c.cfg.RegistrationToken == "" {
		return identity.Identity{}, fmt.Errorf("no satellite identity in %s and no registration token: set "+
			"ORRERY_REGISTRATION_TOKEN to a token from the control plane's AdminService.CreateRegistrationToken",
			store.Dir())
	}

	c.logger.InfoContext(ctx, "registering with the control plane", slog.String("url", c.cfg.URL), slog.String("name", c.cfg.Name))
	msg := &satellitev1.RegisterRequest{
		RegistrationToken: c.cfg.RegistrationToken,
		Name:              c.cfg.Name,
		Version:           c.cfg.Version,
	}
	var resp *connect.Response[satellitev1.RegisterResponse]
	err = c.retry(ctx, "register", func() (err error) {
		resp, err = c.client.Register(ctx, connect.NewRequest(msg))
		return err
	})
	switch {
	case ctx.Err() != nil:
		return identity.Identity{}, ctx.Err()
	case connect.CodeOf(err) == connect.CodeUnauthenticated:
		return identity.Identity{}, fmt.Errorf("%w (%s): the registration token is invalid, expired, revoked or "+
			"already used; create a new one with AdminService.CreateRegistrationToken", ErrRegistrationRefused, message(err))
	case connect.CodeOf(err) == connect.CodeUnimplemented:
		return identity.Identity{}, fmt.Errorf("%w: %s does not serve SatelliteService (%v): check ORRERY_CONTROL_PLANE_URL",
			ErrRegistrationRefused, c.cfg.URL, err)
	case err != nil:
		return identity.Identity{}, fmt.Errorf("%w: %v", ErrRegistrationRefused, err)
	}

	id = identity.Identity{
		SatelliteID: resp.Msg.GetSatelliteId(),
		APIKey:      resp.Msg.GetApiKey(),
		Type:        typeName(resp.Msg.GetType()),
		TeamID:      resp.Msg.GetTeamId(),
	}
	if err := store.Save(id); err != nil {
		// The token is spent and the key exists nowhere else: the operator has to start over.
		return identity.Identity{}, fmt.Errorf("registered as satellite %s but could not store its identity, so its "+
			"API key is lost (%w): fix the state directory, delete the satellite in the control plane and register "+
			"again with a new token", id.SatelliteID, err)
	}
	c.logger.InfoContext(ctx, "registered with the control plane", slog.Any("identity", id),
		slog.String("identity_file", store.Path()))
	return id, nil
}

// typeName is the identity file's spelling of a satellite type: "global" or "team".
func typeName(t satellitev1.SatelliteType) string {
	return strings.ToLower(strings.TrimPrefix(t.String(), "SATELLITE_TYPE_"))
}

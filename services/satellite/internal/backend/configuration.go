package backend

import (
	"context"
	"fmt"
	"log/slog"

	"connectrpc.com/connect"

	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
	"github.com/orrery/orrery/services/satellite/internal/backoff"
	"github.com/orrery/orrery/services/satellite/internal/desired"
)

// syncResult is what one configuration sync did.
type syncResult struct {
	instances int
	diff      desired.Diff
	etag      string
}

// configLoop fetches the configuration at start, retrying until it succeeds, and again whenever a resync is
// requested. configure commands sync directly, since they must report what changed.
func (c *Communicator) configLoop(ctx context.Context) error {
	for {
		err := c.retry(ctx, "fetching configuration", func() error {
			_, err := c.syncConfiguration(ctx)
			return err
		})
		switch {
		case ctx.Err() != nil:
			return nil
		case connect.CodeOf(err) == connect.CodeUnauthenticated:
			return c.keyRefused(err)
		case err != nil:
			// The configuration itself is unusable; the control plane has to fix it. Ask again later rather
			// than give up, since readiness depends on it.
			c.logger.ErrorContext(ctx, "cannot use the configuration; trying again later", slog.Any("error", err),
				slog.Duration("retry_in", c.cfg.Backoff.Max))
			if backoff.Sleep(ctx, c.cfg.Backoff.Max) != nil {
				return nil
			}
			continue
		}
		select {
		case <-ctx.Done():
			return nil
		case <-c.resync:
		}
	}
}

// SyncConfiguration fetches the configuration now and applies it, as a configure command would.
func (c *Communicator) SyncConfiguration(ctx context.Context) error {
	_, err := c.syncConfiguration(ctx)
	return err
}

// requestResync asks configLoop for a fresh fetch without waiting for it.
func (c *Communicator) requestResync() {
	select {
	case c.resync <- struct{}{}:
	default:
	}
}

// syncConfiguration fetches the configuration, sending the etag of the one already applied so an unchanged
// configuration costs one small response, and applies a changed one to the desired view.
func (c *Communicator) syncConfiguration(ctx context.Context) (syncResult, error) {
	c.syncMu.Lock()
	defer c.syncMu.Unlock()
	resp, err := c.configClient.GetConfiguration(ctx, connect.NewRequest(&satellitev1.GetConfigurationRequest{IfNoneMatch: c.etag}))
	if connect.CodeOf(err) == connect.CodeResourceExhausted {
		return syncResult{}, fmt.Errorf("the configuration is larger than this satellite accepts (%d bytes; backend.Config.MaxConfigurationBytes): %w",
			c.cfg.MaxConfigurationBytes, err)
	}
	if err != nil {
		return syncResult{}, err
	}
	if resp.Msg.GetNotModified() {
		return syncResult{instances: c.cfg.Desired.Len(), etag: c.etag}, nil
	}
	// Policies first, so that no instance the configuration adds serves a call without them.
	if h := c.cfg.Commands; h != nil && h.Policies != nil {
		h.Policies.SetPolicies(resp.Msg.GetPolicies())
	}
	if c.cfg.Pool != nil {
		c.cfg.Pool.SetPool(resp.Msg.GetPool())
	}
	diff, err := c.cfg.Desired.Apply(resp.Msg.GetInstances())
	if err != nil {
		return syncResult{}, fmt.Errorf("apply configuration %q: %w", resp.Msg.GetEtag(), err)
	}
	first := c.etag == ""
	c.etag = resp.Msg.GetEtag()
	if first || !diff.Empty() {
		c.logger.InfoContext(ctx, "configuration applied", slog.String("etag", c.etag),
			slog.Int("instances", len(resp.Msg.GetInstances())), slog.Int("policies", len(resp.Msg.GetPolicies())),
			slog.Int("added", len(diff.Added)), slog.Int("changed", len(diff.Changed)),
			slog.Int("removed", len(diff.Removed)), slog.Int("reselected", len(diff.Reselected)))
	}
	return syncResult{instances: len(resp.Msg.GetInstances()), diff: diff, etag: c.etag}, nil
}

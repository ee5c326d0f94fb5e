package sso

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/google/uuid"
	"github.com/riverqueue/river"
	"golang.org/x/oauth2"

	"github.com/orrery/orrery/services/controlplane/internal/store"
)

// resyncBatch bounds how many people one run of the periodic check reads again; the rest wait for the next.
const resyncBatch = 200

// ResyncArgs is the periodic job that reads people's groups again through their refresh tokens.
type ResyncArgs struct{}

// Kind implements river.JobArgs.
func (ResyncArgs) Kind() string { return "sso_resync" }

// ResyncWorker runs ResyncArgs.
type ResyncWorker struct {
	river.WorkerDefaults[ResyncArgs]
	Service *Service
}

// Work implements river.Worker.
func (w *ResyncWorker) Work(ctx context.Context, _ *river.Job[ResyncArgs]) error {
	return w.Service.Resync(ctx)
}

// Timeout implements river.Worker: a batch talks to providers one person at a time.
func (w *ResyncWorker) Timeout(*river.Job[ResyncArgs]) time.Duration { return 5 * time.Minute }

// Periodic registers the worker on workers and returns its schedule: four runs per ResyncInterval, each
// taking the people last read more than an interval ago, so nobody waits much longer than one interval.
func (s *Service) Periodic(workers *river.Workers) *river.PeriodicJob {
	river.AddWorker(workers, &ResyncWorker{Service: s})
	return river.NewPeriodicJob(river.PeriodicInterval(s.cfg.ResyncInterval/4),
		func() (river.JobArgs, *river.InsertOpts) { return ResyncArgs{}, nil }, nil)
}

// Resync reads again the groups of the people whose groups were read more than ResyncInterval ago and whose
// provider gave a refresh token, and reconciles their memberships. A provider that refuses the refresh
// token (the person was disabled, or revoked Orrery's access) takes every membership its rules granted
// away. A provider that cannot be reached changes nothing.
func (s *Service) Resync(ctx context.Context) error {
	if _, err := s.store.DeleteExpiredSSOLoginStates(ctx); err != nil {
		return err
	}
	due, err := s.store.DueSSOIdentities(ctx, s.cfg.Now().Add(-s.cfg.ResyncInterval), resyncBatch)
	if err != nil {
		return err
	}
	providers := map[uuid.UUID]store.SSOProvider{}
	failures := 0
	for _, id := range due {
		p, ok := providers[id.ProviderID]
		if !ok {
			if p, err = s.store.SSOProvider(ctx, id.ProviderID); err != nil {
				return err
			}
			providers[id.ProviderID] = p
		}
		if err := s.resyncOne(ctx, p, id); err != nil {
			// The next run tries again; retrying the whole job now would only ask the provider again.
			s.logger.WarnContext(ctx, "re-read groups", "provider", p.Slug, "user_id", id.UserID, "error", err)
			failures++
		}
	}
	if failures > 0 {
		s.logger.WarnContext(ctx, "periodic group check incomplete", "failed", failures, "of", len(due))
	}
	return nil
}

func (s *Service) resyncOne(ctx context.Context, p store.SSOProvider, id store.SSOIdentity) error {
	hctx := s.httpContext(ctx)
	op, err := s.discover(hctx, p.Issuer)
	if err != nil {
		return err
	}
	token, err := s.oauthConfig(p, op).TokenSource(hctx, &oauth2.Token{RefreshToken: id.RefreshToken}).Token()
	if re := (*oauth2.RetrieveError)(nil); errors.As(err, &re) && re.Response != nil &&
		re.Response.StatusCode >= http.StatusBadRequest && re.Response.StatusCode < http.StatusInternalServerError {
		// The provider no longer lets Orrery act for the person: nothing vouches for their groups any more.
		if err := s.store.ForgetSSORefreshToken(ctx, p.ID, id.Subject); err != nil {
			return err
		}
		return s.reconcile(ctx, p, id.UserID, nil)
	}
	if err != nil {
		return err
	}
	c := claims{Subject: id.Subject}
	if rawID, ok := token.Extra("id_token").(string); ok && rawID != "" {
		idToken, err := s.verifier(p, op).Verify(hctx, rawID)
		if err != nil {
			return fmt.Errorf("verify refreshed ID token: %w", err)
		}
		if idToken.Subject != id.Subject {
			return errors.New("the refreshed ID token names another person")
		}
		c, err = s.claims(hctx, p, op, idToken, token)
		if err != nil {
			return err
		}
	} else if err := s.userinfoGroups(hctx, p, op, token, &c); err != nil {
		return err
	}
	if err := s.store.SaveSSOIdentity(ctx, store.SSOIdentity{
		ProviderID: p.ID, Subject: id.Subject, UserID: id.UserID, RefreshToken: token.RefreshToken, Groups: c.Groups,
	}); err != nil {
		return err
	}
	return s.reconcile(ctx, p, id.UserID, c.Groups)
}

// userinfoGroups reads the person's groups from the userinfo endpoint, for refresh responses without an ID
// token.
func (s *Service) userinfoGroups(ctx context.Context, p store.SSOProvider, op *oidc.Provider, token *oauth2.Token, c *claims) error {
	if op.UserInfoEndpoint() == "" {
		return errors.New("the provider returned no ID token and has no userinfo endpoint")
	}
	info, err := op.UserInfo(ctx, oauth2.StaticTokenSource(token))
	if err != nil {
		return fmt.Errorf("read userinfo: %w", err)
	}
	if info.Subject != c.Subject {
		return errors.New("userinfo names another person")
	}
	var raw map[string]json.RawMessage
	if err := info.Claims(&raw); err != nil {
		return err
	}
	readGroups(c, raw, p.GroupsClaim)
	return nil
}

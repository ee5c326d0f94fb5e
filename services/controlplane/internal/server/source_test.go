package server_test

import (
	"bytes"
	"strings"
	"testing"

	"connectrpc.com/connect"

	apiv1 "github.com/orrery/orrery/gen/orrery/api/v1"
	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
	"github.com/orrery/orrery/services/controlplane/internal/store"
)

// TestUploadedSourceArchives: a team uploads an archive for its own templates; only its templates can
// name it, only satellites serving the team can download it, and the upload is bounded.
func TestUploadedSourceArchives(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	p := seedProduct(t, b)
	ctx := t.Context()
	acme, globex := p.team.ID.String(), p.other.ID.String()
	archive := []byte("\x1f\x8b pretend this is a tarball")

	up := of(p.admin.catalog.UploadSourceArchive(ctx, connect.NewRequest(&apiv1.UploadSourceArchiveRequest{
		TeamId: acme, Content: archive,
	}))).must(t, "upload").Msg
	if len(up.Sha256) != 64 || up.Size != int64(len(archive)) {
		t.Fatalf("upload answered %v", up)
	}
	// A member may not upload; nor may another team's admin into acme.
	_, err := p.member.catalog.UploadSourceArchive(ctx, connect.NewRequest(&apiv1.UploadSourceArchiveRequest{TeamId: acme, Content: archive}))
	wantCode(t, "a member's upload", err, connect.CodePermissionDenied, "")
	_, err = p.outsider.catalog.UploadSourceArchive(ctx, connect.NewRequest(&apiv1.UploadSourceArchiveRequest{TeamId: acme, Content: archive}))
	if connect.CodeOf(err) != connect.CodePermissionDenied && connect.CodeOf(err) != connect.CodeNotFound {
		t.Fatalf("another team's admin uploading into acme: %v", err)
	}
	// An oversize upload is refused before it is stored.
	_, err = p.admin.catalog.UploadSourceArchive(ctx, connect.NewRequest(&apiv1.UploadSourceArchiveRequest{
		TeamId: acme, Content: bytes.Repeat([]byte{1}, 16<<20+1),
	}))
	wantCode(t, "an upload over 16 MiB", err, connect.CodeInvalidArgument, "")

	spec := func(src *satellitev1.Source) *apiv1.CatalogEntrySpec {
		return &apiv1.CatalogEntrySpec{Name: "Own", Transport: apiv1.Transport_TRANSPORT_STDIO, Command: "node", Args: []string{"dist/index.js"}, Source: src}
	}
	uploaded := &satellitev1.Source{Uploaded: true, Sha256: up.Sha256}
	of(p.admin.catalog.CreateCatalogEntry(ctx, connect.NewRequest(&apiv1.CreateCatalogEntryRequest{
		TeamId: acme, Slug: "own", Spec: spec(uploaded),
	}))).must(t, "a team template built from its upload")

	for _, tc := range []struct {
		what   string
		caller *caller
		team   string
		src    *satellitev1.Source
	}{
		{"an archive never uploaded", p.admin, acme, &satellitev1.Source{Uploaded: true, Sha256: strings.Repeat("0", 64)}},
		{"another team's archive", p.outsider, globex, uploaded},
		{"a global template naming an upload", p.root, "", uploaded},
		{"an uploaded source with a url too", p.admin, acme, &satellitev1.Source{Uploaded: true, Sha256: up.Sha256, Url: "https://example.test/x.tgz"}},
	} {
		_, err := tc.caller.catalog.CreateCatalogEntry(ctx, connect.NewRequest(&apiv1.CreateCatalogEntryRequest{
			TeamId: tc.team, Slug: "refused", Spec: spec(tc.src),
		}))
		wantCode(t, tc.what, err, connect.CodeInvalidArgument, "")
	}

	get := func(s *satellite, team string) ([]byte, error) {
		resp, err := s.client.GetSourceArchive(ctx, connect.NewRequest(&satellitev1.GetSourceArchiveRequest{TeamId: team, Sha256: up.Sha256}))
		if err != nil {
			return nil, err
		}
		return resp.Msg.Content, nil
	}
	if got, err := get(b.activeSatellite(t, acme), acme); err != nil || !bytes.Equal(got, archive) {
		t.Errorf("acme's team satellite downloading acme's archive: %q, %v", got, err)
	}
	// acme has a satellite of its own, so no global satellite serves it.
	_, err = get(b.activeSatellite(t, ""), acme)
	wantCode(t, "a global satellite acme is not placed on", err, connect.CodeNotFound, "")
	// globex's satellite learns nothing of acme's archive, nor of the same bytes under its own team.
	other := b.activeSatellite(t, globex)
	_, err = get(other, acme)
	wantCode(t, "another team's satellite", err, connect.CodeNotFound, "")
	_, err = get(other, globex)
	wantCode(t, "the same checksum under a team that did not upload it", err, connect.CodeNotFound, "")
}

// TestSourceArchivesAreBoundedPerTeam: a team's uploads share a bounded part of the database; archives no
// template names make room again an hour after their upload.
func TestSourceArchivesAreBoundedPerTeam(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	p := seedProduct(t, b)
	ctx := t.Context()
	upload := func(content string) error {
		_, err := p.admin.catalog.UploadSourceArchive(ctx, connect.NewRequest(&apiv1.UploadSourceArchiveRequest{
			TeamId: p.team.ID.String(), Content: []byte(content),
		}))
		return err
	}
	if err := upload("first"); err != nil {
		t.Fatal(err)
	}
	// The team's share is taken (the size column is what counts, so no test needs to upload 256 MiB).
	db := b.pool(t)
	if _, err := db.Exec(ctx, `update source_archives set size = $1 where team_id = $2`,
		store.MaxTeamSourceArchiveBytes, p.team.ID); err != nil {
		t.Fatal(err)
	}
	wantCode(t, "an upload past the team's share", upload("second"), connect.CodeResourceExhausted, "at most 256 MiB")
	if err := upload("first"); err != nil {
		t.Errorf("the same archive again: %v", err)
	}
	// Another team's share is its own.
	if _, err := p.outsider.catalog.UploadSourceArchive(ctx, connect.NewRequest(&apiv1.UploadSourceArchiveRequest{
		TeamId: p.other.ID.String(), Content: []byte("second"),
	})); err != nil {
		t.Errorf("another team's upload: %v", err)
	}
	// Unnamed archives older than an hour go at the next upload.
	if _, err := db.Exec(ctx, `update source_archives set created_at = now() - interval '2 hours' where team_id = $1`, p.team.ID); err != nil {
		t.Fatal(err)
	}
	if err := upload("second"); err != nil {
		t.Errorf("an upload once the unnamed archive aged out: %v", err)
	}
}

package server_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	adminv1 "github.com/orrery/orrery/gen/orrery/admin/v1"
	satellitev1 "github.com/orrery/orrery/gen/orrery/satellite/v1"
	"github.com/orrery/orrery/services/controlplane/internal/store"
)

// publish uploads data as release version for linux/amd64 in pieces of piece bytes; complete makes it
// downloadable.
func publish(t *testing.T, b *testBundle, version string, data []byte, piece int, complete bool) string {
	t.Helper()
	sum := sha256.Sum256(data)
	admin := b.admin(0)
	created, err := admin.CreateSatelliteRelease(t.Context(), connect.NewRequest(&adminv1.CreateSatelliteReleaseRequest{
		Version: version, Platform: "linux/amd64", Sha256: hex.EncodeToString(sum[:]), Size: int64(len(data)), Signature: make([]byte, 64),
	}))
	if err != nil {
		t.Fatal(err)
	}
	id := created.Msg.GetRelease().GetId()
	for off := 0; off < len(data); off += piece {
		if _, err := admin.UploadSatelliteReleaseChunk(t.Context(), connect.NewRequest(&adminv1.UploadSatelliteReleaseChunkRequest{
			ReleaseId: id, Offset: int64(off), Data: data[off:min(off+piece, len(data))],
		})); err != nil {
			t.Fatalf("upload at %d: %v", off, err)
		}
	}
	if complete {
		if _, err := admin.CompleteSatelliteRelease(t.Context(), connect.NewRequest(&adminv1.CompleteSatelliteReleaseRequest{ReleaseId: id})); err != nil {
			t.Fatal(err)
		}
	}
	return id
}

// TestReleasesUploadAndDownload publishes a release in pieces, refuses pieces that do not continue the
// upload, serves a complete release to a satellite piece by piece, and hides an incomplete one.
func TestReleasesUploadAndDownload(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	sat := b.activeSatellite(t, "")
	data := bytes.Repeat([]byte("0123456789"), 1000)
	id := publish(t, b, "1.0.0", data, 3000, true)

	admin := b.admin(0)
	// Again at the same offset with the same piece is harmless; a gap or a different piece is refused.
	for _, tc := range []struct {
		offset int64
		data   []byte
	}{{0, data[:3000]}, {20000, []byte("x")}} {
		_, err := admin.UploadSatelliteReleaseChunk(t.Context(), connect.NewRequest(&adminv1.UploadSatelliteReleaseChunkRequest{
			ReleaseId: id, Offset: tc.offset, Data: tc.data,
		}))
		if connect.CodeOf(err) != connect.CodeFailedPrecondition {
			t.Errorf("upload to a complete release at %d: %v, want FailedPrecondition", tc.offset, err)
		}
	}

	var got []byte
	for {
		resp, err := sat.client.DownloadRelease(t.Context(), connect.NewRequest(&satellitev1.DownloadReleaseRequest{
			Version: "1.0.0", Platform: "linux/amd64", Offset: int64(len(got)),
		}))
		if err != nil {
			t.Fatalf("download at %d: %v", len(got), err)
		}
		if len(resp.Msg.GetData()) == 0 {
			break
		}
		got = append(got, resp.Msg.GetData()...)
	}
	if !bytes.Equal(got, data) {
		t.Errorf("downloaded %d bytes that differ from the %d uploaded", len(got), len(data))
	}

	publish(t, b, "1.1.0", data[:10], 10, false)
	if _, err := sat.client.DownloadRelease(t.Context(), connect.NewRequest(&satellitev1.DownloadReleaseRequest{
		Version: "1.1.0", Platform: "linux/amd64",
	})); connect.CodeOf(err) != connect.CodeNotFound {
		t.Errorf("download of an incomplete release: %v, want NotFound", err)
	}
	// An update naming an incomplete release is refused when enqueued.
	if _, err := admin.EnqueueCommand(t.Context(), connect.NewRequest(&adminv1.EnqueueCommandRequest{
		Target: &adminv1.EnqueueCommandRequest_SatelliteId{SatelliteId: sat.id},
		Action: &adminv1.EnqueueCommandRequest_Update{Update: &satellitev1.UpdateAction{Version: "1.1.0"}},
	})); connect.CodeOf(err) != connect.CodeFailedPrecondition {
		t.Errorf("update to an incomplete release: %v, want FailedPrecondition", err)
	}
}

// TestRollingUpdateAdvancesBatchByBatch starts a rolling update of three global satellites two at a time
// and follows it: the third satellite's command waits until the first two heartbeat on the new version, and
// its failure stops the rollout.
func TestRollingUpdateAdvancesBatchByBatch(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	sats := []*satellite{b.activeSatellite(t, ""), b.activeSatellite(t, ""), b.activeSatellite(t, "")}
	publish(t, b, "1.9.0", []byte("older"), 5, true)
	publish(t, b, "2.0.0", []byte("newest"), 6, true)

	resp, err := b.admin(0).EnqueueCommand(t.Context(), connect.NewRequest(&adminv1.EnqueueCommandRequest{
		Target:           &adminv1.EnqueueCommandRequest_AllGlobalSatellites{AllGlobalSatellites: true},
		Action:           &adminv1.EnqueueCommandRequest_Update{Update: &satellitev1.UpdateAction{}},
		RollingBatchSize: 2,
	}))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.admin(0).EnqueueCommand(t.Context(), connect.NewRequest(&adminv1.EnqueueCommandRequest{
		Target:           &adminv1.EnqueueCommandRequest_AllGlobalSatellites{AllGlobalSatellites: true},
		Action:           &adminv1.EnqueueCommandRequest_Configure{Configure: &satellitev1.ConfigureAction{Event: satellitev1.ConfigureEvent_CONFIGURE_EVENT_INSTALLATION_UPDATED}},
		RollingBatchSize: 2,
	})); connect.CodeOf(err) != connect.CodeInvalidArgument {
		t.Errorf("a rolling configure command: %v, want InvalidArgument", err)
	}
	ro := resp.Msg.GetRollout()
	if ro.GetVersion() != "2.0.0" || len(ro.GetSatellites()) != 3 || len(resp.Msg.GetCommands()) != 2 {
		t.Fatalf("rollout %v with %d commands; want the newest release, 3 satellites and a first batch of 2", ro, len(resp.Msg.GetCommands()))
	}
	first := map[string]bool{}
	for _, c := range resp.Msg.GetCommands() {
		first[c.GetSatelliteId()] = true
		if c.GetCommand().GetUpdate().GetVersion() != "2.0.0" {
			t.Errorf("update command names %q, want the resolved 2.0.0", c.GetCommand().GetUpdate().GetVersion())
		}
	}
	var rest *satellite
	for _, s := range sats {
		if !first[s.id] {
			rest = s
		}
	}
	advance := func() {
		t.Helper()
		if _, err := b.store().AdvanceRollouts(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	advance()
	if got := rest.poll(t, 0); len(got) != 0 {
		t.Fatalf("the second batch got %v before the first heartbeat on the new version", got)
	}
	for _, s := range sats {
		if first[s.id] {
			if _, err := s.client.Heartbeat(t.Context(), connect.NewRequest(&satellitev1.HeartbeatRequest{
				System: &satellitev1.SystemMetrics{}, Version: "2.0.0",
			})); err != nil {
				t.Fatal(err)
			}
		}
	}
	advance()
	// The periodic job may have advanced it first; the long poll waits for the command either way.
	got := rest.poll(t, 5*time.Second)
	if len(got) != 1 || got[0].GetUpdate().GetVersion() != "2.0.0" {
		t.Fatalf("the second batch got %v, want its update", got)
	}
	if _, err := rest.client.ReportCommandResult(t.Context(), connect.NewRequest(&satellitev1.ReportCommandResultRequest{
		CommandId: got[0].GetId(), Result: satellitev1.CommandResult_COMMAND_RESULT_FAILED, Error: "update: release signature does not verify",
	})); err != nil {
		t.Fatal(err)
	}
	var r *adminv1.Rollout
	for range 50 {
		advance()
		list, err := b.admin(0).ListRollouts(t.Context(), connect.NewRequest(&adminv1.ListRolloutsRequest{}))
		if err != nil {
			t.Fatal(err)
		}
		if r = list.Msg.GetRollouts()[0]; r.GetState() != store.RolloutRunning {
			break
		}
		time.Sleep(100 * time.Millisecond) // another replica's job may hold the rollout's lock for a moment
	}
	if r.GetState() != store.RolloutFailed || !strings.Contains(r.GetError(), "signature") {
		t.Errorf("rollout %s %q, want failed with the satellite's error", r.GetState(), r.GetError())
	}
	states := map[string]string{}
	for _, m := range r.GetSatellites() {
		states[m.GetSatelliteId()] = m.GetState()
	}
	for _, s := range sats {
		want := store.MemberDone
		if s == rest {
			want = store.MemberFailed
		}
		if states[s.id] != want {
			t.Errorf("satellite %s is %q in the rollout, want %q", s.id, states[s.id], want)
		}
	}
}

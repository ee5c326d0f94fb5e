package satelliteapi

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/orrery/orrery/services/controlplane/internal/store"
)

// heldBeatsEvery is how often held heartbeats are stored, unless a tenth of the placement grace is
// shorter: placement and offline detection read the stored time, which is this much late at worst.
const heldBeatsEvery = time.Second

// heldBeats holds the heartbeats that change nothing but a satellite's figures, to be stored together: at
// fleet scale a statement per heartbeat is most of the database's work, and such a heartbeat needs no answer
// from the database.
type heldBeats struct {
	mu      sync.Mutex
	pending map[uuid.UUID]heldBeat // the newest per satellite, so its size is bounded by the fleet's
	// storing keeps a heartbeat stored at once from overlapping a batch being stored, in which an older held
	// heartbeat of the same satellite would overwrite it.
	storing sync.RWMutex
	// held counts the heartbeats held since the start.
	held atomic.Int64
}

type heldBeat struct {
	keyID string
	store.HeldHeartbeat
}

func (b *heldBeats) hold(keyID string, hb store.HeldHeartbeat) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.pending == nil {
		b.pending = map[uuid.UUID]heldBeat{}
	}
	b.pending[hb.SatelliteID] = heldBeat{keyID: keyID, HeldHeartbeat: hb}
	b.held.Add(1)
}

// HeldHeartbeats counts the heartbeats held to be stored with others since the start.
func (h *Handler) HeldHeartbeats() int64 { return h.beats.held.Load() }

// storeAtOnce drops a satellite's held heartbeat, which the one about to be stored supersedes, and keeps
// batches out until the returned function is called.
func (b *heldBeats) storeAtOnce(satelliteID uuid.UUID) (done func()) {
	b.storing.RLock()
	b.mu.Lock()
	delete(b.pending, satelliteID)
	b.mu.Unlock()
	return b.storing.RUnlock
}

func (b *heldBeats) take() []heldBeat {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]heldBeat, 0, len(b.pending))
	for _, hb := range b.pending {
		out = append(out, hb)
	}
	clear(b.pending)
	// In one order on every replica, so that two replicas' batches lock the satellites' rows alike.
	slices.SortFunc(out, func(x, y heldBeat) int { return slices.Compare(x.SatelliteID[:], y.SatelliteID[:]) })
	return out
}

// mayHold reports whether a heartbeat may be held: its satellite (sat, as last read or held) is active,
// was heard from well within the placement grace, and is not draining; the heartbeat changes nothing that
// activation, placement or a drain reads; and no notification for the satellite has come since its last
// poll found nothing pending (the hub's quiet mark), which a revocation, a drain or a command would send.
func (h *Handler) mayHold(sat store.Satellite, hb store.Heartbeat, now time.Time) bool {
	return sat.ActivatedAt != nil && sat.DrainingAt == nil &&
		sat.LastHeartbeatAt != nil && now.Sub(*sat.LastHeartbeatAt) < h.cfg.PlacementGrace/2 &&
		(hb.URL == "" || hb.URL == sat.URL) && (hb.Version == "" || hb.Version == sat.Version) &&
		hb.Capacity == sat.Capacity && hb.InternalURL == sat.InternalURL &&
		h.hub.Quiet(sat.ID.String(), now)
}

// RunHeldHeartbeats stores held heartbeats every heldBeatsEvery until ctx ends, and then those still held.
func (h *Handler) RunHeldHeartbeats(ctx context.Context) {
	tick := time.NewTicker(min(heldBeatsEvery, h.cfg.PlacementGrace/10))
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
			h.storeHeldBeats(ctx)
		case <-ctx.Done():
			stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			h.storeHeldBeats(stopCtx)
			return
		}
	}
}

// maxBeatsPerStatement bounds one statement's arrays.
const maxBeatsPerStatement = 5000

func (h *Handler) storeHeldBeats(ctx context.Context) {
	h.beats.storing.Lock()
	defer h.beats.storing.Unlock()
	for held := range slices.Chunk(h.beats.take(), maxBeatsPerStatement) {
		beats := make([]store.HeldHeartbeat, len(held))
		for i, hb := range held {
			beats[i] = hb.HeldHeartbeat
		}
		stored, err := h.store.RecordHeartbeats(ctx, beats)
		switch {
		case errors.Is(err, store.ErrUnavailable):
			// Lost: each satellite's next heartbeat comes well before it could count as offline.
			h.logger.ErrorContext(ctx, "store held heartbeats", "count", len(beats), "error", err)
			continue
		case err != nil:
			// One satellite's heartbeat (processes it reported twice, say) fails the statement for all:
			// each is stored on its own then, so that it fails alone.
			stored = h.storeEachHeldBeat(ctx, beats)
		}
		if len(stored) == len(held) {
			continue
		}
		// A satellite left out was revoked after its heartbeat was held, or its heartbeat failed: its next
		// request reads its row again, and a revoked one is refused.
		found := make(map[uuid.UUID]bool, len(stored))
		for _, id := range stored {
			found[id] = true
		}
		for _, hb := range held {
			if !found[hb.SatelliteID] {
				h.lastRead.Remove(hb.keyID)
			}
		}
	}
}

// storeEachHeldBeat stores held heartbeats one statement each, and returns the satellites it stored.
func (h *Handler) storeEachHeldBeat(ctx context.Context, beats []store.HeldHeartbeat) []uuid.UUID {
	var stored []uuid.UUID
	for _, hb := range beats {
		ids, err := h.store.RecordHeartbeats(ctx, []store.HeldHeartbeat{hb})
		if err != nil {
			h.logger.WarnContext(ctx, "store a held heartbeat", "satellite_id", hb.SatelliteID, "error", err)
		}
		stored = append(stored, ids...)
	}
	return stored
}

package gateway

import "context"

// await waits until cond holds for b, or ctx ends.
func (b *bridge) await(ctx context.Context, cond func(*bridge) bool) error {
	for {
		b.mu.Lock()
		updated := b.updated
		b.mu.Unlock()
		if cond(b) {
			return nil
		}
		select {
		case <-updated:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// waiting reports whether any call waits for its turn.
func (b *bridge) waiting() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, t := range b.turns {
		if t.waiting > 0 {
			return true
		}
	}
	return false
}

// serving reports whether any downstream session serves a call.
func (b *bridge) serving() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.calls) > 0
}

// holding reports whether any server request waits to be attributed.
func (b *bridge) holding() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, t := range b.turns {
		if t.held > 0 {
			return true
		}
	}
	return false
}

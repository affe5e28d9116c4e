package daemon

import (
	"context"
	"maps"
	"time"

	"github.com/booture/booture/key"
	"github.com/booture/booture/mesh"
	"github.com/booture/booture/netcfg"
)

// peerResets remembers when the reconciler last re-created each booture
// peer to send a new initiation (mesh.PlanInput.Resets). Only the
// reconciler's goroutine uses it.
type peerResets struct {
	at map[key.PublicKey]time.Time
}

// snapshot returns a copy for a plan.
func (r *peerResets) snapshot() map[key.PublicKey]time.Time { return maps.Clone(r.at) }

// applied records the resets of a Config that was applied at now, and
// forgets peers the Config no longer has.
func (r *peerResets) applied(cfg netcfg.Config, now time.Time) {
	if r.at == nil {
		r.at = make(map[key.PublicKey]time.Time)
	}
	keep := make(map[key.PublicKey]bool, len(cfg.Peers))
	for _, p := range cfg.Peers {
		keep[p.PublicKey] = true
		if p.Reset {
			r.at[p.PublicKey] = now
		}
	}
	maps.DeleteFunc(r.at, func(k key.PublicKey, _ time.Time) bool { return !keep[k] })
}

// heard tells, for each booture peer of the view, whether WireGuard has
// received anything from it since it was added. If the interface cannot be
// read, every peer counts as heard: re-creating a peer in the middle of a
// handshake is worse than not retrying a lost one (see mesh.PlanInput.Heard).
func heard(a netcfg.Applier, v mesh.View) map[key.PublicKey]bool {
	out := make(map[key.PublicKey]bool, len(v.Peers))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	st, err := a.State(ctx)
	if err != nil {
		for _, p := range v.Peers {
			out[p.PublicKey] = true
		}
		return out
	}
	for _, p := range st.Peers {
		out[p.PublicKey] = p.RxBytes > 0 || !p.LastHandshake.IsZero()
	}
	return out
}

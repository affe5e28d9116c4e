package daemon

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/booture/booture/netcfg"
)

// reconciler is the one goroutine that changes the network. Membership
// events, member changes and plugin changes only trigger it; it computes
// the whole desired state and hands it to the applier, which changes only
// the difference. Triggers coalesce (a channel of capacity 1), and a periodic
// resync repairs changes made by hand.
type reconciler struct {
	// run and once may both apply (once for API calls that must take
	// effect before they answer); applyMu keeps them from overlapping.
	applyMu sync.Mutex

	applier netcfg.Applier
	desired func() (netcfg.Config, time.Duration, error)
	resync  time.Duration
	log     *slog.Logger
	trigger chan struct{}

	mu      sync.Mutex
	runs    uint64
	errors  uint64
	lastRun time.Time
	lastErr string
	applied bool
	onRun   func(err error) // metrics
}

func newReconciler(a netcfg.Applier, desired func() (netcfg.Config, time.Duration, error), resync time.Duration, log *slog.Logger) *reconciler {
	return &reconciler{
		applier: a, desired: desired, resync: resync, log: log,
		trigger: make(chan struct{}, 1),
	}
}

// Trigger asks for a reconcile soon; it never blocks.
func (r *reconciler) Trigger() {
	select {
	case r.trigger <- struct{}{}:
	default:
	}
}

// run reconciles until ctx ends.
func (r *reconciler) run(ctx context.Context) {
	tick := time.NewTicker(r.resync)
	defer tick.Stop()
	// again fires for a retry after an error, or when the plan changes
	// with time alone (see mesh.PlanRecheck).
	again := time.NewTimer(time.Hour)
	again.Stop()
	defer again.Stop()
	backoff := time.Second
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.trigger:
		case <-tick.C:
		case <-again.C:
		}
		recheck, err := r.apply(ctx)
		switch {
		case err != nil:
			again.Reset(backoff)
			backoff = min(2*backoff, r.resync)
		case recheck > 0:
			backoff = time.Second
			again.Reset(recheck)
		default:
			backoff = time.Second
		}
	}
}

// once applies the desired state one time.
func (r *reconciler) once(ctx context.Context) error {
	recheck, err := r.apply(ctx)
	if recheck > 0 {
		r.Trigger() // the loop arms its timer
	}
	return err
}

// apply applies the desired state and says when to plan again.
func (r *reconciler) apply(ctx context.Context) (time.Duration, error) {
	r.applyMu.Lock()
	defer r.applyMu.Unlock()
	start := time.Now()
	cfg, recheck, err := r.desired()
	if err == nil {
		err = r.applier.Apply(ctx, cfg)
	}
	r.mu.Lock()
	r.runs++
	r.lastRun = time.Now()
	prev := r.lastErr
	if err != nil {
		r.errors++
		r.lastErr = err.Error()
	} else {
		r.lastErr = ""
		r.applied = true
	}
	onRun := r.onRun
	r.mu.Unlock()
	if onRun != nil {
		onRun(err)
	}
	switch {
	case err != nil && err.Error() != prev:
		r.log.Error("applying network configuration", "err", err)
	case err == nil && prev != "":
		r.log.Info("network configuration applied again after errors")
	case err == nil:
		r.log.Debug("network configuration applied", "peers", len(cfg.Peers), "routes", len(cfg.Routes), "took", time.Since(start))
	}
	return recheck, err
}

// stats returns the reconciler's counters.
func (r *reconciler) stats() (runs, errs uint64, last time.Time, lastErr string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.runs, r.errors, r.lastRun, r.lastErr
}

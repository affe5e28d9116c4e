package daemon

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/booture/booture/mesh"
	"github.com/booture/booture/netcfg"
)

// reconciler is the one goroutine that changes the network. Membership
// events, member changes and plugin changes only trigger it; it computes
// the whole desired state and hands it to the applier, which changes only
// the difference. Triggers coalesce (a channel of capacity 1), and a periodic
// resync repairs changes made by hand. API calls that must take effect
// before they answer (a member disabled is cut when the CLI says so) send
// their apply to the same goroutine and wait for its result (applyNow).
type reconciler struct {
	applier netcfg.Applier
	steps   reconcileSteps
	resync  time.Duration
	log     *slog.Logger
	trigger chan struct{}
	// requests carries API applies; the loop answers each on its channel
	// (capacity 1, so that the loop never waits for a caller gone).
	requests chan chan error
	// stopped is closed when run returns: requests are no longer served.
	stopped chan struct{}

	mu      sync.Mutex
	runs    uint64
	errors  uint64
	lastRun time.Time
	lastErr string
}

// reconcileSteps are what one reconcile pass does, in order, all in the
// reconciler's goroutine.
type reconcileSteps struct {
	// view returns the mesh as seen now; the pass plans from one view.
	view func() mesh.View
	// moveMembers moves the VPN members into the booture's site in the
	// view, and persists it, when the site changed (a site conflict
	// settled against this booture, or a merge); otherwise it does
	// nothing. It is the pass's one change before the apply, made here so
	// that desired stays pure.
	moveMembers func(mesh.View) error
	// desired computes the network state for the view, and how long until
	// the plan changes with time alone (0: not before something happens).
	// It has no side effect.
	desired func(mesh.View) (netcfg.Config, time.Duration, error)
	// noteSkipped, if set, reports the bootures the plan for the view
	// leaves out (see mesh.PlanSkips), once each.
	noteSkipped func(mesh.View)
	// applied, if set, is told of each Config applied without error, and
	// when: the one-time actions it carried (netcfg.Peer.Reset) are done.
	applied func(netcfg.Config, time.Time)
}

// errStopping answers API applies once the reconciler has stopped.
var errStopping = errors.New("the daemon is stopping")

func newReconciler(a netcfg.Applier, steps reconcileSteps, resync time.Duration, log *slog.Logger) *reconciler {
	return &reconciler{
		applier: a, steps: steps, resync: resync, log: log,
		trigger:  make(chan struct{}, 1),
		requests: make(chan chan error),
		stopped:  make(chan struct{}),
	}
}

// Trigger asks for a reconcile soon; it never blocks.
func (r *reconciler) Trigger() {
	select {
	case r.trigger <- struct{}{}:
	default:
	}
}

// applyNow has the reconciler apply the desired state, computed after the
// call, and returns that apply's result. If ctx ends first, the apply may
// still happen (or is triggered for soon) but its result is not awaited.
func (r *reconciler) applyNow(ctx context.Context) error {
	done := make(chan error, 1)
	select {
	case r.requests <- done:
	case <-r.stopped:
		return errStopping
	case <-ctx.Done():
		r.Trigger()
		return ctx.Err()
	}
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// run reconciles until ctx ends.
func (r *reconciler) run(ctx context.Context) {
	defer close(r.stopped)
	tick := time.NewTicker(r.resync)
	defer tick.Stop()
	// again fires for a retry after an error, or when the plan changes
	// with time alone (see mesh.PlanRecheck).
	again := time.NewTimer(time.Hour)
	again.Stop()
	defer again.Stop()
	backoff := time.Second
	for {
		var done chan error
		select {
		case <-ctx.Done():
			return
		case <-r.trigger:
		case <-tick.C:
		case <-again.C:
		case done = <-r.requests:
		}
		recheck, err := r.apply(ctx)
		if done != nil {
			done <- err
		}
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

// apply runs one pass: it moves the members if the site changed, applies
// the desired state, and says when to plan again. Only run calls it.
func (r *reconciler) apply(ctx context.Context) (time.Duration, error) {
	start := time.Now()
	v := r.steps.view()
	var cfg netcfg.Config
	var recheck time.Duration
	err := r.steps.moveMembers(v)
	if err == nil {
		cfg, recheck, err = r.steps.desired(v)
	}
	if err == nil && r.steps.noteSkipped != nil {
		r.steps.noteSkipped(v)
	}
	if err == nil {
		err = r.applier.Apply(ctx, cfg)
		if err == nil && r.steps.applied != nil {
			r.steps.applied(cfg, time.Now())
		}
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
	}
	r.mu.Unlock()
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

package daemon

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/booture/booture/netcfg"
)

// recApplier is a netcfg.Applier that records when Apply was called (on the
// synctest bubble's clock), fails while fail is set, and blocks while hold
// is open.
type recApplier struct {
	mu    sync.Mutex
	calls []time.Duration // since start
	start time.Time
	fail  bool
	hold  chan struct{}
}

func (a *recApplier) Apply(ctx context.Context, cfg netcfg.Config) error {
	a.mu.Lock()
	a.calls = append(a.calls, time.Since(a.start))
	fail, hold := a.fail, a.hold
	a.mu.Unlock()
	if hold != nil {
		<-hold
	}
	if fail {
		return errors.New("the test says no")
	}
	return nil
}

func (a *recApplier) State(context.Context) (netcfg.State, error) { return netcfg.State{}, nil }
func (a *recApplier) Close() error                                { return nil }

func (a *recApplier) applied() []time.Duration {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.calls)
}

func (a *recApplier) set(f func(a *recApplier)) {
	a.mu.Lock()
	defer a.mu.Unlock()
	f(a)
}

// runReconciler starts r's loop in the bubble; the loop stops with the
// test's bubble.
func runReconciler(t *testing.T, r *reconciler) {
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { r.run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
}

func newTestReconciler(a *recApplier, resync time.Duration, recheck func() time.Duration) *reconciler {
	a.start = time.Now()
	desired := func() (netcfg.Config, time.Duration, error) { return netcfg.Config{}, recheck(), nil }
	return newReconciler(a, desired, resync, slog.New(slog.DiscardHandler))
}

func never() time.Duration { return 0 }

// TestReconcilerResync: with nothing happening, the loop applies once per
// resync period, and only then.
func TestReconcilerResync(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := &recApplier{}
		r := newTestReconciler(a, time.Minute, never)
		runReconciler(t, r)
		time.Sleep(3*time.Minute + time.Second)
		synctest.Wait()
		want := []time.Duration{time.Minute, 2 * time.Minute, 3 * time.Minute}
		if got := a.applied(); !slices.Equal(got, want) {
			t.Errorf("applies at %v, want %v", got, want)
		}
	})
}

// TestReconcilerCoalescesTriggers: a burst of triggers while an apply is
// under way makes one more apply, not one per trigger.
func TestReconcilerCoalescesTriggers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := &recApplier{hold: make(chan struct{})}
		r := newTestReconciler(a, time.Hour, never)
		runReconciler(t, r)
		r.Trigger()
		synctest.Wait() // the first apply is under way, held
		for range 50 {
			r.Trigger() // never blocks
		}
		a.set(func(a *recApplier) { close(a.hold); a.hold = nil })
		synctest.Wait()
		if got := len(a.applied()); got != 2 {
			t.Errorf("%d applies for a trigger and a burst of 50 during it, want 2", got)
		}
		// Idle afterwards: nothing until the next trigger.
		time.Sleep(10 * time.Minute)
		synctest.Wait()
		if got := len(a.applied()); got != 2 {
			t.Errorf("%d applies after 10 idle minutes, want still 2", got)
		}
		r.Trigger()
		synctest.Wait()
		if got := len(a.applied()); got != 3 {
			t.Errorf("%d applies after one more trigger, want 3", got)
		}
	})
}

// TestReconcilerBackoff: after a failed apply the loop retries after 1 s,
// then twice as long each time, at most the resync period; once an apply
// succeeds, the next failure starts again from 1 s.
func TestReconcilerBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := &recApplier{fail: true}
		r := newTestReconciler(a, time.Minute, never)
		runReconciler(t, r)
		r.Trigger()
		time.Sleep(45 * time.Second)
		synctest.Wait()
		want := []time.Duration{0, 1, 3, 7, 15, 31}
		for i, w := range want {
			want[i] = w * time.Second
		}
		if got := a.applied(); !slices.Equal(got, want) {
			t.Fatalf("tries at %v, want %v", got, want)
		}
		// The delay stops doubling at the resync period.
		time.Sleep(5*time.Minute - 45*time.Second)
		synctest.Wait()
		got := a.applied()
		for i := len(want); i < len(got); i++ {
			if gap := got[i] - got[i-1]; gap > time.Minute {
				t.Errorf("%v between tries %d and %d: more than the resync period", gap, i-1, i)
			}
		}
		runs, errs, _, lastErr := r.stats()
		if runs != uint64(len(got)) || errs != runs || lastErr == "" {
			t.Errorf("stats: %d runs, %d errors, last %q; want %d failed runs", runs, errs, lastErr, len(got))
		}

		// Success resets the backoff: the next failure is retried after 1 s.
		a.set(func(a *recApplier) { a.fail = false })
		time.Sleep(time.Minute)
		synctest.Wait()
		if _, _, _, lastErr := r.stats(); lastErr != "" {
			t.Fatalf("still failing after the applier recovered: %s", lastErr)
		}
		a.set(func(a *recApplier) { a.fail = true; a.calls = nil; a.start = time.Now() })
		r.Trigger()
		time.Sleep(1500 * time.Millisecond)
		synctest.Wait()
		if got, want := a.applied(), []time.Duration{0, time.Second}; !slices.Equal(got, want) {
			t.Errorf("after a success, a new failure is retried at %v, want %v", got, want)
		}
	})
}

// changesAt returns a recheck function for a plan that changes at the given
// times after now (as a new peer's roles change): the time left until the
// next one, or 0 once all have passed.
func changesAt(at ...time.Duration) func() time.Duration {
	start := time.Now()
	return func() time.Duration {
		now := time.Since(start)
		for _, d := range at {
			if d > now {
				return d - now
			}
		}
		return 0
	}
}

// TestReconcilerRecheck: when the plan changes with time alone (a new
// peer's role delay), the loop plans again at the delay the plan gave, and
// not before.
func TestReconcilerRecheck(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := &recApplier{}
		r := newTestReconciler(a, time.Hour, changesAt(4*time.Second, 5*time.Second))
		runReconciler(t, r)
		r.Trigger()
		time.Sleep(time.Minute)
		synctest.Wait()
		want := []time.Duration{0, 4 * time.Second, 5 * time.Second}
		if got := a.applied(); !slices.Equal(got, want) {
			t.Errorf("applies at %v, want %v", got, want)
		}
	})
}

// TestReconcilerOnceArmsRecheck: an apply made outside the loop (an API
// call that must take effect before it answers) still gets its recheck:
// the loop plans again when the plan said.
func TestReconcilerOnceArmsRecheck(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := &recApplier{}
		r := newTestReconciler(a, time.Hour, changesAt(3*time.Second))
		runReconciler(t, r)
		if err := r.once(t.Context()); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Minute)
		synctest.Wait()
		// once applies at 0 and hands the recheck to the loop, which
		// plans again at once (arming its timer) and then at 3 s.
		want := []time.Duration{0, 0, 3 * time.Second}
		if got := a.applied(); !slices.Equal(got, want) {
			t.Errorf("applies at %v, want %v", got, want)
		}
	})
}

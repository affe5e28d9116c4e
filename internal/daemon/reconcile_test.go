package daemon

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/booture/booture/internal/config"
	"github.com/booture/booture/key"
	"github.com/booture/booture/members"
	"github.com/booture/booture/mesh"
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
	return newReconciler(a, reconcileSteps{
		view:        func() mesh.View { return mesh.View{} },
		moveMembers: func(mesh.View) error { return nil },
		desired:     func(mesh.View) (netcfg.Config, time.Duration, error) { return netcfg.Config{}, recheck(), nil },
	}, resync, slog.New(slog.DiscardHandler))
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

// TestReconcilerAPIApplyArmsRecheck: an API apply (a call that must take
// effect before it answers) gets its recheck too: the loop plans again
// when the plan said.
func TestReconcilerAPIApplyArmsRecheck(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := &recApplier{}
		r := newTestReconciler(a, time.Hour, changesAt(3*time.Second))
		runReconciler(t, r)
		if err := r.applyNow(t.Context()); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Minute)
		synctest.Wait()
		want := []time.Duration{0, 3 * time.Second}
		if got := a.applied(); !slices.Equal(got, want) {
			t.Errorf("applies at %v, want %v", got, want)
		}
	})
}

// serialApplier is a fake applier that checks that applies never overlap
// and all run in the reconciler's loop, and fails each apply with its own
// error ("apply #N"), so that a caller can tell which apply answered it.
type serialApplier struct {
	mu       sync.Mutex
	inflight int
	applies  int
	problems []string
}

func (a *serialApplier) Apply(ctx context.Context, cfg netcfg.Config) error {
	a.mu.Lock()
	a.inflight++
	a.applies++
	n := a.applies
	if a.inflight > 1 {
		a.problems = append(a.problems, fmt.Sprintf("apply #%d overlaps another", n))
	}
	buf := make([]byte, 64<<10)
	if stack := string(buf[:runtime.Stack(buf, false)]); !strings.Contains(stack, "(*reconciler).run(") {
		a.problems = append(a.problems, fmt.Sprintf("apply #%d outside the reconciler's loop:\n%s", n, stack))
	}
	a.mu.Unlock()
	// Let others run meanwhile, so that an apply from another goroutine
	// would overlap. (No sleep: a goroutine waiting on a mutex would stop
	// the bubble's clock.)
	for range 100 {
		runtime.Gosched()
	}
	a.mu.Lock()
	a.inflight--
	a.mu.Unlock()
	return fmt.Errorf("apply #%d", n)
}

func (a *serialApplier) State(context.Context) (netcfg.State, error) { return netcfg.State{}, nil }
func (a *serialApplier) Close() error                                { return nil }

// Concurrent API calls that must take effect before they answer send their
// apply to the reconciler's one goroutine, with the triggers and the
// resync: no two applies overlap, and each caller gets the result of an
// apply planned after its change.
func TestAPIAppliesGoThroughTheReconciler(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		app := &serialApplier{}
		// changes stands for what the API callers change (members): each
		// plan records the changes it saw, by the number of its apply.
		var mu sync.Mutex
		var changes []int
		plans := map[int][]int{}
		planned := 0
		steps := reconcileSteps{
			view:        func() mesh.View { return mesh.View{} },
			moveMembers: func(mesh.View) error { return nil },
			desired: func(mesh.View) (netcfg.Config, time.Duration, error) {
				mu.Lock()
				defer mu.Unlock()
				planned++
				plans[planned] = slices.Clone(changes)
				return netcfg.Config{}, 0, nil
			},
		}
		r := newReconciler(app, steps, time.Second, slog.New(slog.DiscardHandler))
		ctx, cancel := context.WithCancel(t.Context())
		stopped := make(chan struct{})
		go func() { r.run(ctx); close(stopped) }()

		const callers = 20
		results := make([]error, callers)
		var wg sync.WaitGroup
		for i := range callers {
			wg.Go(func() {
				r.Trigger() // membership events meanwhile
				mu.Lock()
				changes = append(changes, i)
				mu.Unlock()
				results[i] = r.applyNow(ctx)
			})
		}
		wg.Wait()

		seen := map[string]int{}
		for i, err := range results {
			var n int
			if err == nil || func() bool { _, serr := fmt.Sscanf(err.Error(), "apply #%d", &n); return serr != nil }() {
				t.Fatalf("caller %d got %v, want its apply's own error", i, err)
			}
			if prev, dup := seen[err.Error()]; dup {
				t.Errorf("callers %d and %d got the result of the same apply (%v)", prev, i, err)
			}
			seen[err.Error()] = i
			mu.Lock()
			saw := slices.Contains(plans[n], i)
			mu.Unlock()
			if !saw {
				t.Errorf("caller %d was answered by apply #%d, planned before its change", i, n)
			}
		}
		cancel()
		<-stopped
		if err := r.applyNow(t.Context()); !errors.Is(err, errStopping) {
			t.Errorf("apply after the reconciler stopped: %v, want %v", err, errStopping)
		}
		app.mu.Lock()
		defer app.mu.Unlock()
		for _, p := range app.problems {
			t.Error(p)
		}
		if runs, errs, _, _ := r.stats(); runs != uint64(app.applies) || errs != runs || runs < callers {
			t.Errorf("stats: %d runs, %d errors, for %d applies (at least %d)", runs, errs, app.applies, callers)
		}
	})
}

// A caller that gives up before the reconciler takes its apply gets its
// context's error, and the apply still happens soon (triggered).
func TestAPIApplyGivenUp(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		app := &serialApplier{}
		steps := reconcileSteps{
			view:        func() mesh.View { return mesh.View{} },
			moveMembers: func(mesh.View) error { return nil },
			desired:     func(mesh.View) (netcfg.Config, time.Duration, error) { return netcfg.Config{}, 0, nil },
		}
		r := newReconciler(app, steps, time.Hour, slog.New(slog.DiscardHandler))
		ctx, cancel := context.WithCancel(t.Context())
		gone, giveUp := context.WithCancel(t.Context())
		giveUp()
		if err := r.applyNow(gone); !errors.Is(err, context.Canceled) {
			t.Fatalf("applyNow with a canceled context: %v", err)
		}
		stopped := make(chan struct{})
		go func() { r.run(ctx); close(stopped) }()
		synctest.Wait()
		app.mu.Lock()
		n := app.applies
		app.mu.Unlock()
		if n != 1 {
			t.Errorf("%d applies after a caller gave up, want 1 (triggered)", n)
		}
		cancel()
		<-stopped
	})
}

// planDaemon returns a daemon with only what planning needs: a key, the
// configuration, the members (one, alice) at site 1 of the mesh whose ULA
// is ula, and their reach.
func planDaemon(t *testing.T, dir string, ula netip.Prefix, log *slog.Logger) *Daemon {
	t.Helper()
	priv, err := key.NewPrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.Name, cfg.Interface = "a", "bt-a"
	site := mesh.SiteOf(ula, 1)
	reg, err := members.Open(filepath.Join(dir, MembersFile), members.Site{IPv4: site.IPv4, IPv6: site.IPv6})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })
	if _, _, err := reg.Add(members.AddRequest{Name: "alice"}); err != nil {
		t.Fatal(err)
	}
	return &Daemon{cfg: cfg, log: log, priv: priv, members: reg, reach: newReacher(dir)}
}

// desired only computes: called twice for a view where the booture has
// moved to another site, it leaves the members where they are and gives
// the same plan. The reconciler's moveMembers moves them, and persists
// it, once.
func TestDesiredHasNoSideEffect(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ula := mesh.MeshID{1, 2, 3}.ULA()
		var logs syncBuffer
		dir := t.TempDir()
		d := planDaemon(t, dir, ula, slog.New(slog.NewTextHandler(&logs, nil)))
		file := filepath.Join(dir, MembersFile)
		before, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		site1 := d.members.Site()
		v := mesh.View{Self: mesh.Record{Name: "a"}, ULA: ula, Site: mesh.SiteOf(ula, 2)}

		cfg1, recheck1, err1 := d.desired(v)
		cfg2, recheck2, err2 := d.desired(v)
		if err1 != nil || err2 != nil {
			t.Fatal(err1, err2)
		}
		if !reflect.DeepEqual(cfg1, cfg2) || recheck1 != recheck2 {
			t.Errorf("two plans of one view differ:\n%+v\n%+v", cfg1, cfg2)
		}
		after, _ := os.ReadFile(file)
		if d.members.Site() != site1 || !bytes.Equal(before, after) {
			t.Fatalf("desired moved the members: site %v (was %v), file changed: %v", d.members.Site(), site1, !bytes.Equal(before, after))
		}

		for range 2 {
			if err := d.moveMembers(v); err != nil {
				t.Fatal(err)
			}
		}
		if want := (members.Site{IPv4: v.Site.IPv4, IPv6: v.Site.IPv6}); d.members.Site() != want {
			t.Fatalf("members at %v after moveMembers, want %v", d.members.Site(), want)
		}
		if n := strings.Count(logs.String(), "site changed"); n != 1 {
			t.Errorf("the move was logged %d times, want once:\n%s", n, logs.String())
		}
		m, _ := d.members.Get("alice")
		if !v.Site.IPv4.Contains(m.IPv4) {
			t.Errorf("alice at %v, outside the new site %v", m.IPv4, v.Site.IPv4)
		}
		moved, _ := os.ReadFile(file)
		if bytes.Equal(before, moved) {
			t.Error("the move was not persisted")
		}
		cfg3, _, err := d.desired(v)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(fmt.Sprint(cfg3.Peers), m.IPv4.String()) {
			t.Errorf("the plan after the move lacks alice's new address %v: %+v", m.IPv4, cfg3.Peers)
		}
	})
}

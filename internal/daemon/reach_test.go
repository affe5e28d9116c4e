package daemon

import (
	"context"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"testing/synctest"
	"time"

	"github.com/booture/booture/internal/api"
	"github.com/booture/booture/internal/waitfor"
	"github.com/booture/booture/key"
	"github.com/booture/booture/members"
	"github.com/booture/booture/netcfg/fakenet"
)

func TestReacher(t *testing.T) {
	dir := t.TempDir()
	k1, _ := key.NewPrivateKey()
	k2, _ := key.NewPrivateKey()
	a, b := k1.Public(), k2.Public()
	ep := netip.MustParseAddrPort("198.51.100.7:41000")
	now := time.Unix(1_800_000_000, 0)

	r := newReacher(dir)
	r.observe(map[key.PublicKey]netip.AddrPort{a: ep})
	if got, _ := r.endpoint(a, now); got.IsValid() {
		t.Fatal("a member is reached without being enabled or the daemon restarting")
	}
	r.reach(a, now)
	r.reach(b, now) // endpoint unknown: nothing to reach
	if got, until := r.endpoint(a, now.Add(time.Second)); got != ep || !until.Equal(now.Add(reachWindow)) {
		t.Fatalf("reaching a: %v until %v", got, until)
	}
	if got, _ := r.endpoint(b, now); got.IsValid() {
		t.Fatal("reaching a member whose endpoint is unknown")
	}
	if got, _ := r.endpoint(a, now.Add(reachWindow)); got.IsValid() {
		t.Fatal("still reaching after the window")
	}

	// Saved (0600) and found again by a restarted daemon.
	if err := r.save(); err != nil {
		t.Fatal(err)
	}
	info, err := os.Stat(filepath.Join(dir, EndpointsFile))
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("endpoints file: %v %v", info, err)
	}
	r2 := newReacher(dir)
	r2.reachAll(now)
	if got, _ := r2.endpoint(a, now); got != ep {
		t.Fatalf("after restart: %v", got)
	}
	r2.forget(a)
	if got, _ := r2.endpoint(a, now); got.IsValid() {
		t.Fatal("a removed member is still reached")
	}
}

// TestWatchMembersDumpsOnlyWithMembers: the watch of members' endpoints
// reads WireGuard (a dump of every mesh peer too) only once there are
// members to watch, then once per period, and once more when it stops.
func TestWatchMembersDumpsOnlyWithMembers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := t.TempDir()
		reg, err := members.Open(filepath.Join(dir, MembersFile), members.Site{
			IPv4: netip.MustParsePrefix("10.77.3.0/24"), IPv6: netip.MustParsePrefix("fd00:b007:0:3::/64"),
		})
		if err != nil {
			t.Fatal(err)
		}
		defer reg.Close()
		fake := &recorder{Fake: fakenet.New()}
		d := &Daemon{log: slog.New(slog.DiscardHandler), members: reg, reach: newReacher(dir), applier: fake}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() { d.watchMembers(ctx, 2*time.Second); close(done) }()

		time.Sleep(time.Minute)
		synctest.Wait() // 30 watch periods have passed and the watch waits for the next
		if n := fake.states.Load(); n != 0 {
			t.Fatalf("%d WireGuard dumps in a minute with no member", n)
		}
		if _, _, err := reg.Add(members.AddRequest{Name: "alice"}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Second)
		synctest.Wait()
		if n := fake.states.Load(); n != 5 {
			t.Errorf("%d WireGuard dumps in 10 s with a member, want 5 (one per period)", n)
		}
		cancel()
		<-done
		if n := fake.states.Load(); n != 6 {
			t.Errorf("%d WireGuard dumps after the watch stopped, want 6 (a last one at the end)", n)
		}
	})
}

// TestDaemonWatchesMembers: the daemon runs the watch, which reads
// WireGuard once there is a member.
func TestDaemonWatchesMembers(t *testing.T) {
	td := startDaemon(t, "a", "")
	start := td.net.states.Load()
	if _, err := td.client.AddMember(context.Background(), api.MemberAddRequest{Name: "alice"}); err != nil {
		t.Fatal(err)
	}
	// Adding a member answers with its state (one dump); the watch comes next.
	waitfor.Cond(t, 10*time.Second, "the watch to read WireGuard", func() bool { return td.net.states.Load()-start >= 2 })
}

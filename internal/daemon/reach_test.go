package daemon

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/booture/booture/internal/api"
	"github.com/booture/booture/mesh"
)

func TestReacher(t *testing.T) {
	dir := t.TempDir()
	k1, _ := mesh.NewPrivateKey()
	k2, _ := mesh.NewPrivateKey()
	a, b := k1.Public(), k2.Public()
	ep := netip.MustParseAddrPort("198.51.100.7:41000")
	now := time.Unix(1_800_000_000, 0)

	r := newReacher(dir)
	r.observe(map[mesh.Key]netip.AddrPort{a: ep})
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
// members to watch.
func TestWatchMembersDumpsOnlyWithMembers(t *testing.T) {
	td := startDaemon(t, "a", "")
	start := td.net.states.Load()       // registering the metrics collects once
	time.Sleep(2500 * time.Millisecond) // over a watch period (2 s)
	if n := td.net.states.Load() - start; n != 0 {
		t.Fatalf("%d WireGuard dumps with no member", n)
	}
	start = td.net.states.Load()
	if _, err := td.client.AddMember(context.Background(), api.MemberAddRequest{Name: "alice"}); err != nil {
		t.Fatal(err)
	}
	// Adding a member answers with its state (one dump); the watch comes next.
	waitFor(t, 10*time.Second, "the watch to read WireGuard", func() bool { return td.net.states.Load()-start >= 2 })
}

package daemon

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/booture/booture/internal/api"
	"github.com/booture/booture/internal/waitfor"
	"github.com/booture/booture/key"
)

// TestBootureWithMemberKeySkipsOnlyThatPeer: a booture joins with the
// public key of one of a's VPN members (the member's own booture, set up
// with the key of its phone). a cannot have two WireGuard peers with one
// key: it keeps the member, leaves that booture out, says so once, and
// every later change of the mesh still reaches its network.
func TestBootureWithMemberKeySkipsOnlyThatPeer(t *testing.T) {
	var logs syncBuffer
	a := startDaemonLog(t, "a", &logs)
	b := startDaemon(t, "b", "")
	b.join(t, a)
	waitfor.Cond(t, 20*time.Second, "a and b peered", func() bool { return peersIn(a, b) && peersIn(b, a) })

	priv, err := key.NewPrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := a.client.AddMember(ctx, api.MemberAddRequest{Name: "phone", PublicKey: priv.Public().String()}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "state"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "state", KeyFile), []byte(priv.RevealBase64()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := startDaemon(t, "c", dir)
	c.join(t, a)
	waitfor.Cond(t, 20*time.Second, "b peered with c", func() bool { return peersIn(b, a, c) })

	// A later change still applies on a: d joins.
	d := startDaemon(t, "d", "")
	d.join(t, b)
	waitfor.Cond(t, 20*time.Second, "a peered with b and d", func() bool {
		return peersIn(a, b, d) && strings.Contains(a.net.Fake.String(), "10.77.4.0/24")
	})
	// The member keeps its own addresses; c's site is not routed to it.
	fake := a.net.Fake.String()
	if strings.Contains(fake, "10.77.3.0/24") {
		t.Fatalf("a routes c's site although c's key is a member's:\n%s", fake)
	}
	if !strings.Contains(fake, priv.Public().String()) {
		t.Fatalf("a lost its member's peer:\n%s", fake)
	}
	if st := a.status(t); st.Reconcile.LastError != "" {
		t.Fatalf("a's reconciler reports an error: %s", st.Reconcile.LastError)
	}
	if k := strings.Count(logs.String(), "its public key is a VPN member's"); k != 1 {
		t.Fatalf("the conflict was logged %d times, want once:\n%s", k, logs.String())
	}
}

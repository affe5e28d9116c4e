package lab_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/booture/booture/internal/lab"
)

// A used, an expired and a garbled token each give a
// one-line error saying which (exit code 1), and change nothing: a good
// token still works afterwards.
func TestInvitationErrors(t *testing.T) {
	t.Parallel()
	l := startFounderFirst(t, lab.Options{Hosts: 3})
	h1, h2, h3 := l.H(1), l.H(2), l.H(3)

	used, err := h1.Invite("")
	must(t, err)
	must(t, h2.Join(used))
	expired, err := h1.Invite("1s")
	must(t, err)
	good, err := h1.Invite("")
	must(t, err)
	// Change one character in the middle: the checksum no longer matches.
	b := []byte(good)
	i := len(b) / 2
	if b[i] == 'A' {
		b[i] = 'B'
	} else {
		b[i] = 'A'
	}
	garbled := string(b)
	truncated := good[:len(good)-6]
	time.Sleep(2100 * time.Millisecond) // the expiry has a one-second precision

	for _, c := range []struct {
		name, token, want string
	}{
		{"used", used, "already used"},
		{"expired", expired, "expired"},
		{"garbled", garbled, "garbled"},
		{"truncated", truncated, "garbled"},
		{"not a token", "hello", "garbled"},
	} {
		r := h3.CLI("join", c.token)
		lines := strings.Split(strings.TrimRight(r.Stderr, "\n"), "\n")
		switch {
		case r.Err != nil:
			t.Errorf("%s token: %v", c.name, r.Err)
		case r.Code != 1:
			t.Errorf("%s token: exit code %d, want 1 (stderr %q)", c.name, r.Code, r.Stderr)
		case len(lines) != 1 || !strings.HasPrefix(lines[0], "booture: "):
			t.Errorf("%s token: want a one-line error, got %q", c.name, r.Stderr)
		case !strings.Contains(lines[0], c.want):
			t.Errorf("%s token: the error should say %q: %q", c.name, c.want, lines[0])
		default:
			t.Logf("%s token: %s", c.name, lines[0])
		}
		if r.Stdout != "" {
			t.Errorf("%s token: unexpected output %q", c.name, r.Stdout)
		}
	}
	if st := status(t, h3); len(st.Peers) != 0 {
		t.Errorf("h3 joined something after failed joins: %+v", st.Peers)
	}
	must(t, h3.Join(good))
	must(t, lab.WaitMesh(15*time.Second, l.Hosts...))
}

// After `booture expel h3`, within 10 s no remaining booture
// accepts h3's gossip or WireGuard traffic although h3 keeps running with
// its old state: its pings fail, it is gone from the others' WireGuard peers,
// and they never list it alive again.
func TestExpel(t *testing.T) {
	t.Parallel()
	l := mesh(t, lab.Options{Hosts: 3}, 3)
	h1, h2, h3 := l.H(1), l.H(2), l.H(3)
	sts, err := lab.Statuses(l.Hosts...)
	must(t, err)
	st1, st2, st3 := sts[0], sts[1], sts[2]
	must(t, h3.WaitPing(st1.MeshIPv4, pingWait))

	r := h1.CLI("expel", "h3")
	must(t, r.Error())
	t.Logf("booture expel h3: %s", strings.TrimSpace(r.Stdout))
	t0 := time.Now()
	cutOff := func() error {
		for _, h := range []*lab.Host{h1, h2} {
			dev, err := h.WG()
			if err != nil {
				return err
			}
			if _, ok := dev.Peer(st3.PublicKey); ok {
				return fmt.Errorf("%s still has expelled h3 as WireGuard peer", h.Name)
			}
			st, err := h.Status()
			if err != nil {
				return err
			}
			if p, ok := lab.FindPeer(st, "h3"); ok && p.State == "alive" {
				return fmt.Errorf("%s lists expelled h3 alive", h.Name)
			}
		}
		dsts := []string{st1.MeshIPv4, st2.MeshIPv4, st1.MeshIPv6, st2.MeshIPv6}
		reached := make(chan string, len(dsts))
		for _, dst := range dsts {
			go func() {
				if h3.CanPing(dst) {
					reached <- dst
				} else {
					reached <- ""
				}
			}()
		}
		var errs []error
		for range dsts {
			if dst := <-reached; dst != "" {
				errs = append(errs, fmt.Errorf("expelled h3 still reaches %s", dst))
			}
		}
		return errors.Join(errs...)
	}
	if err := lab.Eventually(t.Context(), 10*time.Second, 200*time.Millisecond, cutOff); err != nil {
		t.Fatalf("h3 not cut off within 10s of its expulsion: %v", err)
	}
	t.Logf("h3 cut off %v after the expel command returned", time.Since(t0).Round(time.Millisecond))
	if !h3.Running() {
		t.Fatalf("h3's daemon stopped: it should keep running")
	}

	// It stays out, although it keeps running and retrying with its old
	// state, while h1 and h2 keep their mesh.
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if err := cutOff(); err != nil {
			t.Fatalf("%v s after the expulsion: %v", time.Since(t0).Round(time.Second), err)
		}
		time.Sleep(time.Second)
	}
	must(t, lab.CheckMesh(h1, h2))
	must(t, lab.PingMesh(pingWait, h1, h2))
	// Its gossip is refused: it sees the others as gone too.
	st := status(t, h3)
	for _, name := range []string{"h1", "h2"} {
		if p, ok := lab.FindPeer(st, name); ok && p.State == "alive" {
			t.Errorf("expelled h3 still gossips with %s (alive in its status)", name)
		}
	}
	if st := status(t, h3); !st.Expelled {
		t.Errorf("h3's status does not say it was expelled: %+v", st)
	}
	r = h3.CLI("invite")
	if r.Code != 1 || !strings.Contains(r.Stderr, "expelled") {
		t.Errorf("an expelled booture should refuse to invite: exit %d, %q", r.Code, r.Stderr)
	}

	// Restarted with its old state and key, it stays out.
	must(t, h3.Restart())
	t0 = time.Now()
	for time.Since(t0) < 10*time.Second {
		if err := cutOff(); err != nil {
			t.Fatalf("%v after the expelled h3 restarted: %v", time.Since(t0).Round(time.Second), err)
		}
		time.Sleep(time.Second)
	}
}

package daemon

import (
	"strings"
	"testing"
	"time"

	"github.com/booture/booture/internal/waitfor"
)

// TestSilentPeerRecreated: while WireGuard hears nothing from a new
// booture peer (the fakes here never answer), the booture that initiates
// (the lower public key) removes the peer and adds it again, which in
// WireGuard sends a new initiation at once; the other booture never does.
func TestSilentPeerRecreated(t *testing.T) {
	a := startDaemon(t, "a", "")
	b := startDaemon(t, "b", "")
	a.net.SetHandshakeOnAdd(false)
	b.net.SetHandshakeOnAdd(false)
	ma, mb := a.net.mark(), b.net.mark()
	b.join(t, a)
	ini, resp := a, b
	iniMark, respMark := ma, mb
	if b.d.priv.Public().String() < a.d.priv.Public().String() {
		ini, resp, iniMark, respMark = b, a, mb, ma
	}
	removals := func(td *testDaemon, mark int, of *testDaemon) int {
		n := 0
		for _, op := range td.net.opsSince(mark) {
			if strings.HasPrefix(op, "wg set") && strings.Contains(op, of.d.priv.Public().String()) && strings.HasSuffix(op, " remove") {
				n++
			}
		}
		return n
	}
	waitfor.Cond(t, 20*time.Second, "the lower key re-creates its new peer twice", func() bool {
		return removals(ini, iniMark, resp) >= 2
	})
	if n := removals(resp, respMark, ini); n != 0 {
		t.Errorf("%s (the higher key) re-created its peer %d times", resp.name, n)
	}
	if !peersIn(ini, resp) || !peersIn(resp, ini) {
		t.Errorf("the re-created peers are not both there")
	}
}

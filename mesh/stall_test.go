package mesh

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"testing"
	"time"

	"github.com/booture/booture/internal/waitfor"
)

// stallCatchUp opens a catch-up to victim as anyone on the LAN could,
// claiming to be the booture with key as and to hold newer credentials of
// victim's mesh, so that victim answers "yours" and waits for them; it then
// sends nothing more. It returns the open connection.
func stallCatchUp(t *testing.T, victim *testNode, as Record) net.Conn {
	t.Helper()
	victim.mu.Lock()
	sum := victim.summaryLocked()
	victim.mu.Unlock()
	sum.Epoch++
	conn, err := net.DialTimeout("tcp", victim.View().Self.Gossip.String(), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	body, _ := json.Marshal(catchUpRequest{Key: as.PublicKey, Name: as.Name, Summary: sum})
	if _, err := conn.Write(magicCatchUp); err != nil {
		t.Fatal(err)
	}
	if err := writeFrame(conn, framePlain, body); err != nil {
		t.Fatal(err)
	}
	kind, reply, err := readFrame(conn, maxFrame)
	var rep catchUpReply
	if err != nil || kind != framePlain || json.Unmarshal(reply, &rep) != nil || rep.Outcome != "yours" {
		t.Fatalf("stalling catch-up: answer %q %s, %v; want yours", kind, reply, err)
	}
	return conn
}

// stillOpen tells whether the other side of conn is still waiting (it has
// neither closed the connection nor sent anything).
func stillOpen(conn net.Conn) bool {
	conn.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	_, err := conn.Read(make([]byte, 1))
	return errors.Is(err, os.ErrDeadlineExceeded)
}

// TestStalledCatchUpDelaysNothing: a LAN host opens catch-ups to two
// bootures and stalls them. While they wait, an expulsion goes through
// on one and the other takes the new key (its rekey handling needs the
// same lock as the expulsion). Before, the catch-up held that lock until
// the handshake timed out (10 s), past the 3 s a replaced key is kept.
func TestStalledCatchUpDelaysNothing(t *testing.T) {
	nodes := startCluster(t, 3)
	b1, b2 := nodes[0], nodes[1]
	c1 := stallCatchUp(t, b1, b2.View().Self)
	c2 := stallCatchUp(t, b2, b1.View().Self)
	done := make(chan error, 1)
	go func() {
		_, err := b1.Expel(context.Background(), "b3")
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(handshakeTimeout + 5*time.Second):
		t.Fatal("the expulsion never returned")
	}
	waitfor.Cond(t, handshakeTimeout+5*time.Second, "b2 on the new key", func() bool { return currentCreds(b2).Epoch == 1 })
	if !stillOpen(c1) || !stillOpen(c2) {
		t.Fatal("the expulsion went through only once the stalled catch-ups had given up")
	}
}

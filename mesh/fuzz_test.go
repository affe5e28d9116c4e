package mesh

import (
	"bytes"
	"encoding/json"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/booture/booture/internal/waitfor"
	"github.com/booture/booture/key"
)

// Decoders of outside input must never panic, and what they accept must be
// valid.

func FuzzDecodeMeta(f *testing.F) {
	k, _ := key.NewPrivateKey()
	good, _ := encodeMeta(&Record{Name: "a", PublicKey: k.Public(), Site: 3, Endpoint: netip.MustParseAddrPort("198.51.100.1:51820")})
	f.Add("a", good)
	f.Add("b", []byte(`{"v":2,"k":"AAAA","s":1}`))
	f.Add("", []byte(`{}`))
	f.Fuzz(func(t *testing.T, name string, b []byte) {
		r, err := decodeMeta(new(verifier), name, netip.MustParseAddrPort("198.51.100.2:7946"), b)
		if err != nil {
			return
		}
		if err := r.Validate(); err != nil {
			t.Fatalf("decoded an invalid record: %v", err)
		}
		again, err := encodeMeta(&r)
		if err != nil {
			t.Fatalf("re-encoding: %v", err)
		}
		r2, err := decodeMeta(new(verifier), name, r.Gossip, again)
		if err != nil || r2 != r {
			t.Fatalf("round trip changed the record: %+v vs %+v (%v)", r, r2, err)
		}
	})
}

func FuzzParseToken(f *testing.F) {
	tok := Token{Expires: time.Unix(1900000000, 0), Inviter: []netip.AddrPort{netip.MustParseAddrPort("198.51.100.1:7946")}}
	f.Add(tok.Encode())
	f.Add(tokenPrefix)
	f.Add("garbage")
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParseToken(s)
		if err != nil {
			return
		}
		if len(got.Inviter) == 0 || len(got.Inviter) > maxTokenAddrs {
			t.Fatalf("accepted a token with %d addresses", len(got.Inviter))
		}
		again, err := ParseToken(got.Encode())
		if err != nil || again.ID != got.ID || again.Secret != got.Secret {
			t.Fatalf("round trip failed: %v", err)
		}
	})
}

func FuzzDecodePushState(f *testing.F) {
	k, _ := key.NewPrivateKey()
	ps, _ := json.Marshal(pushState{V: 1, Records: []Record{{Name: "a", PublicKey: k.Public(), Site: 2}}})
	f.Add(ps)
	f.Add([]byte(`{"v":1,"records":[{"name":"x"}],"revoked":[{}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		ps, err := decodePushState(b)
		if err != nil {
			return
		}
		for _, r := range ps.Records {
			if r.Validate() != nil {
				t.Fatal("kept an invalid record")
			}
		}
		for _, rv := range ps.Revoked {
			if rv.Key.IsZero() {
				t.Fatal("kept a revocation without a key")
			}
		}
	})
}

// FuzzHandshake feeds arbitrary bytes to the join and catch-up handlers of
// a live node: they must refuse, never crash or change the roster.
func FuzzHandshake(f *testing.F) {
	f.Add([]byte{0, 0, 0, 5, 'S', 1, 2, 3, 4}, false)
	f.Add([]byte{0, 0, 0, 3, 'P', '{', '}'}, true)
	f.Add([]byte{0xff, 0xff, 0xff, 0xff}, false)
	f.Add(append([]byte{0, 0, 0, 1 + 16 + minNoiseMsg1, frameNoise}, make([]byte, 16+minNoiseMsg1)...), false)
	n := startTestNode(f, "fuzz", "", key.PrivateKey{})
	f.Fuzz(func(t *testing.T, b []byte, catchUp bool) {
		c1, c2 := net.Pipe()
		done := make(chan struct{})
		go func() {
			defer close(done)
			magic := magicJoin
			if catchUp {
				magic = magicCatchUp
			}
			n.handleStream(c2, magic)
		}()
		c1.SetDeadline(time.Now().Add(2 * time.Second))
		go func() {
			c1.Write(b)
			c1.Write(bytes.Repeat([]byte{0}, 8))
		}()
		buf := make([]byte, 4096)
		for {
			if _, err := c1.Read(buf); err != nil {
				break
			}
		}
		c1.Close()
		<-done
		if len(n.View().Peers) != 0 {
			t.Fatal("garbage changed the roster")
		}
	})
}

// Garbage and truncated packets and streams on the gossip port are
// dropped: the node keeps working and its mesh does not change.
func TestGarbageOnGossipPort(t *testing.T) {
	nodes := startCluster(t, 2)
	a := nodes[0]
	addr := a.View().Self.Gossip.String()
	garbage := [][]byte{
		{}, {0}, {1, 2, 3}, bytes.Repeat([]byte{0xff}, 1400), []byte("BTJ1"), []byte("BTC1\x00\x00"),
		append([]byte("BTJ1"), 0, 0, 0, 9, 'S'), append([]byte("BTC1"), 0, 0, 0, 3, 'P', '{', '}'),
	}
	for i := 0; i < 200; i++ {
		garbage = append(garbage, randomBytes(1+i*7%1500))
	}
	udp, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	for _, g := range garbage {
		udp.Write(g)
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(200 * time.Millisecond))
		c.Write(g)
		c.Close()
	}
	// The node still works: a new booture joins, after the garbage.
	meshID := a.View().MeshID
	c := startTestNode(t, "c", "", key.PrivateKey{})
	c.joinVia(a)
	all := append(nodes, c)
	waitfor.Cond(t, 20*time.Second, "convergence after garbage", func() bool { return converged(all) })
	// And the garbage added nothing: a knows b2 and c only, in its mesh.
	if v := a.View(); len(v.Peers) != 2 || v.MeshID != meshID {
		t.Fatalf("garbage changed the mesh: %+v", v.Peers)
	}
}

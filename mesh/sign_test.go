package mesh

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"math"
	"net/netip"
	"runtime"
	"strings"
	"testing"
	"time"

	"go.step.sm/crypto/x25519"

	"github.com/booture/booture/catalog"
	"github.com/booture/booture/key"
)

func testRecord(t testing.TB) (key.PrivateKey, Record) {
	t.Helper()
	priv, err := key.NewPrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UnixMilli()
	return priv, Record{
		Name: "diois", PublicKey: priv.Public(), Site: 12, SiteClaim: now - 1000,
		Endpoint: netip.MustParseAddrPort("198.51.100.9:51820"), Gossip: netip.MustParseAddrPort("198.51.100.9:7946"),
		Version: "1.2.3", Gen: now, Catalog: now - 10,
	}
}

// xPub is k as the XEdDSA library takes it.
func xPub(k key.PublicKey) x25519.PublicKey {
	raw := k.Raw32()
	return x25519.PublicKey(raw[:])
}

func signed(priv key.PrivateKey, r Record) Record {
	r.Sig = Signature{}
	r.Sig = sign(priv, recordMessage(&r), nil)
	return r
}

// The signature is XEdDSA's: the library's own check accepts it, and ours
// (through the key's cached Edwards form) agrees with the library's.
func TestSignatureIsXEdDSA(t *testing.T) {
	priv, r := testRecord(t)
	r = signed(priv, r)
	msg := recordMessage(&r)
	if !x25519.Verify(xPub(r.PublicKey), msg, r.Sig[:]) {
		t.Fatal("the library does not accept our signature")
	}
	var v verifier
	for range 2 { // the second time from the cache
		if !v.verify(r.PublicKey, msg, r.Sig) {
			t.Fatal("our check refuses a good signature")
		}
	}
	other, _ := key.NewPrivateKey()
	if v.verify(other.Public(), msg, r.Sig) {
		t.Fatal("a signature passes for another key")
	}
	bad := r.Sig
	bad[5] ^= 1
	if v.verify(r.PublicKey, msg, bad) || x25519.Verify(xPub(r.PublicKey), msg, bad[:]) {
		t.Fatal("a damaged signature passes")
	}
	// A catalog signature never passes for a record, nor the reverse.
	cat := sign(priv, catalogMessage(r.Name, r.PublicKey, r.Gen, []byte("[]")), nil)
	if v.verify(r.PublicKey, msg, cat) {
		t.Fatal("a catalog signature passes for a record")
	}
}

// Every field the owner sets is signed; what others saw is not.
func TestRecordSignatureCoversOwnerFields(t *testing.T) {
	priv, r := testRecord(t)
	r = signed(priv, r)
	var v verifier
	if !v.verifyRecord(&r) {
		t.Fatal("good record refused")
	}
	for name, change := range map[string]func(*Record){
		"name":     func(r *Record) { r.Name = "crest" },
		"key":      func(r *Record) { k, _ := key.NewPrivateKey(); r.PublicKey = k.Public() },
		"site":     func(r *Record) { r.Site++ },
		"claim":    func(r *Record) { r.SiteClaim-- },
		"endpoint": func(r *Record) { r.Endpoint = netip.MustParseAddrPort("203.0.113.66:51820") },
		"gossip":   func(r *Record) { r.Gossip = netip.MustParseAddrPort("203.0.113.66:7946") },
		"version":  func(r *Record) { r.Version = "6.6.6" },
		"gen":      func(r *Record) { r.Gen++ },
		"catalog":  func(r *Record) { r.Catalog++ },
	} {
		c := r
		change(&c)
		if v.verifyRecord(&c) {
			t.Errorf("changed %s: the signature still holds", name)
		}
	}
	c := r
	c.SeenAt, c.LeftAt = 5, 6
	if !v.verifyRecord(&c) {
		t.Error("what others saw of a booture broke its signature")
	}
	// An IPv4 address written as IPv4-mapped IPv6 is the same address.
	c = r
	c.Gossip = netip.AddrPortFrom(netip.AddrFrom16(r.Gossip.Addr().As16()), r.Gossip.Port())
	if !v.verifyRecord(&c) {
		t.Error("the gossip address's IPv6 form broke the signature")
	}
}

func TestSignedMetaRoundTrip(t *testing.T) {
	priv, r := testRecord(t)
	r = signed(priv, r)
	b, err := encodeMeta(&r)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(b, []byte(`"v":2`)) {
		t.Fatalf("signed metadata is not version 2: %s", b)
	}
	var v verifier
	got, err := decodeMeta(&v, r.Name, r.Gossip, b)
	if err != nil || got != r {
		t.Fatalf("round trip: %+v, %v", got, err)
	}
	// Replayed under another name or from another address: refused.
	if _, err := decodeMeta(&v, "crest", r.Gossip, b); err == nil {
		t.Error("a record passes under another name")
	}
	if _, err := decodeMeta(&v, r.Name, netip.MustParseAddrPort("203.0.113.66:7946"), b); err == nil {
		t.Error("a record passes from another gossip address")
	}
	// Version 2 without a signature, or with another's: refused.
	noSig := strings.Replace(string(b), `"sig":"`+string(must(r.Sig.MarshalText()))+`"`, `"x":1`, 1)
	if _, err := decodeMeta(&v, r.Name, r.Gossip, []byte(noSig)); err == nil {
		t.Error("version 2 metadata without a signature accepted")
	}
	other, _ := key.NewPrivateKey()
	forged := r
	forged.Endpoint = netip.MustParseAddrPort("203.0.113.66:51820")
	forged = signed(other, forged)
	fb, _ := encodeMeta(&forged)
	if _, err := decodeMeta(&v, r.Name, r.Gossip, fb); err == nil {
		t.Error("a record signed by another key accepted")
	}
	// An older daemon's unsigned record decodes, unsigned.
	r.Sig = Signature{}
	ub, _ := encodeMeta(&r)
	if got, err := decodeMeta(&v, r.Name, r.Gossip, ub); err != nil || !got.Sig.IsZero() {
		t.Fatalf("unsigned version 1 metadata: %+v, %v", got, err)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// The largest record still fits memberlist's 512 bytes once signed: the
// longest name (not in the metadata: memberlist carries it), an IPv6
// endpoint, the longest version string in the worst JSON escaping, and the
// largest numbers.
func TestSignedMetaFitsLimit(t *testing.T) {
	priv, r := testRecord(t)
	r.Name = strings.Repeat("x", 63)
	r.Site = MaxSite
	r.SiteClaim, r.Gen, r.Catalog = math.MaxInt64, math.MaxInt64, math.MaxInt64
	r.Endpoint = netip.MustParseAddrPort("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535")
	r.Gossip = r.Endpoint
	r.Version = strings.Repeat("\x01", 32) // escaped as \u0001: 6 bytes each
	if err := r.Validate(); err != nil {
		t.Fatal(err)
	}
	r = signed(priv, r)
	b, err := encodeMeta(&r)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("largest signed node metadata: %d bytes of %d", len(b), metaLimit)
	if len(b) > metaLimit {
		t.Fatalf("largest signed node metadata is %d bytes, over memberlist's %d", len(b), metaLimit)
	}
	// A usual one, for scale.
	_, u := testRecord(t)
	u = signed(priv, u)
	ub, _ := encodeMeta(&u)
	t.Logf("usual signed node metadata: %d bytes", len(ub))
}

// testNodeAt is a node with no gossip, for unit tests of the roster, whose
// clock reads now.
func testNodeAt(now time.Time) *Node {
	self, _ := key.NewPrivateKey()
	return &Node{publicKey: self.Public(), roster: newRoster(), now: func() time.Time { return now }, log: slog.New(slog.DiscardHandler)}
}

func TestUpsertChecksOwner(t *testing.T) {
	priv, r := testRecord(t)
	now := time.UnixMilli(r.Gen)
	n := testNodeAt(now)
	real := signed(priv, r)
	if !n.upsertLocked(real, false) {
		t.Fatal("signed record refused")
	}
	// Another's signature, whatever the generation: refused.
	other, _ := key.NewPrivateKey()
	forged := r
	forged.Endpoint, forged.Gen = netip.MustParseAddrPort("203.0.113.66:51820"), r.Gen+1
	n.upsertLocked(signed(other, forged), false)
	if got := rosterGet(n, r.PublicKey); got != real {
		t.Fatalf("a record signed by another key replaced the owner's: %+v", got)
	}
	// Unsigned, once the owner's signed record is held: refused.
	n.upsertLocked(forged, false)
	if got := rosterGet(n, r.PublicKey); got != real {
		t.Fatalf("an unsigned record replaced a signed one: %+v", got)
	}
	// The owner's next record wins.
	next := r
	next.Gen++
	next.Endpoint = netip.MustParseAddrPort("198.51.100.10:51820")
	next = signed(priv, next)
	if !n.upsertLocked(next, false) || rosterGet(n, r.PublicKey) != next {
		t.Fatal("the owner's next record lost")
	}
	// Its older one, replayed, does not.
	n.upsertLocked(real, false)
	if rosterGet(n, r.PublicKey) != next {
		t.Fatal("a replayed older record won")
	}
}

// Times further than maxClockSkew ahead are refused, within it taken; what
// others saw is brought back to now.
func TestUpsertRefusesFuture(t *testing.T) {
	priv, r := testRecord(t)
	now := time.UnixMilli(r.Gen)
	for name, change := range map[string]func(*Record){
		"gen":     func(r *Record) { r.Gen = now.Add(maxClockSkew).UnixMilli() + 1 },
		"max gen": func(r *Record) { r.Gen = math.MaxInt64 },
		"claim":   func(r *Record) { r.SiteClaim = now.Add(time.Hour).UnixMilli() },
		"catalog": func(r *Record) { r.Catalog = now.Add(time.Hour).UnixMilli() },
	} {
		for _, sig := range []bool{true, false} {
			n := testNodeAt(now)
			c := r
			change(&c)
			if sig {
				c = signed(priv, c)
			}
			if n.upsertLocked(c, false) {
				t.Errorf("%s from the future (signed %v): accepted", name, sig)
			}
		}
	}
	n := testNodeAt(now)
	c := r
	c.Gen = now.Add(maxClockSkew).UnixMilli()
	c.SeenAt, c.LeftAt = math.MaxInt64, math.MaxInt64
	if !n.upsertLocked(signed(priv, c), false) {
		t.Fatal("a generation within the allowed skew refused")
	}
	if got := rosterGet(n, c.PublicKey); got.SeenAt != now.UnixMilli() || got.LeftAt != now.UnixMilli() {
		t.Fatalf("seen/left from the future kept: %d %d", got.SeenAt, got.LeftAt)
	}
}

// Mixed versions: an older daemon's unsigned record is taken for a key no
// signed record is held for, and a signed record then replaces it whatever
// its generation.
func TestUnsignedRecordsDuringUpgrade(t *testing.T) {
	priv, r := testRecord(t)
	n := testNodeAt(time.UnixMilli(r.Gen))
	old := r
	old.Gen = r.Gen + 100 // within the skew
	if !n.upsertLocked(old, false) {
		t.Fatal("an older daemon's unsigned record refused")
	}
	up := signed(priv, r)
	n.upsertLocked(up, false)
	if rosterGet(n, r.PublicKey) != up {
		t.Fatal("the upgraded booture's signed record did not replace its unsigned one")
	}
	n.upsertLocked(old, false)
	if rosterGet(n, r.PublicKey) != up {
		t.Fatal("an unsigned record came back after a signed one")
	}
}

func TestNextGenNeverWraps(t *testing.T) {
	now := time.UnixMilli(1700000000000)
	if g := nextGen(math.MaxInt64, now); g != math.MaxInt64 {
		t.Fatalf("nextGen(max) = %d", g)
	}
	if g := nextGen(5, now); g != now.UnixMilli() {
		t.Fatalf("nextGen(5) = %d", g)
	}
	if g := nextGen(now.UnixMilli(), now); g != now.UnixMilli()+1 {
		t.Fatalf("nextGen(now) = %d", g)
	}
}

func TestSignedCatalog(t *testing.T) {
	priv, _ := key.NewPrivateKey()
	svcs := []catalog.Service{svc("b1", "cloud", catalog.HealthHealthy)}
	b, err := encodeCatalog(priv, "b1", 7, svcs, nil)
	if err != nil {
		t.Fatal(err)
	}
	var v verifier
	msg, err := decodeCatalog(&v, b)
	if err != nil || !msg.Signed || msg.Version != 7 || len(msg.Services) != 1 || msg.Services[0] != svcs[0] {
		t.Fatalf("decoded %+v, %v", msg, err)
	}
	// Any change to what is signed breaks it.
	for name, change := range map[string]func(*catalogWire){
		"from":     func(w *catalogWire) { w.From = "b2" },
		"key":      func(w *catalogWire) { k, _ := key.NewPrivateKey(); w.Key = k.Public() },
		"version":  func(w *catalogWire) { w.Version++ },
		"services": func(w *catalogWire) { w.Services = []byte(strings.Replace(string(w.Services), "cloud", "cluod", -1)) },
		"no sig":   func(w *catalogWire) { w.Sig = Signature{} },
	} {
		var w catalogWire
		if err := json.Unmarshal(b, &w); err != nil {
			t.Fatal(err)
		}
		change(&w)
		wb, _ := json.Marshal(w)
		if _, err := decodeCatalog(&v, wb); err == nil {
			t.Errorf("changed %s: accepted", name)
		}
	}
	// An older daemon's catalog (version 1, unsigned) decodes, unsigned.
	old, _ := json.Marshal(catalogMsg{V: 1, From: "b1", Key: priv.Public(), Version: 7, Services: svcs})
	if msg, err := decodeCatalog(&v, old); err != nil || msg.Signed {
		t.Fatalf("older daemon's catalog: %+v, %v", msg, err)
	}
	// Extra fields of a newer daemon's services are signed as they are.
	raw := strings.Replace(string(must(json.Marshal(svcs))), `"name"`, `"future":1,"name"`, 1)
	w := catalogWire{V: 2, From: "b1", Key: priv.Public(), Version: 8, Services: json.RawMessage(raw)}
	w.Sig = sign(priv, catalogMessage(w.From, w.Key, w.Version, w.Services), nil)
	if msg, err := decodeCatalog(&v, must(json.Marshal(w))); err != nil || !msg.Signed {
		t.Fatalf("newer daemon's catalog: %+v, %v", msg, err)
	}
}

// The benchmarks also report the CPU time per operation on their thread
// (cpu-ns/op): on this machine's 2 shared cores, ns/op counts the waits.

func benchCPU(b *testing.B, f func()) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	start := threadCPU()
	for b.Loop() {
		f()
	}
	b.ReportMetric(float64(threadCPU()-start)/float64(b.N), "cpu-ns/op")
}

func BenchmarkSignRecord(b *testing.B) {
	priv, r := testRecord(b)
	benchCPU(b, func() {
		r.Gen++
		sign(priv, recordMessage(&r), nil)
	})
}

// BenchmarkVerifyRecord is the check of a record of a booture already seen
// (its key's Edwards form cached), as gossip brings them.
func BenchmarkVerifyRecord(b *testing.B) {
	priv, r := testRecord(b)
	r = signed(priv, r)
	var v verifier
	benchCPU(b, func() {
		if !v.verifyRecord(&r) {
			b.Fatal("refused")
		}
	})
}

// BenchmarkVerifyRecordNewKey is the check of a first record of a booture.
func BenchmarkVerifyRecordNewKey(b *testing.B) {
	priv, r := testRecord(b)
	r = signed(priv, r)
	benchCPU(b, func() {
		var v verifier
		if !v.verifyRecord(&r) {
			b.Fatal("refused")
		}
	})
}

// BenchmarkDecodeSignedMeta is what an alive message with a new record
// costs: decoding and checking.
func BenchmarkDecodeSignedMeta(b *testing.B) {
	priv, r := testRecord(b)
	r = signed(priv, r)
	meta, _ := encodeMeta(&r)
	var v verifier
	benchCPU(b, func() {
		if _, err := decodeMeta(&v, r.Name, r.Gossip, meta); err != nil {
			b.Fatal(err)
		}
	})
}

// FuzzDecodeSignedMeta: what decodes is valid, and a record that decodes
// signed carries its key's signature of exactly what was decoded.
func FuzzDecodeSignedMeta(f *testing.F) {
	priv, r := testRecord(f)
	r = signed(priv, r)
	good, _ := encodeMeta(&r)
	f.Add(r.Name, good)
	f.Add(r.Name, bytes.Replace(good, []byte(`"s":12`), []byte(`"s":13`), 1))
	f.Add(r.Name, []byte(`{"v":2,"k":"`+r.PublicKey.String()+`","s":1,"sig":"`+strings.Repeat("A", 86)+`"}`))
	f.Add("", []byte(`{"v":3}`))
	var v verifier
	f.Fuzz(func(t *testing.T, name string, b []byte) {
		got, err := decodeMeta(&v, name, r.Gossip, b)
		if err != nil {
			return
		}
		if err := got.Validate(); err != nil {
			t.Fatalf("decoded an invalid record: %v", err)
		}
		if !got.Sig.IsZero() && !x25519.Verify(xPub(got.PublicKey), recordMessage(&got), got.Sig[:]) {
			t.Fatal("decoded a signed record whose signature does not hold")
		}
		again, err := encodeMeta(&got)
		if err != nil {
			t.Fatalf("re-encoding: %v", err)
		}
		if got2, err := decodeMeta(&v, name, r.Gossip, again); err != nil || got2 != got {
			t.Fatalf("round trip changed the record: %+v vs %+v (%v)", got, got2, err)
		}
	})
}

// FuzzDecodeSignedCatalog: a version 2 catalog that decodes is signed by
// the key it names, and its services are valid.
func FuzzDecodeSignedCatalog(f *testing.F) {
	priv, _ := key.NewPrivateKey()
	good, _ := encodeCatalog(priv, "b1", 7, []catalog.Service{svc("b1", "cloud", catalog.HealthHealthy)}, nil)
	f.Add(good)
	f.Add(bytes.Replace(good, []byte("cloud"), []byte("cluod"), 1))
	f.Add([]byte(`{"v":2,"from":"b1","key":"` + priv.Public().String() + `","version":1,"services":null}`))
	f.Add([]byte(`{"v":1,"from":"b1","services":[]}`))
	var v verifier
	f.Fuzz(func(t *testing.T, b []byte) {
		msg, err := decodeCatalog(&v, b)
		if err != nil {
			return
		}
		if msg.V >= catalogVersion && !msg.Signed {
			t.Fatal("accepted a version 2 catalog without a signature")
		}
		for _, s := range msg.Services {
			if checkService(s, msg.From) != nil {
				t.Fatal("accepted an invalid service")
			}
		}
	})
}

// FuzzUpsertKeepsOwnersWord: whatever full state another booture sends,
// the record held for a booture that signs stays one it signed.
func FuzzUpsertKeepsOwnersWord(f *testing.F) {
	priv, r := testRecord(f)
	r = signed(priv, r)
	forged := r
	forged.Gen, forged.Endpoint = math.MaxInt64, netip.MustParseAddrPort("203.0.113.66:51820")
	f.Add(must(json.Marshal(pushState{V: 1, Records: []Record{forged}})))
	forged.Sig = Signature{}
	f.Add(must(json.Marshal(pushState{V: 1, Records: []Record{forged}})))
	f.Add(must(json.Marshal(pushState{V: 1, Records: []Record{r}})))
	now := time.UnixMilli(r.Gen)
	f.Fuzz(func(t *testing.T, b []byte) {
		ps, err := decodePushState(b)
		if err != nil {
			return
		}
		n := testNodeAt(now)
		n.upsertLocked(r, false)
		for _, rec := range ps.Records {
			n.upsertLocked(rec, false)
		}
		got := rosterGet(n, r.PublicKey)
		if got.Sig.IsZero() || !x25519.Verify(xPub(r.PublicKey), recordMessage(&got), got.Sig[:]) {
			t.Fatalf("the owner's record was replaced by one it did not sign: %+v", got)
		}
	})
}

// rosterGet returns n's record of k (zero if none).
func rosterGet(n *Node, k key.PublicKey) Record {
	r, _ := n.roster.get(k)
	return r
}

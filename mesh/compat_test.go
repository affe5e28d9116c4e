package mesh

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/booture/booture/internal/store"
	"github.com/booture/booture/key"
)

// The files under testdata/compat were written by the daemon before the
// key types moved to package key (mesh.Key was then a [32]byte). A state
// directory and the gossip of bootures of that version must read the same
// and be written back byte for byte.

// compatKey is the key the fixtures hold: bytes b, b+1, b+2...
func compatKey(b byte) key.PublicKey {
	var k [key.Len]byte
	for i := range k {
		k[i] = b + byte(i)
	}
	return key.PublicKeyFromRaw32(k)
}

func readCompat(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "compat", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestStateFileOfEarlierVersionLoadsUnchanged(t *testing.T) {
	old := readCompat(t, "state.json")
	dir := t.TempDir()
	path := filepath.Join(dir, "state.json")
	if err := os.WriteFile(path, old, 0o600); err != nil {
		t.Fatal(err)
	}
	p, err := loadState(path)
	if err != nil {
		t.Fatal(err)
	}
	a, b, d := compatKey(0x10), compatKey(0x40), compatKey(0xa0)
	switch {
	case p.Self.PublicKey != a:
		t.Errorf("self key %v, want %v", p.Self.PublicKey, a)
	case len(p.Roster) != 2 || p.Roster[0].PublicKey != b || p.Roster[1].PublicKey != compatKey(0x70):
		t.Errorf("roster keys %+v", p.Roster)
	case len(p.Revoked) != 1 || p.Revoked[0].Key != d:
		t.Errorf("revocations %+v", p.Revoked)
	case len(p.Creds.Excludes) != 1 || p.Creds.Excludes[0] != d:
		t.Errorf("excludes %v", p.Creds.Excludes)
	case len(p.Invitations) != 2 || p.Invitations[0].UsedByKey != b || !p.Invitations[1].UsedByKey.IsZero():
		t.Errorf("invitations %+v", p.Invitations)
	}
	again := filepath.Join(dir, "again.json")
	if err := store.WriteJSON(again, p, 0o600); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(again); !bytes.Equal(got, old) {
		t.Errorf("state written back differs from the earlier version's:\n%s\nwant\n%s", got, old)
	}
}

func TestGossipOfEarlierVersionKeepsItsEncoding(t *testing.T) {
	var msgs map[string]json.RawMessage
	if err := json.Unmarshal(readCompat(t, "gossip.json"), &msgs); err != nil {
		t.Fatal(err)
	}
	compact := func(raw json.RawMessage) []byte {
		var b bytes.Buffer
		if err := json.Compact(&b, raw); err != nil {
			t.Fatal(err)
		}
		return b.Bytes()
	}
	// A value of each message type, decoded from the old bytes and encoded
	// again.
	roundTrip := func(name string, v any) any {
		t.Helper()
		old := compact(msgs[name])
		if err := json.Unmarshal(old, v); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		got, err := json.Marshal(v)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !bytes.Equal(got, old) {
			t.Errorf("%s encodes as\n%s\nwant the earlier version's\n%s", name, got, old)
		}
		return v
	}
	if m := roundTrip("catalog", &catalogMsg{}).(*catalogMsg); m.Key != compatKey(0x40) {
		t.Errorf("catalog key %v", m.Key)
	}
	if m := roundTrip("catchup_request", &catchUpRequest{}).(*catchUpRequest); m.Key != compatKey(0x10) {
		t.Errorf("catch-up request key %v", m.Key)
	}
	if m := roundTrip("catchup_reply", &catchUpReply{}).(*catchUpReply); m.Key != compatKey(0x40) {
		t.Errorf("catch-up reply key %v", m.Key)
	}
	if m := roundTrip("rekey", &rekeyMsg{}).(*rekeyMsg); m.Issuer != compatKey(0x10) || len(m.Excludes) != 1 || m.Excludes[0] != compatKey(0xa0) {
		t.Errorf("rekey keys %v %v", m.Issuer, m.Excludes)
	}

	old := compact(msgs["meta"])
	r, err := decodeMeta(&verifier{}, "bravo", netip.MustParseAddrPort("198.51.100.7:7946"), old)
	if err != nil {
		t.Fatal(err)
	}
	if r.PublicKey != compatKey(0x40) {
		t.Errorf("meta key %v", r.PublicKey)
	}
	if got, err := encodeMeta(&r); err != nil || !bytes.Equal(got, old) {
		t.Errorf("node metadata encodes as\n%s (%v)\nwant the earlier version's\n%s", got, err, old)
	}
}

func TestKeyFileOfEarlierVersion(t *testing.T) {
	old := readCompat(t, "private.key")
	path := filepath.Join(t.TempDir(), "private.key")
	if err := os.WriteFile(path, old, 0o600); err != nil {
		t.Fatal(err)
	}
	k, err := LoadOrCreateKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if want := strings.TrimSpace(string(readCompat(t, "private.key.pub"))); k.Public().String() != want {
		t.Errorf("public key %v, the earlier version derived %s", k.Public(), want)
	}
	if got, _ := os.ReadFile(path); !bytes.Equal(got, old) {
		t.Error("loading the key changed its file")
	}
	if k.RevealBase64()+"\n" != string(old) {
		t.Error("the key would be written in another form")
	}

	// A new key file has the earlier version's form (base64 and a newline,
	// as `wg genkey` prints it) and mode 0600.
	path = filepath.Join(t.TempDir(), "new.key")
	k, err = LoadOrCreateKey(path)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	if !regexp.MustCompile(`^[A-Za-z0-9+/]{43}=\n$`).Match(b) {
		t.Errorf("new key file holds %d bytes in another form", len(b))
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("new key file mode: %v %v", fi.Mode(), err)
	}
	if again, err := LoadOrCreateKey(path); err != nil || !again.Equal(k) {
		t.Errorf("the new key does not load back: %v", err)
	}
}

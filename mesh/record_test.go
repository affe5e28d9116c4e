package mesh

import (
	"bytes"
	"net/netip"
	"testing"

	"github.com/booture/booture/key"
)

func TestMetaRoundTrip(t *testing.T) {
	k, _ := key.NewPrivateKey()
	r := Record{
		Name: "diois", PublicKey: k.Public(), Site: 12, SiteClaim: 1700000000000,
		Endpoint: netip.MustParseAddrPort("198.51.100.9:51820"), Version: "1.2.3", Gen: 1700000000001,
	}
	b, err := encodeMeta(&r)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) > 200 {
		t.Errorf("node metadata is %d bytes; keep it small", len(b))
	}
	gossip := netip.MustParseAddrPort("198.51.100.9:7946")
	got, err := decodeMeta(new(verifier), "diois", gossip, b)
	if err != nil {
		t.Fatal(err)
	}
	r.Gossip = gossip
	if got != r {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, r)
	}
	// A newer daemon's extra fields are ignored.
	newer := append(bytes.TrimSuffix(b, []byte("}")), []byte(`,"future":{"x":1}}`)...)
	if _, err := decodeMeta(new(verifier), "diois", gossip, newer); err != nil {
		t.Fatalf("metadata with an unknown field: %v", err)
	}
	for name, bad := range map[string]string{
		"empty": "", "not json": "{", "no key": `{"v":1,"s":1}`, "site 0": `{"v":1,"k":"` + r.PublicKey.String() + `","s":0}`,
		"site 255": `{"v":1,"k":"` + r.PublicKey.String() + `","s":255}`, "version 0": `{"v":0}`,
	} {
		if _, err := decodeMeta(new(verifier), "diois", gossip, []byte(bad)); err == nil {
			t.Errorf("%s: decoded without error", name)
		}
	}
	if _, err := decodeMeta(new(verifier), "Bad_Name", gossip, b); err == nil {
		t.Error("invalid name accepted")
	}
}

package members

import (
	"bytes"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReissue(t *testing.T) {
	r := openTemp(t)
	old, _, err := r.Add(AddRequest{Name: "alice", FullTunnel: true, Endpoint: "198.51.100.1:51820"})
	if err != nil {
		t.Fatal(err)
	}
	if old.Issued.Endpoint != "198.51.100.1:51820" || old.Issued.Site != site3(t).IPv4 {
		t.Fatalf("issued %+v", old.Issued)
	}
	m, priv, err := r.Reissue("alice", "box.example.org:51820")
	if err != nil {
		t.Fatal(err)
	}
	if priv == nil || priv.Public() != m.PublicKey || m.PublicKey == old.PublicKey {
		t.Fatal("no new key pair")
	}
	if m.IPv4 != old.IPv4 || m.IPv6 != old.IPv6 || !m.FullTunnel || m.Created != old.Created {
		t.Fatalf("reissue changed more than the key: %+v", m)
	}
	if m.Issued.Endpoint != "box.example.org:51820" {
		t.Fatalf("issued %+v", m.Issued)
	}
	if _, ok := r.MemberByKey(old.PublicKey); ok {
		t.Fatal("the old key still names the member")
	}
	if got, ok := r.MemberByKey(m.PublicKey); !ok || got.Name != "alice" {
		t.Fatal("the new key does not name the member")
	}
	// On disk, across a reopen.
	path := r.Path()
	r.Close()
	r2 := openAt(t, filepath.Dir(path), site3(t))
	got, err := r2.Get("alice")
	if err != nil || got.PublicKey != m.PublicKey || got.Issued != m.Issued {
		t.Fatalf("after reopen: %+v %v", got, err)
	}
	if _, _, err := r2.Reissue("nobody", "x:1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown member: %v", err)
	}
}

func TestIssueOutdated(t *testing.T) {
	s3 := netip.MustParsePrefix("10.77.3.0/24")
	s9 := netip.MustParsePrefix("10.77.9.0/24")
	i := Issue{Endpoint: "198.51.100.1:51820", Site: s3}
	for _, tc := range []struct {
		ep   string
		site netip.Prefix
		want bool
	}{
		{"198.51.100.1:51820", s3, false},
		{"203.0.113.7:51820", s3, true},
		{"198.51.100.1:51820", s9, true},
	} {
		if got := i.Outdated(tc.ep, tc.site); got != tc.want {
			t.Errorf("Outdated(%s, %s) = %v", tc.ep, tc.site, got)
		}
	}
	if (Issue{}).Outdated("x:1", s3) {
		t.Error("an unknown issue is reported outdated")
	}
}

// TestOpenPreviousFormat: a members file of the previous release (version
// 1, kept in testdata) is read as it is, its members' issue unknown, and
// rewritten in the current version at the first change.
func TestOpenPreviousFormat(t *testing.T) {
	v1, err := os.ReadFile("testdata/v1/members.json")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "members.json"), v1, 0o600); err != nil {
		t.Fatal(err)
	}
	r := openAt(t, dir, site3(t))
	ms := r.List()
	if len(ms) != 2 || ms[0].Name != "alice" || ms[1].Name != "bob" || !ms[1].Disabled || !ms[1].FullTunnel || ms[0].Issued != (Issue{}) {
		t.Fatalf("members %+v", ms)
	}
	if after, _ := os.ReadFile(filepath.Join(dir, "members.json")); !bytes.Equal(after, v1) {
		t.Fatal("opening rewrote the file without a change")
	}
	if _, _, err := r.Add(AddRequest{Name: "carol", Endpoint: "198.51.100.1:51820"}); err != nil {
		t.Fatal(err)
	}
	after, _ := os.ReadFile(filepath.Join(dir, "members.json"))
	if !strings.Contains(string(after), `"version": 2`) || !strings.Contains(string(after), `"issued_site": "10.77.3.0/24"`) {
		t.Fatalf("not rewritten in version 2:\n%s", after)
	}
}

func TestSearchDomainInConfig(t *testing.T) {
	r := openTemp(t)
	m, priv, err := r.Add(AddRequest{Name: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	srv := Server{Name: "diois", PublicKey: fixedKey("srv").Public(), Endpoint: "box.example.org:51820", Site: site3(t),
		MeshIPv4: netip.MustParsePrefix("10.77.0.0/16"), MeshIPv6: netip.MustParsePrefix("fd12:3456:789a::/48"), Domain: "booture.internal"}
	text, err := Render(ConfigFor(m, priv, srv))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(text, "DNS = 10.77.3.1, fd12:3456:789a:3::1, booture.internal\n") {
		t.Fatalf("no search domain:\n%s", text)
	}
	srv.Domain = "not a name"
	if _, err := Render(ConfigFor(m, priv, srv)); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("bad domain: %v", err)
	}
}

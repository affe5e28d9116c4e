package daemon

import (
	"context"
	"strings"
	"testing"

	"github.com/booture/booture/internal/api"
	"github.com/booture/booture/internal/config"
)

// After the booture's endpoint changes, status names the members whose
// configuration is outdated; reissue gives a member a new key pair (the
// old peer is gone before the answer) and a complete configuration for the
// current endpoint, with the mesh domain as a search domain.
func TestReissueAfterEndpointChange(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	a := startDaemon(t, "a", dir)
	added, err := a.client.AddMember(ctx, api.MemberAddRequest{Name: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.client.AddMember(ctx, api.MemberAddRequest{Name: "bob"}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(added.Config, "DNS = 10.77.1.1, "+a.status(t).MeshIPv6+", booture.internal\n") {
		t.Fatalf("no search domain:\n%s", added.Config)
	}
	st := a.status(t)
	if st.MemberEndpoint != "a.example.org:51820" || len(st.MembersOutdated) != 0 {
		t.Fatalf("status: %q %v", st.MemberEndpoint, st.MembersOutdated)
	}
	a.stop()

	a2 := startDaemon(t, "a", dir, func(c *config.Config) { c.Advertise = config.Advertised{Host: "new.example.org", Port: 51999} })
	st = a2.status(t)
	if st.MemberEndpoint != "new.example.org:51999" || len(st.MembersOutdated) != 2 || st.MembersOutdated[0].Name != "alice" ||
		st.MembersOutdated[0].IssuedEndpoint != "a.example.org:51820" {
		t.Fatalf("status after the endpoint changed: %q %+v", st.MemberEndpoint, st.MembersOutdated)
	}
	oldKey := added.Member.PublicKey
	re, err := a2.client.ReissueMember(ctx, "alice", true)
	if err != nil {
		t.Fatal(err)
	}
	if re.Member.PublicKey == oldKey || re.Member.IPv4 != added.Member.IPv4 || re.QR == "" {
		t.Fatalf("reissued %+v", re.Member)
	}
	for _, want := range []string{"PrivateKey = ", "Endpoint = new.example.org:51999", "Address = " + added.Member.IPv4 + "/32"} {
		if !strings.Contains(re.Config, want) {
			t.Fatalf("config lacks %q:\n%s", want, re.Config)
		}
	}
	if strings.Contains(re.Config, "# PrivateKey") {
		t.Fatal("placeholder in a reissued configuration")
	}
	peers := a2.net.Fake.String()
	if strings.Contains(peers, oldKey) || !strings.Contains(peers, re.Member.PublicKey) {
		t.Fatalf("WireGuard after reissue:\n%s", peers)
	}
	st = a2.status(t)
	if len(st.MembersOutdated) != 1 || st.MembersOutdated[0].Name != "bob" {
		t.Fatalf("outdated after reissue: %+v", st.MembersOutdated)
	}
	if _, err := a2.client.ReissueMember(ctx, "nobody", false); err == nil || !strings.Contains(err.Error(), "no such member") {
		t.Fatalf("unknown member: %v", err)
	}
}

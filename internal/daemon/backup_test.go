package daemon

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/booture/booture/internal/api"
	"github.com/booture/booture/internal/backup"
	"github.com/booture/booture/internal/config"
	"github.com/booture/booture/internal/waitfor"
	"github.com/booture/booture/mesh"
)

// The backup's file names are the daemon's.
func TestBackupKnowsTheStateFiles(t *testing.T) {
	if backup.KeyFile != KeyFile || backup.MeshFile != mesh.StateFile {
		t.Fatal("internal/backup names the state files differently from the daemon")
	}
	if !backup.Included(MembersFile) || !backup.Included(EndpointsFile) || !backup.Included("plugins/pins.json") {
		t.Fatal("a state file is left out of backups")
	}
}

// A backup taken from a running booture, restored into a fresh state
// directory (a new machine), brings back the same booture: key, mesh,
// site, members with their keys and addresses, config file; the other
// booture of the mesh takes it back.
func TestBackupRestoreSameBooture(t *testing.T) {
	ctx := context.Background()
	a := startDaemon(t, "a", "")
	cfgFile := filepath.Join(t.TempDir(), "booture.toml")
	if err := os.WriteFile(cfgFile, []byte("name = \"b\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	b := startDaemon(t, "b", "", func(c *config.Config) { c.File = cfgFile })
	b.join(t, a)
	alice, err := b.client.AddMember(ctx, api.MemberAddRequest{Name: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.client.AddMember(ctx, api.MemberAddRequest{Name: "bob", FullTunnel: true}); err != nil {
		t.Fatal(err)
	}
	before := b.status(t)
	membersBefore, _ := b.client.Members(ctx)
	aliceConf, err := b.client.MemberConfig(ctx, "alice", false)
	if err != nil {
		t.Fatal(err)
	}

	snap, err := b.client.Backup(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if snap.PublicKey != before.PublicKey || snap.Members != 2 || snap.Site != before.Site || string(snap.Config) != "name = \"b\"\n" {
		t.Fatalf("snapshot %+v", snap)
	}
	for name := range snap.Files {
		if !backup.Included(name) {
			t.Fatalf("snapshot has %s", name)
		}
	}
	data, err := backup.Encrypt(backup.FromSnapshot(snap), "a long passphrase", 10)
	if err != nil {
		t.Fatal(err)
	}
	b.stop()

	bundle, err := backup.Decrypt(data, "a long passphrase")
	if err != nil {
		t.Fatal(err)
	}
	newDir := t.TempDir()
	if _, err := backup.Restore(bundle, filepath.Join(newDir, "state"), backup.RestoreOptions{}); err != nil {
		t.Fatal(err)
	}
	b2 := startDaemon(t, "b", newDir)
	after := b2.status(t)
	if after.PublicKey != before.PublicKey || after.MeshID != before.MeshID || after.Site != before.Site || after.MeshIPv6 != before.MeshIPv6 {
		t.Fatalf("restored booture differs:\nbefore %+v\nafter  %+v", before, after)
	}
	membersAfter, _ := b2.client.Members(ctx)
	if len(membersAfter) != len(membersBefore) {
		t.Fatalf("members %v, want %v", membersAfter, membersBefore)
	}
	for i, m := range membersAfter {
		w := membersBefore[i]
		if m.Name != w.Name || m.PublicKey != w.PublicKey || m.IPv4 != w.IPv4 || m.IPv6 != w.IPv6 || m.FullTunnel != w.FullTunnel {
			t.Fatalf("member %s: %+v, want %+v", w.Name, m, w)
		}
	}
	conf, err := b2.client.MemberConfig(ctx, "alice", false)
	if err != nil || conf.Config != aliceConf.Config {
		t.Fatalf("alice's configuration changed:\n%s\nwas\n%s (%v)", conf.Config, aliceConf.Config, err)
	}
	_ = alice
	waitfor.Cond(t, 20*time.Second, "the restored booture back in the mesh", func() bool { return peersIn(a, b2) && peersIn(b2, a) })
}

package main

import (
	stdbytes "bytes"
	"crypto/rand"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/booture/booture/internal/backup"
)

func writeBackup(t *testing.T, dir, pass string) (string, *backup.Bundle) {
	t.Helper()
	priv := make([]byte, 32)
	rand.Read(priv)
	key := []byte(base64.StdEncoding.EncodeToString(priv) + "\n")
	pub, _ := backup.PublicKeyOf(key)
	b := &backup.Bundle{
		Name: "diois", PublicKey: pub, Site: 2, Members: 0,
		Files: map[string][]byte{
			backup.KeyFile:  key,
			backup.MeshFile: []byte(`{"self":{"key":"` + pub + `"}}`),
		},
		Config: []byte("name = \"diois\"\n"), ConfigPath: filepath.Join(dir, "etc", "booture.toml"),
	}
	data, err := backup.Encrypt(b, pass, 10)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "diois.booture")
	if err := os.WriteFile(file, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return file, b
}

func run(t *testing.T, args ...string) (string, error) {
	var out stdbytes.Buffer
	root := newRoot(&out)
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), err
}

// TestRestoreCommand: bad inputs give one line and change nothing; a good
// one restores the state and the config file; another booture's state is
// refused unless --force.
func TestRestoreCommand(t *testing.T) {
	dir := t.TempDir()
	passFile := filepath.Join(dir, "pass")
	os.WriteFile(passFile, []byte("a good passphrase\n"), 0o600)
	wrongFile := filepath.Join(dir, "wrong")
	os.WriteFile(wrongFile, []byte("another passphrase\n"), 0o600)
	file, b := writeBackup(t, dir, "a good passphrase")
	state := filepath.Join(dir, "state")

	truncated := filepath.Join(dir, "cut.booture")
	data, _ := os.ReadFile(file)
	os.WriteFile(truncated, data[:len(data)/2], 0o600)
	foreign := filepath.Join(dir, "foreign")
	os.WriteFile(foreign, []byte("[Interface]\n"), 0o600)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"restore", file, "--state-dir", state, "--passphrase-file", wrongFile}, "wrong passphrase"},
		{[]string{"restore", truncated, "--state-dir", state, "--passphrase-file", passFile}, "truncated or damaged"},
		{[]string{"restore", foreign, "--state-dir", state, "--passphrase-file", passFile}, "not a booture backup"},
		{[]string{"restore", file, "--state-dir", state, "--passphrase-file", filepath.Join(dir, "none")}, "passphrase file"},
	} {
		_, err := run(t, tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Fatalf("%v: got %v, want %q", tc.args, err, tc.want)
		}
		if _, serr := os.Stat(state); serr == nil {
			t.Fatalf("%v: the state directory was created", tc.args)
		}
	}

	out, err := run(t, "restore", file, "--state-dir", state, "--passphrase-file", passFile)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "Restored booture diois") || !strings.Contains(out, "Config file written") {
		t.Fatalf("output:\n%s", out)
	}
	got, _ := os.ReadFile(filepath.Join(state, backup.KeyFile))
	if !stdbytes.Equal(got, b.Files[backup.KeyFile]) {
		t.Fatal("key not restored")
	}
	if conf, _ := os.ReadFile(b.ConfigPath); !stdbytes.Equal(conf, b.Config) {
		t.Fatal("config not restored")
	}

	other, _ := writeBackup(t, t.TempDir(), "a good passphrase")
	if _, err := run(t, "restore", other, "--state-dir", state, "--passphrase-file", passFile); err == nil || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("restore over another booture: %v", err)
	}
	if got, _ := os.ReadFile(filepath.Join(state, backup.KeyFile)); !stdbytes.Equal(got, b.Files[backup.KeyFile]) {
		t.Fatal("a refused restore changed the key")
	}
	if _, err := run(t, "restore", other, "--state-dir", state, "--passphrase-file", passFile, "--force"); err != nil {
		t.Fatal(err)
	}
}

func TestBackupNeedsAPassphrase(t *testing.T) {
	dir := t.TempDir()
	short := filepath.Join(dir, "pass")
	os.WriteFile(short, []byte("short\n"), 0o600)
	_, err := run(t, "backup", filepath.Join(dir, "x"), "--passphrase-file", short, "--socket", filepath.Join(dir, "none.sock"))
	if err == nil || !strings.Contains(err.Error(), "at least") {
		t.Fatalf("got %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "x")); err == nil {
		t.Fatal("backup file written")
	}
}

// An empty --pubkey is refused before the daemon is asked (it used to be
// taken as no --pubkey: a key pair was made).
func TestMemberAddEmptyPubkey(t *testing.T) {
	for _, v := range []string{"", "  "} {
		_, err := run(t, "member", "add", "alice", "--pubkey", v, "--socket", filepath.Join(t.TempDir(), "none.sock"))
		if err == nil || !strings.Contains(err.Error(), "--pubkey is empty") {
			t.Fatalf("--pubkey %q: %v", v, err)
		}
	}
}

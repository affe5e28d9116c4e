package backup

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"filippo.io/age"
	"golang.org/x/sys/unix"
)

// testWork keeps scrypt cheap in tests.
const testWork = 10

const pass = "correct horse battery"

func newKey(t testing.TB) ([]byte, string) {
	t.Helper()
	priv := make([]byte, 32)
	rand.Read(priv)
	text := []byte(base64.StdEncoding.EncodeToString(priv) + "\n")
	pub, err := PublicKeyOf(text)
	if err != nil {
		t.Fatal(err)
	}
	return text, pub
}

func testBundle(t testing.TB) *Bundle {
	t.Helper()
	key, pub := newKey(t)
	return &Bundle{
		Format: Format, Version: FormatVersion,
		Created: time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC), DaemonVersion: "test",
		Name: "diois", PublicKey: pub, Site: 3, Members: 1,
		Files: map[string][]byte{
			KeyFile:                 key,
			MeshFile:                []byte(`{"version":1,"self":{"key":"` + pub + `"}}`),
			"members.json":          []byte(`{"version":1,"members":[]}`),
			"member-endpoints.json": []byte(`{}`),
			"plugins/pins.json":     []byte(`{"version":1}`),
		},
		Config: []byte("name = \"diois\"\n"), ConfigPath: "/etc/booture/booture.toml",
	}
}

func encrypt(t testing.TB, b *Bundle) []byte {
	t.Helper()
	data, err := Encrypt(b, pass, testWork)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestRoundTrip(t *testing.T) {
	b := testBundle(t)
	data := encrypt(t, b)
	if bytes.Contains(data, b.Files[KeyFile][:20]) || bytes.Contains(data, []byte("diois")) {
		t.Fatal("the backup file holds plain text")
	}
	got, err := Decrypt(data, pass)
	if err != nil {
		t.Fatal(err)
	}
	if got.PublicKey != b.PublicKey || got.Name != "diois" || !maps.EqualFunc(got.Files, b.Files, bytes.Equal) ||
		!bytes.Equal(got.Config, b.Config) || got.Version != FormatVersion || !got.Created.Equal(b.Created) {
		t.Fatalf("round trip changed the bundle: %+v", got)
	}
}

func TestWeakPassphraseRefused(t *testing.T) {
	if _, err := Encrypt(testBundle(t), "short", testWork); err == nil {
		t.Fatal("a 5-character passphrase was accepted")
	}
}

// TestBadFiles: every bad input gives its own one-line error.
func TestBadFiles(t *testing.T) {
	good := encrypt(t, testBundle(t))
	var x25519 bytes.Buffer
	id, _ := age.GenerateX25519Identity()
	w, _ := age.Encrypt(&x25519, id.Recipient())
	w.Write([]byte("hello"))
	w.Close()
	foreignScrypt := func(plain string) []byte {
		var buf bytes.Buffer
		r, _ := age.NewScryptRecipient(pass)
		r.SetWorkFactor(testWork)
		w, _ := age.Encrypt(&buf, r)
		w.Write([]byte(plain))
		w.Close()
		return buf.Bytes()
	}
	for _, tc := range []struct {
		name string
		data []byte
		pass string
		want error
	}{
		{"wrong passphrase", good, "not the passphrase", ErrWrongPassphrase},
		{"empty file", nil, pass, ErrDamaged},
		{"cut in the magic", good[:10], pass, ErrDamaged},
		{"cut in the header", good[:40], pass, ErrDamaged},
		{"cut in the payload", good[:len(good)-20], pass, ErrDamaged},
		{"last byte missing", good[:len(good)-1], pass, ErrDamaged},
		{"bit flipped", flip(good, len(good)-30), pass, ErrDamaged},
		{"text file", []byte("[Interface]\nPrivateKey = x\n"), pass, ErrNotBackup},
		{"random bytes", bytes.Repeat([]byte{0xa5}, 500), pass, ErrNotBackup},
		{"age file for a key", x25519.Bytes(), pass, ErrNotBackup},
		{"age file of something else", foreignScrypt(`{"hello":1}`), pass, ErrNotBackup},
		{"age file not JSON", foreignScrypt("hello"), pass, ErrNotBackup},
		{"newer format", foreignScrypt(`{"format":"booture-backup","version":99}`), pass, ErrNewer},
		{"key and mesh of two bootures", foreignScrypt(mismatched(t)), pass, ErrDamaged},
		{"path outside", foreignScrypt(withFile(t, "../etc/passwd")), pass, ErrDamaged},
		{"lock file", foreignScrypt(withFile(t, "members.json.lock")), pass, ErrDamaged},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Decrypt(tc.data, tc.pass)
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error on several lines: %q", err)
			}
		})
	}
}

func flip(b []byte, i int) []byte {
	c := bytes.Clone(b)
	c[i] ^= 1
	return c
}

func mismatched(t *testing.T) string {
	b := testBundle(t)
	b.Format, b.Version = Format, FormatVersion
	_, other := newKey(t)
	b.Files[MeshFile] = []byte(`{"self":{"key":"` + other + `"}}`)
	return string(must(t, b))
}

func withFile(t *testing.T, name string) string {
	b := testBundle(t)
	b.Format, b.Version = Format, FormatVersion
	b.Files[name] = []byte("x")
	return string(must(t, b))
}

func must(t *testing.T, b *Bundle) []byte {
	data, err := json.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestRestoreIntoEmptyDir(t *testing.T) {
	b := testBundle(t)
	dir := filepath.Join(t.TempDir(), "state")
	if _, err := Restore(b, dir, RestoreOptions{}); err != nil {
		t.Fatal(err)
	}
	for name, want := range b.Files {
		p := filepath.Join(dir, name)
		got, err := os.ReadFile(p)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("%s: %q, %v", name, got, err)
		}
		if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s: mode %v", name, fi.Mode().Perm())
		}
	}
	if fi, _ := os.Stat(dir); fi.Mode().Perm() != 0o700 {
		t.Fatalf("state dir mode %v", fi.Mode().Perm())
	}
	// Again, onto itself (same booture): allowed.
	if _, err := Restore(b, dir, RestoreOptions{}); err != nil {
		t.Fatal(err)
	}
}

// TestRestoreRefusesOtherIdentity: a directory that holds another booture
// is left untouched unless forced; forced, the other's extra files go.
func TestRestoreRefusesOtherIdentity(t *testing.T) {
	dir := t.TempDir()
	other := testBundle(t)
	other.Files["extra.json"] = []byte(`{}`)
	if _, err := Restore(other, dir, RestoreOptions{}); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, dir)
	b := testBundle(t)
	_, err := Restore(b, dir, RestoreOptions{})
	if !errors.Is(err, ErrOtherIdentity) || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("got %v", err)
	}
	if after := snapshot(t, dir); !maps.EqualFunc(before, after, bytes.Equal) {
		t.Fatal("a refused restore changed the state directory")
	}
	res, err := Restore(b, dir, RestoreOptions{Force: true})
	if err != nil {
		t.Fatal(err)
	}
	if res.Replaced != other.PublicKey || len(res.Removed) != 1 || res.Removed[0] != "extra.json" {
		t.Fatalf("result %+v", res)
	}
	if got := snapshot(t, dir); !maps.EqualFunc(got, b.Files, bytes.Equal) {
		t.Fatalf("forced restore left %v", got)
	}
}

func TestRestoreRefusedWhileDaemonRuns(t *testing.T) {
	dir := t.TempDir()
	f, err := os.OpenFile(filepath.Join(dir, daemonLock), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	if _, err := Restore(testBundle(t), dir, RestoreOptions{Force: true}); !errors.Is(err, ErrRunning) {
		t.Fatalf("got %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, KeyFile)); err == nil {
		t.Fatal("restore wrote while the daemon held the directory")
	}
}

func snapshot(t *testing.T, dir string) map[string][]byte {
	m, err := ReadStateFiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestIncluded(t *testing.T) {
	for name, want := range map[string]bool{
		"private.key": true, "mesh.json": true, "plugins/pins.json": true,
		"members.json.lock": false, ".mesh.json.tmp-123": false, "plugins/bin/nextcloud": false,
		"plugins/.x": false,
	} {
		if Included(name) != want {
			t.Errorf("Included(%q) = %v", name, !want)
		}
	}
}

package members

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/booture/booture/key"
)

func TestAddGeneratesKeyPair(t *testing.T) {
	r := openTemp(t)
	m, priv, err := r.Add(AddRequest{Name: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	if priv == nil {
		t.Fatal("no private key returned")
	}
	if priv.Public() != m.PublicKey {
		t.Errorf("private key does not match member's public key")
	}
	want := Member{
		Name:      "alice",
		PublicKey: m.PublicKey,
		IPv4:      netip.MustParseAddr("10.77.3.2"),
		IPv6:      netip.MustParseAddr("fd12:3456:789a:3::2"),
		Created:   time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC),
	}
	if m != want {
		t.Errorf("Add = %+v, want %+v", m, want)
	}
	if m.Host() != 2 || !m.Enabled() {
		t.Errorf("Host = %d, Enabled = %v", m.Host(), m.Enabled())
	}

	data, err := os.ReadFile(r.Path())
	if err != nil {
		t.Fatal(err)
	}
	raw := priv.RevealRaw32()
	if bytes.Contains(data, []byte(priv.RevealBase64())) || bytes.Contains(data, raw[:]) {
		t.Fatal("private key found in the members file")
	}
	if !bytes.Contains(data, []byte(m.PublicKey.String())) {
		t.Error("public key not in the members file")
	}
	for _, p := range []string{r.Path(), r.Path() + ".lock"} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", p, fi.Mode().Perm())
		}
	}
	// The registry keeps no private key: no field of its state can hold
	// one, and the reloaded state equals the in-memory one.
	r2state, err := decodeState(data)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(r2state, r.cur) {
		t.Error("in-memory state differs from the file")
	}
}

func TestAddWithOwnKey(t *testing.T) {
	r := openTemp(t)
	m, priv, err := r.Add(AddRequest{Name: "bob", PublicKey: " " + pubOf("bob") + "\n", FullTunnel: true})
	if err != nil {
		t.Fatal(err)
	}
	if priv != nil {
		t.Error("private key returned for a member with its own key")
	}
	if m.PublicKey.String() != pubOf("bob") || !m.FullTunnel {
		t.Errorf("got %+v", m)
	}
	got, err := r.Get("bob")
	if err != nil || got != m {
		t.Errorf("Get = %+v, %v; want %+v", got, err, m)
	}
	if byKey, ok := r.MemberByKey(m.PublicKey); !ok || byKey != m {
		t.Errorf("MemberByKey = %+v, %v", byKey, ok)
	}
	if _, ok := r.MemberByKey(fixedKey("nobody").Public()); ok {
		t.Error("MemberByKey found an unknown key")
	}
}

func TestAddValidation(t *testing.T) {
	r := openTemp(t, WithBootureKeys(func(k key.PublicKey) (string, bool) {
		if k.String() == pubOf("crest") {
			return "crest", true
		}
		return "", false
	}))
	mustAdd(t, r, "alice", "alice")

	tests := []struct {
		name string
		req  AddRequest
		is   error
		msg  string
	}{
		{"empty name", AddRequest{Name: ""}, ErrInvalidName, "adding member: invalid name: empty"},
		{"upper case", AddRequest{Name: "Bob"}, ErrInvalidName, `adding member: invalid name "Bob": only a-z, 0-9 and '-' are allowed`},
		{"leading hyphen", AddRequest{Name: "-bob"}, ErrInvalidName, "must not start or end with '-'"},
		{"too long", AddRequest{Name: strings.Repeat("a", 64)}, ErrInvalidName, "longer than 63"},
		{"newline", AddRequest{Name: "bob\nx"}, ErrInvalidName, `"bob\nx"`},
		{"duplicate name", AddRequest{Name: "alice"}, ErrExists, `adding member "alice": a member with this name already exists`},
		{"garbage key", AddRequest{Name: "bob", PublicKey: "hello"}, ErrInvalidKey, `adding member "bob": public key "hello": not a base64 WireGuard public key (want 44 characters, as printed by wg pubkey)`},
		{"short key", AddRequest{Name: "bob", PublicKey: pubOf("x")[:43]}, ErrInvalidKey, "not a base64 WireGuard public key"},
		{"not base64", AddRequest{Name: "bob", PublicKey: strings.Repeat("!", 43) + "="}, ErrInvalidKey, "not a base64 WireGuard public key"},
		{"line break inside", AddRequest{Name: "bob", PublicKey: pubOf("x")[:20] + "\n" + pubOf("x")[20:]}, ErrInvalidKey, "not a base64"},
		{"zero key", AddRequest{Name: "bob", PublicKey: key.PublicKey{}.String()}, ErrInvalidKey, "all zeros"},
		{"key of a member", AddRequest{Name: "bob", PublicKey: pubOf("alice")}, ErrKeyInUse, `adding member "bob": public key already in use by member "alice"`},
		{"key of a booture", AddRequest{Name: "bob", PublicKey: pubOf("crest")}, ErrKeyInUse, `adding member "bob": public key already in use by booture "crest"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, priv, err := r.Add(tt.req)
			oneLine(t, err)
			if !errors.Is(err, tt.is) {
				t.Errorf("error %q does not wrap %q", err, tt.is)
			}
			if !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("error %q does not contain %q", err, tt.msg)
			}
			if priv != nil {
				t.Error("private key returned with an error")
			}
		})
	}
	if got := nameList(r.List()); got != "alice" {
		t.Errorf("members after failed adds = %q, want alice", got)
	}
}

func TestAllocation(t *testing.T) {
	r := openTemp(t)
	for _, n := range []string{"a", "b", "c", "d"} {
		mustAdd(t, r, n, "")
	}
	host := func(name string) int {
		m, err := r.Get(name)
		if err != nil {
			t.Fatal(err)
		}
		return m.Host()
	}
	if got := []int{host("a"), host("b"), host("c"), host("d")}; !reflect.DeepEqual(got, []int{2, 3, 4, 5}) {
		t.Fatalf("hosts = %v, want [2 3 4 5]", got)
	}
	// Disable and enable keep the addresses.
	before, _ := r.Get("b")
	d, err := r.Disable("b")
	if err != nil || !d.Disabled || d.IPv4 != before.IPv4 || d.IPv6 != before.IPv6 {
		t.Fatalf("Disable = %+v, %v", d, err)
	}
	if again, err := r.Disable("b"); err != nil || !again.Disabled {
		t.Fatalf("second Disable = %+v, %v", again, err)
	}
	e, err := r.Enable("b")
	if err != nil || e.Disabled || e != before {
		t.Fatalf("Enable = %+v, %v; want %+v", e, err, before)
	}
	// A removed member's host is reused, the lowest first.
	if _, err := r.Remove("c"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Remove("b"); err != nil {
		t.Fatal(err)
	}
	if m := mustAdd(t, r, "e", ""); m.Host() != 3 || m.IPv4.String() != "10.77.3.3" || m.IPv6.String() != "fd12:3456:789a:3::3" {
		t.Errorf("e got %v %v, want host 3", m.IPv4, m.IPv6)
	}
	if m := mustAdd(t, r, "f", ""); m.Host() != 4 {
		t.Errorf("f got host %d, want 4", m.Host())
	}
	if m := mustAdd(t, r, "g", ""); m.Host() != 6 {
		t.Errorf("g got host %d, want 6", m.Host())
	}
	if got := nameList(r.List()); got != "a,d,e,f,g" {
		t.Errorf("List = %s", got)
	}
}

func TestSiteFull(t *testing.T) {
	r := openTemp(t)
	r.writeFile = fastWrite
	var wg sync.WaitGroup
	errs := make(chan error, MaxMembers)
	for i := range MaxMembers {
		wg.Go(func() {
			if _, _, err := r.Add(AddRequest{Name: fmt.Sprintf("m%03d", i)}); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if r.Len() != 253 {
		t.Fatalf("Len = %d", r.Len())
	}
	_, _, err := r.Add(AddRequest{Name: "one-too-many"})
	oneLine(t, err)
	if !errors.Is(err, ErrSiteFull) {
		t.Fatalf("err = %v, want ErrSiteFull", err)
	}
	if want := `adding member "one-too-many": site is full: no address left for a new member (253 members)`; err.Error() != want {
		t.Errorf("err = %q\nwant  %q", err, want)
	}
	// Every host 2..254 is used exactly once.
	seen := map[int]bool{}
	for _, m := range r.List() {
		seen[m.Host()] = true
	}
	for n := FirstHost; n <= LastHost; n++ {
		if !seen[n] {
			t.Errorf("host %d unused", n)
		}
	}
	// Removing one frees exactly that host.
	gone, err := r.Remove("m100")
	if err != nil {
		t.Fatal(err)
	}
	if m := mustAdd(t, r, "late", ""); m.Host() != gone.Host() {
		t.Errorf("late got host %d, want %d", m.Host(), gone.Host())
	}
}

func TestNotFound(t *testing.T) {
	r := openTemp(t)
	for name, f := range map[string]func() error{
		`member "zoe": no such member`:            func() error { _, err := r.Get("zoe"); return err },
		`disabling member "zoe": no such member`:  func() error { _, err := r.Disable("zoe"); return err },
		`enabling member "zoe": no such member`:   func() error { _, err := r.Enable("zoe"); return err },
		`removing member "zoe": no such member`:   func() error { _, err := r.Remove("zoe"); return err },
		`member "a\nb": no such member`:           func() error { _, err := r.Get("a\nb"); return err },
		`removing member "x\x00": no such member`: func() error { _, err := r.Remove("x\x00"); return err },
	} {
		err := f()
		oneLine(t, err)
		if !errors.Is(err, ErrNotFound) || err.Error() != name {
			t.Errorf("err = %q, want %q wrapping ErrNotFound", err, name)
		}
	}
	if _, err := os.Stat(r.Path()); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("failed changes wrote the file: %v", err)
	}
}

func TestPersistence(t *testing.T) {
	dir := t.TempDir()
	r := openAt(t, dir, site3(t))
	mustAdd(t, r, "alice", "")
	mustAdd(t, r, "bob", "bob")
	mustAdd(t, r, "carol", "")
	if _, _, err := r.Add(AddRequest{Name: "dave", FullTunnel: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Disable("bob"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Remove("carol"); err != nil {
		t.Fatal(err)
	}
	want := r.List()
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	r2 := openAt(t, dir, site3(t))
	if got := r2.List(); !reflect.DeepEqual(got, want) {
		t.Errorf("after reopen:\n got %+v\nwant %+v", got, want)
	}
	if _, moved := r2.PreviousSite(); moved {
		t.Error("PreviousSite reports a move")
	}
}

func TestClosed(t *testing.T) {
	r := openTemp(t)
	mustAdd(t, r, "alice", "")
	r.Close()
	_, _, err := r.Add(AddRequest{Name: "bob"})
	if !errors.Is(err, ErrClosed) {
		t.Errorf("Add after Close: %v", err)
	}
	if _, err := r.Remove("alice"); !errors.Is(err, ErrClosed) {
		t.Errorf("Remove after Close: %v", err)
	}
	if got := nameList(r.List()); got != "alice" {
		t.Errorf("List after Close = %q", got)
	}
}

func TestOpenLocked(t *testing.T) {
	dir := t.TempDir()
	r := openAt(t, dir, site3(t))
	_, err := Open(filepath.Join(dir, "members.json"), site3(t))
	oneLine(t, err)
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open: %v, want ErrLocked", err)
	}
	r.Close()
	openAt(t, dir, site3(t))
}

func TestOpenErrors(t *testing.T) {
	if _, err := Open(filepath.Join(t.TempDir(), "members.json"), Site{}); !errors.Is(err, ErrInvalidSite) {
		t.Errorf("zero site: %v", err)
	}
	_, err := Open(filepath.Join(t.TempDir(), "missing-dir", "members.json"), site3(t))
	oneLine(t, err)
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing dir: %v", err)
	}
}

func TestParseSite(t *testing.T) {
	for _, tt := range []struct{ v4, v6, msg string }{
		{"10.77.3.0/24", "fd12:3456:789a:3::/64", ""},
		{"10.77.3.0/16", "fd12:3456:789a:3::/64", "not a /24"},
		{"10.77.3.1/24", "fd12:3456:789a:3::/64", "host bits set (want 10.77.3.0/24)"},
		{"fd00::/24", "fd12:3456:789a:3::/64", "not an IPv4 /24"},
		{"10.77.3.0/24", "fd12:3456:789a:3::/48", "not a /64"},
		{"10.77.3.0/24", "fd12:3456:789a:3::1/64", "host bits set"},
		{"10.77.3.0/24", "::ffff:10.0.0.0/64", "not an IPv6 /64"},
		{"10.77.3.0/24", "10.77.3.0/24", "not an IPv6 /64"},
		{"10.77.3.0", "fd12:3456:789a:3::/64", "invalid site"},
	} {
		s, err := ParseSite(tt.v4, tt.v6)
		if tt.msg == "" {
			if err != nil {
				t.Errorf("ParseSite(%s, %s): %v", tt.v4, tt.v6, err)
			}
			if a4, a6 := s.Booture(); a4.String() != "10.77.3.1" || a6.String() != "fd12:3456:789a:3::1" {
				t.Errorf("Booture = %v %v", a4, a6)
			}
			continue
		}
		if !errors.Is(err, ErrInvalidSite) || !strings.Contains(err.Error(), tt.msg) {
			t.Errorf("ParseSite(%s, %s) = %v, want %q", tt.v4, tt.v6, err, tt.msg)
		}
	}
}

func TestSetSite(t *testing.T) {
	dir := t.TempDir()
	r := openAt(t, dir, site3(t))
	mustAdd(t, r, "alice", "")
	mustAdd(t, r, "bob", "")
	mustAdd(t, r, "carol", "")
	r.Remove("bob")
	r.Disable("carol")
	before := r.List()
	if err := r.SetSite(site9(t)); err != nil {
		t.Fatal(err)
	}
	if r.Site() != site9(t) {
		t.Errorf("Site = %v", r.Site())
	}
	after := r.List()
	for i, m := range after {
		b := before[i]
		if m.Host() != b.Host() || m.Name != b.Name || m.PublicKey != b.PublicKey || m.Disabled != b.Disabled {
			t.Errorf("member %s changed beyond its site: %+v -> %+v", m.Name, b, m)
		}
		if want4, want6 := site9(t).Addrs(b.Host()); m.IPv4 != want4 || m.IPv6 != want6 {
			t.Errorf("%s: %v %v, want %v %v", m.Name, m.IPv4, m.IPv6, want4, want6)
		}
	}
	if err := r.SetSite(Site{}); !errors.Is(err, ErrInvalidSite) {
		t.Errorf("SetSite(zero) = %v", err)
	}
	r.Close()
	r2 := openAt(t, dir, site9(t))
	if !reflect.DeepEqual(r2.List(), after) {
		t.Errorf("moved members not persisted")
	}
}

func TestOpenMovesToNewSite(t *testing.T) {
	dir := t.TempDir()
	r := openAt(t, dir, site3(t))
	mustAdd(t, r, "alice", "")
	mustAdd(t, r, "bob", "")
	r.Close()

	r2 := openAt(t, dir, site9(t))
	prev, moved := r2.PreviousSite()
	if !moved || prev != site3(t) {
		t.Errorf("PreviousSite = %v, %v", prev, moved)
	}
	for _, m := range r2.List() {
		if !site9(t).IPv4.Contains(m.IPv4) || !site9(t).IPv6.Contains(m.IPv6) {
			t.Errorf("%s not moved: %v %v", m.Name, m.IPv4, m.IPv6)
		}
	}
	r2.Close()
	// The move was saved: a third open sees no move.
	r3 := openAt(t, dir, site9(t))
	if _, moved := r3.PreviousSite(); moved {
		t.Error("move not saved at Open")
	}
	if b, _ := r3.Get("bob"); b.IPv4.String() != "10.77.9.3" || b.IPv6.String() != "fd12:3456:789a:9::3" {
		t.Errorf("bob at %v %v", b.IPv4, b.IPv6)
	}
}

// errNoSpace fails every write like a full disk.
func errNoSpace(path string, _ []byte, _ fs.FileMode) error {
	return &fs.PathError{Op: "write", Path: path, Err: syscall.ENOSPC}
}

func TestWriteFailureChangesNothing(t *testing.T) {
	r := openTemp(t)
	mustAdd(t, r, "alice", "")
	mustAdd(t, r, "bob", "")
	fileBefore, err := os.ReadFile(r.Path())
	if err != nil {
		t.Fatal(err)
	}
	listBefore := r.List()

	r.writeFile = errNoSpace
	checks := map[string]func() error{
		"add":          func() error { _, _, err := r.Add(AddRequest{Name: "carol"}); return err },
		"add with key": func() error { _, _, err := r.Add(AddRequest{Name: "carol", PublicKey: pubOf("c")}); return err },
		"disable":      func() error { _, err := r.Disable("alice"); return err },
		"remove":       func() error { _, err := r.Remove("bob"); return err },
		"set site":     func() error { return r.SetSite(site9(t)) },
	}
	for name, f := range checks {
		err := f()
		oneLine(t, err)
		if !errors.Is(err, ErrNotSaved) || !errors.Is(err, syscall.ENOSPC) {
			t.Errorf("%s: %v, want ErrNotSaved and ENOSPC", name, err)
		}
		if !strings.Contains(err.Error(), "not saved, nothing changed") || !strings.Contains(err.Error(), "no space left on device") {
			t.Errorf("%s: unclear error %q", name, err)
		}
	}
	if got := r.List(); !reflect.DeepEqual(got, listBefore) {
		t.Errorf("memory changed after failed writes:\n got %+v\nwant %+v", got, listBefore)
	}
	if r.Site() != site3(t) {
		t.Error("site changed after failed write")
	}
	if _, err := r.Get("carol"); !errors.Is(err, ErrNotFound) {
		t.Error("carol exists after a failed add")
	}
	fileAfter, _ := os.ReadFile(r.Path())
	if !bytes.Equal(fileBefore, fileAfter) {
		t.Error("file changed after failed writes")
	}
	// No-op changes need no write and succeed.
	if _, err := r.Enable("alice"); err != nil {
		t.Errorf("no-op Enable on a full disk: %v", err)
	}
	// Once the disk has room again, the same changes work.
	r.writeFile = fastWrite
	if _, _, err := r.Add(AddRequest{Name: "carol"}); err != nil {
		t.Fatal(err)
	}
	if m, _ := r.Get("carol"); m.Host() != 4 {
		t.Errorf("carol got host %d", m.Host())
	}
}

func TestReadOnlyDir(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root ignores directory permissions; TestWriteFailureChangesNothing covers failed writes with a fault hook")
	}
	dir := t.TempDir()
	r := openAt(t, dir, site3(t))
	mustAdd(t, r, "alice", "")
	if err := os.Chmod(dir, 0o500); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(dir, 0o700) })
	_, _, err := r.Add(AddRequest{Name: "bob"})
	oneLine(t, err)
	if !errors.Is(err, ErrNotSaved) || !errors.Is(err, fs.ErrPermission) {
		t.Fatalf("Add in read-only dir: %v", err)
	}
	if !strings.Contains(err.Error(), `adding member "bob": not saved, nothing changed: writing `) {
		t.Errorf("unclear error %q", err)
	}
	if got := nameList(r.List()); got != "alice" {
		t.Errorf("members = %s", got)
	}
	os.Chmod(dir, 0o700)
	mustAdd(t, r, "bob", "")
}

func TestConcurrentAdds(t *testing.T) {
	dir := t.TempDir()
	r := openAt(t, dir, site3(t))
	const n = 120
	var wg sync.WaitGroup
	got := make([]Member, n)
	for i := range n {
		wg.Go(func() {
			m, _, err := r.Add(AddRequest{Name: fmt.Sprintf("m%d", i)})
			if err != nil {
				t.Error(err)
			}
			got[i] = m
		})
	}
	// Readers run alongside.
	stop := make(chan struct{})
	var readers sync.WaitGroup
	readers.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
				r.List()
				r.Get("m1")
			}
		}
	})
	wg.Wait()
	close(stop)
	readers.Wait()
	hosts := map[int]string{}
	for _, m := range got {
		if other, dup := hosts[m.Host()]; dup {
			t.Errorf("%s and %s share host %d", m.Name, other, m.Host())
		}
		hosts[m.Host()] = m.Name
	}
	for h := FirstHost; h < FirstHost+n; h++ {
		if hosts[h] == "" {
			t.Errorf("host %d unused: allocation is not dense", h)
		}
	}
	want := r.List()
	r.Close()
	if got := openAt(t, dir, site3(t)).List(); !reflect.DeepEqual(got, want) {
		t.Error("reloaded members differ")
	}
}

// TestGroupCommit checks that concurrent changes share writes and that no
// Add returns before a write containing it has completed.
func TestGroupCommit(t *testing.T) {
	r := openTemp(t)
	var writes atomic.Int32
	var durable sync.Map // names in a completed write
	r.writeFile = func(path string, data []byte, perm fs.FileMode) error {
		writes.Add(1)
		time.Sleep(3 * time.Millisecond) // a slow disk
		if err := fastWrite(path, data, perm); err != nil {
			return err
		}
		st, err := decodeState(data)
		if err != nil {
			return err
		}
		for name := range st.byName {
			durable.Store(name, true)
		}
		return nil
	}
	const n = 100
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			name := fmt.Sprintf("m%d", i)
			if _, _, err := r.Add(AddRequest{Name: name}); err != nil {
				t.Error(err)
				return
			}
			if _, ok := durable.Load(name); !ok {
				t.Errorf("Add(%s) returned before its write", name)
			}
		})
	}
	wg.Wait()
	if w := writes.Load(); w >= n {
		t.Errorf("%d writes for %d concurrent adds: no group commit", w, n)
	} else {
		t.Logf("%d concurrent adds in %d writes", n, w)
	}
}

// TestGroupCommitFailure makes some batch writes fail: every Add that
// succeeded is in memory and on disk, every one that failed is in neither.
func TestGroupCommitFailure(t *testing.T) {
	dir := t.TempDir()
	r := openAt(t, dir, site3(t))
	var calls atomic.Int32
	r.writeFile = func(path string, data []byte, perm fs.FileMode) error {
		time.Sleep(time.Millisecond)
		if calls.Add(1)%3 == 2 {
			return errNoSpace(path, data, perm)
		}
		return fastWrite(path, data, perm)
	}
	const n = 80
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok, failed := map[string]Member{}, map[string]bool{}
	for i := range n {
		wg.Go(func() {
			name := fmt.Sprintf("m%d", i)
			m, _, err := r.Add(AddRequest{Name: name})
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				ok[name] = m
			case errors.Is(err, ErrNotSaved):
				failed[name] = true
			default:
				t.Errorf("Add(%s): %v", name, err)
			}
		})
	}
	wg.Wait()
	if len(failed) == 0 || len(ok) == 0 {
		t.Fatalf("want both outcomes, got %d ok and %d failed", len(ok), len(failed))
	}
	check := func(where string, list []Member) {
		if len(list) != len(ok) {
			t.Errorf("%s: %d members, want %d", where, len(list), len(ok))
		}
		for _, m := range list {
			if failed[m.Name] {
				t.Errorf("%s: failed member %s present", where, m.Name)
			}
			if ok[m.Name] != m {
				t.Errorf("%s: %s = %+v, want %+v", where, m.Name, m, ok[m.Name])
			}
		}
	}
	check("memory", r.List())
	r.Close()
	check("disk", openAt(t, dir, site3(t)).List())
}

func TestOpenCorruptFile(t *testing.T) {
	k1, k2 := pubOf("k1"), pubOf("k2")
	member := func(name, key, ip4, ip6 string) string {
		return fmt.Sprintf(`{"name":%q,"public_key":%q,"ipv4":%q,"ipv6":%q,"full_tunnel":false,"disabled":false,"created":"2026-01-02T03:04:05Z"}`, name, key, ip4, ip6)
	}
	file := func(members ...string) string {
		return `{"version":1,"site":{"ipv4":"10.77.3.0/24","ipv6":"fd12:3456:789a:3::/64"},"members":[` + strings.Join(members, ",") + "]}"
	}
	good := member("alice", k1, "10.77.3.2", "fd12:3456:789a:3::2")
	nonCanonical := k1[:42] + string(k1[42]+1) + "="
	tests := []struct{ name, content, msg string }{
		{"empty", "", "file is empty"},
		{"blank", " \n\t", "file is empty"},
		{"garbage", "hello", "line 1, column 1: invalid character 'h'"},
		{"truncated", file(good)[:60], "truncated"},
		{"zeros", "\x00\x00\x00\x00", "invalid character"},
		{"null", "null", "unsupported version 0"},
		{"array", "[]", "cannot unmarshal array"},
		{"unknown field", strings.Replace(file(good), `"version":1`, `"version":1,"owner":"x"`, 1), `unknown field "owner"`},
		{"unknown member field", strings.Replace(file(good), `"disabled":false`, `"disabled":false,"private_key":"x"`, 1), `unknown field "private_key"`},
		{"trailing data", file(good) + "{}", "unexpected data after the end"},
		{"two documents", file(good) + "\n" + file(good), "unexpected data after the end"},
		{"wrong type", strings.Replace(file(good), `"version":1`, `"version":"1"`, 1), "line 1, column"},
		{"newer version", strings.Replace(file(good), `"version":1`, `"version":3`, 1), "version 3 was written by a newer booture"},
		{"bad issued endpoint", strings.Replace(file(good), `"disabled":false`, `"disabled":false,"issued_endpoint":"x y"`, 1), "issued_endpoint"},
		{"no site", `{"version":1,"members":[]}`, `no "site"`},
		{"bad site", strings.Replace(file(good), "10.77.3.0/24", "10.77.3.0/23", 1), "not a /24"},
		{"no members", `{"version":1,"site":{"ipv4":"10.77.3.0/24","ipv6":"fd12:3456:789a:3::/64"}}`, `no "members" list`},
		{"null members", `{"version":1,"site":{"ipv4":"10.77.3.0/24","ipv6":"fd12:3456:789a:3::/64"},"members":null}`, `no "members" list`},
		{"bad name", file(member("Alice", k1, "10.77.3.2", "fd12:3456:789a:3::2")), `member #1: invalid name "Alice"`},
		{"bad key", file(member("alice", "xyz", "10.77.3.2", "fd12:3456:789a:3::2")), `member "alice": public key "xyz": not a base64`},
		{"non-canonical key", file(member("alice", nonCanonical, "10.77.3.2", "fd12:3456:789a:3::2")), "not a base64"},
		{"zero key", file(member("alice", key.PublicKey{}.String(), "10.77.3.2", "fd12:3456:789a:3::2")), "not a base64"},
		{"bad ipv4", file(member("alice", k1, "10.77.3.300", "fd12:3456:789a:3::2")), `member "alice": ipv4:`},
		{"outside site", file(member("alice", k1, "10.77.4.2", "fd12:3456:789a:3::2")), "IPv4 address 10.77.4.2 is not in site 10.77.3.0/24"},
		{"booture host", file(member("alice", k1, "10.77.3.1", "fd12:3456:789a:3::1")), "host 1 not in 2..254"},
		{"broadcast host", file(member("alice", k1, "10.77.3.255", "fd12:3456:789a:3::ff")), "host 255 not in 2..254"},
		{"v6 outside site", file(member("alice", k1, "10.77.3.2", "fd12:3456:789a:4::2")), "IPv6 address fd12:3456:789a:4::2 is not in site"},
		{"v6 mismatch", file(member("alice", k1, "10.77.3.2", "fd12:3456:789a:3::3")), "does not match IPv4 address 10.77.3.2 (want fd12:3456:789a:3::2)"},
		{"v4 as v6", file(member("alice", k1, "10.77.3.2", "::ffff:10.77.3.2")), "is not in site"},
		{"duplicate name", file(good, member("alice", k2, "10.77.3.3", "fd12:3456:789a:3::3")), `member "alice": listed twice`},
		{"duplicate key", file(good, member("bob", k1, "10.77.3.3", "fd12:3456:789a:3::3")), `member "bob": public key ` + k1 + ` already used by member "alice"`},
		{"duplicate address", file(good, member("bob", k2, "10.77.3.2", "fd12:3456:789a:3::2")), `member "bob": address 10.77.3.2 already used by member "alice"`},
		{"no created", strings.Replace(file(good), `,"created":"2026-01-02T03:04:05Z"`, "", 1), `no "created" time`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "members.json")
			if err := os.WriteFile(path, []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			r, err := Open(path, site3(t))
			if err == nil {
				r.Close()
				t.Fatal("Open accepted a bad file")
			}
			oneLine(t, err)
			if !errors.Is(err, ErrCorrupt) {
				t.Errorf("error does not wrap ErrCorrupt: %v", err)
			}
			if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("error %q\nwant the path and %q", err, tt.msg)
			}
			// The lock is released after a failed Open.
			if err := os.WriteFile(path, []byte(file(good)), 0o600); err != nil {
				t.Fatal(err)
			}
			openAt(t, dir, site3(t))
		})
	}
}

func TestOpenCleansUp(t *testing.T) {
	dir := t.TempDir()
	r := openAt(t, dir, site3(t))
	mustAdd(t, r, "alice", "")
	r.Close()
	path := filepath.Join(dir, "members.json")
	leftover := filepath.Join(dir, ".members.json.tmp-12345")
	other := filepath.Join(dir, ".mesh.json.tmp-12345")
	for _, f := range []string{leftover, other} {
		if err := os.WriteFile(f, []byte("{half"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	openAt(t, dir, site3(t))
	if _, err := os.Stat(leftover); !errors.Is(err, fs.ErrNotExist) {
		t.Error("leftover temporary file not removed")
	}
	if _, err := os.Stat(other); err != nil {
		t.Error("another file's temporary file was removed")
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v not tightened to 0600", fi.Mode().Perm())
	}
}

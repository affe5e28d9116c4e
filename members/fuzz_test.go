package members

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/booture/booture/key"
)

func FuzzParsePublicKey(f *testing.F) {
	for _, s := range []string{
		pubOf("alice"), " " + pubOf("bob") + "\n", pubOf("x")[:43], pubOf("x") + "=",
		key.PublicKey{}.String(), "", "hello", strings.Repeat("A", 44), strings.Repeat("/", 43) + "=",
		pubOf("x")[:20] + "\n" + pubOf("x")[20:], "\x00",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		k, err := ParsePublicKey(s)
		if err != nil {
			if !errors.Is(err, ErrInvalidKey) {
				t.Fatalf("error does not wrap ErrInvalidKey: %v", err)
			}
			if strings.ContainsAny(err.Error(), "\r\n") {
				t.Fatalf("error is not one line: %q", err)
			}
			return
		}
		if k.IsZero() {
			t.Fatal("accepted the zero key")
		}
		again, err := ParsePublicKey(k.String())
		if err != nil || again != k {
			t.Fatalf("canonical form %s does not parse back: %v", k, err)
		}
		if k2, err := wgtypes.ParseKey(strings.TrimSpace(s)); err != nil || k2 != wgtypes.Key(k.Raw32()) {
			t.Fatalf("disagrees with wgctrl's wgtypes.ParseKey: %v", err)
		}
	})
}

func FuzzCheckName(f *testing.F) {
	for _, s := range []string{"alice", "a", "a-b", "-a", "a-", "A", "0", strings.Repeat("a", 63), strings.Repeat("a", 64), "é", "a b", "a\n", "", "xn--caf-dma"} {
		f.Add(s)
	}
	srv := testServer(f)
	f.Fuzz(func(t *testing.T, name string) {
		err := CheckName(name)
		if err != nil {
			if !errors.Is(err, ErrInvalidName) {
				t.Fatalf("error does not wrap ErrInvalidName: %v", err)
			}
			if strings.ContainsAny(err.Error(), "\r\n") {
				t.Fatalf("error is not one line: %q", err)
			}
			return
		}
		if len(name) < 1 || len(name) > 63 || name[0] == '-' || name[len(name)-1] == '-' {
			t.Fatalf("accepted %q", name)
		}
		for _, c := range []byte(name) {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				t.Fatalf("accepted %q", name)
			}
		}
		// A valid name always makes a valid configuration comment.
		m := testMember(name, 2, false)
		text, err := Render(ConfigFor(m, nil, srv))
		if err != nil {
			t.Fatalf("Render with name %q: %v", name, err)
		}
		if first, _, _ := strings.Cut(text, "\n"); first != "# booture member "+name+" of diois" {
			t.Fatalf("comment line %q", first)
		}
	})
}

// FuzzLoad opens a registry over arbitrary file content: it must either
// refuse the file with one line wrapping ErrCorrupt or load a registry that
// is consistent and saves back to an equal one. Never a panic.
func FuzzLoad(f *testing.F) {
	st := newState(site3(f))
	for i, name := range []string{"alice", "bob", "carol"} {
		ip4, ip6 := st.site.Addrs(FirstHost + i)
		st.put(Member{Name: name, PublicKey: fixedKey(name).Public(), IPv4: ip4, IPv6: ip6, Disabled: i == 1, FullTunnel: i == 2,
			Created: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)})
	}
	valid, err := encodeState(st)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(valid)
	f.Add(valid[:len(valid)/2])
	f.Add([]byte(`{"version":1,"site":{"ipv4":"10.77.3.0/24","ipv6":"fd12:3456:789a:3::/64"},"members":[]}`))
	f.Add([]byte(`{"version":1,"site":{"ipv4":"10.77.9.0/24","ipv6":"fd12:3456:789a:9::/64"},"members":[]}`))
	f.Add([]byte("null"))
	f.Add([]byte(""))
	f.Add([]byte("\x00\xff"))
	// One directory per fuzzing process: inputs run one after another, and
	// each closes its registry.
	path := filepath.Join(f.TempDir(), "members.json")
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		r, err := Open(path, site3(t))
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error does not wrap ErrCorrupt: %v", err)
			}
			if strings.ContainsAny(err.Error(), "\r\n") {
				t.Fatalf("error is not one line: %q", err)
			}
			return
		}
		defer r.Close()
		list := r.List()
		seen4, seenKey := map[string]bool{}, map[key.PublicKey]bool{}
		for _, m := range list {
			if CheckName(m.Name) != nil || seen4[m.IPv4.String()] || seenKey[m.PublicKey] {
				t.Fatalf("inconsistent member loaded: %+v", m)
			}
			if _, err := r.Site().hostOf(m.IPv4, m.IPv6); err != nil {
				t.Fatalf("member %s: %v", m.Name, err)
			}
			seen4[m.IPv4.String()], seenKey[m.PublicKey] = true, true
		}
		// What was loaded saves and loads back unchanged.
		out, err := encodeState(r.cur)
		if err != nil {
			t.Fatal(err)
		}
		st, err := decodeState(out)
		if err != nil {
			t.Fatalf("saved file does not load: %v", err)
		}
		if !reflect.DeepEqual(st, r.cur) {
			t.Fatal("save and load changed the members")
		}
	})
}

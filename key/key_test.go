package key

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// fixedPrivate is RFC 7748's (section 6.1) Alice, whose public key is
// known.
func fixedPrivate(t *testing.T) PrivateKey {
	t.Helper()
	raw, _ := hex.DecodeString("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
	k, err := ParsePrivateKey(base64.StdEncoding.EncodeToString(raw))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// leaks returns how s shows the secret k, or "" if it does not.
func leaks(k PrivateKey, s string) string {
	raw := k.RevealRaw32()
	forms := map[string]string{
		"base64":          k.RevealBase64(),
		"base64 (raw)":    base64.RawStdEncoding.EncodeToString(raw[:]),
		"hex":             hex.EncodeToString(raw[:]),
		"HEX":             strings.ToUpper(hex.EncodeToString(raw[:])),
		"decimal":         strings.Trim(fmt.Sprint(raw), "[]"),
		"decimal, commas": strings.Trim(fmt.Sprintf("%#v", raw)[len("[32]uint8{"):], "}"),
		"bytes":           string(raw[:8]),
	}
	for name, f := range forms {
		if strings.Contains(s, f) {
			return name
		}
	}
	return ""
}

func TestPrivateKeyIsRedactedInEveryFormat(t *testing.T) {
	k := fixedPrivate(t)
	type holder struct {
		Name string
		Key  PrivateKey
		Ptr  *PrivateKey
	}
	h := holder{Name: "x", Key: k, Ptr: &k}
	values := map[string]any{"key": k, "pointer": &k, "struct": h, "struct pointer": &h, "slice": []PrivateKey{k}, "map": map[string]PrivateKey{"a": k}}
	verbs := []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%o", "%b", "%c", "%U", "%10.3v", "%-50s", "% x"}
	for name, v := range values {
		for _, verb := range verbs {
			s := fmt.Sprintf(verb, v)
			if how := leaks(k, s); how != "" {
				t.Errorf("Sprintf(%q, %s) = %q shows the key (%s)", verb, name, s, how)
			}
			if !strings.Contains(s, Redacted) {
				t.Errorf("Sprintf(%q, %s) = %q, want it to say %q", verb, name, s, Redacted)
			}
		}
	}
	for name, s := range map[string]string{
		"String": k.String(), "GoString": k.GoString(), "Sprint": fmt.Sprint(k), "Sprintln": fmt.Sprintln(k),
		"error": fmt.Errorf("wrapped: %v", k).Error(),
	} {
		if how := leaks(k, s); how != "" || !strings.Contains(s, Redacted) {
			t.Errorf("%s = %q (leak: %q)", name, s, how)
		}
	}
}

func TestPrivateKeyIsRedactedInSlog(t *testing.T) {
	k := fixedPrivate(t)
	type holder struct {
		Name string
		Key  PrivateKey
	}
	for _, h := range []struct {
		name string
		new  func(*bytes.Buffer) slog.Handler
	}{
		{"json", func(b *bytes.Buffer) slog.Handler { return slog.NewJSONHandler(b, nil) }},
		{"text", func(b *bytes.Buffer) slog.Handler { return slog.NewTextHandler(b, nil) }},
	} {
		var buf bytes.Buffer
		log := slog.New(h.new(&buf))
		log.Info("attrs", "key", k, "pointer", &k, slog.Any("any", k), slog.Group("g", "key", k))
		log.Info("struct", "holder", holder{Name: "x", Key: k}, "holder_ptr", &holder{Key: k})
		log.With("key", k).Info("with")
		out := buf.String()
		if how := leaks(k, out); how != "" {
			t.Errorf("%s handler shows the key (%s):\n%s", h.name, how, out)
		}
		// Direct attributes print the redaction; a struct holding a key is
		// either redacted (text) or refused by encoding/json (json).
		if strings.Count(out, Redacted) < 4 {
			t.Errorf("%s handler: want the redaction printed for each attribute:\n%s", h.name, out)
		}
	}
}

func TestPrivateKeyRefusesTextEncoders(t *testing.T) {
	k := fixedPrivate(t)
	if b, err := k.MarshalText(); !errors.Is(err, ErrSecret) || len(b) != 0 {
		t.Errorf("MarshalText = %q, %v; want nothing and ErrSecret", b, err)
	}
	for name, v := range map[string]any{
		"key": k, "pointer": &k, "struct": struct{ K PrivateKey }{k}, "map": map[string]PrivateKey{"a": k},
	} {
		b, err := json.Marshal(v)
		if !errors.Is(err, ErrSecret) {
			t.Errorf("json.Marshal(%s) = %s, %v; want ErrSecret", name, b, err)
		}
		if how := leaks(k, string(b)+fmt.Sprint(err)); how != "" {
			t.Errorf("json.Marshal(%s) shows the key (%s)", name, how)
		}
	}
}

func TestRoundTrips(t *testing.T) {
	priv, err := NewPrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParsePrivateKey(priv.RevealBase64())
	if err != nil || !back.Equal(priv) {
		t.Errorf("ParsePrivateKey(RevealBase64()) = %v, %v; want the same key", back.Public(), err)
	}
	if back, err := ParsePrivateKey("  " + priv.RevealBase64() + "\n"); err != nil || !back.Equal(priv) {
		t.Errorf("ParsePrivateKey of the key file's form (with a newline): %v", err)
	}

	pub := priv.Public()
	if p, err := ParsePublicKey(pub.String()); err != nil || p != pub {
		t.Errorf("ParsePublicKey(String()) = %v, %v; want %v", p, err, pub)
	}
	if p := PublicKeyFromRaw32(pub.Raw32()); p != pub {
		t.Errorf("PublicKeyFromRaw32(Raw32()) = %v, want %v", p, pub)
	}
	b, err := json.Marshal(map[string]PublicKey{"k": pub})
	if err != nil || string(b) != `{"k":"`+pub.String()+`"}` {
		t.Fatalf("json.Marshal = %s, %v; want the key as a base64 string", b, err)
	}
	var m map[string]PublicKey
	if err := json.Unmarshal(b, &m); err != nil || m["k"] != pub {
		t.Errorf("json round trip = %v, %v; want %v", m, err, pub)
	}
	if b, _ := pub.AppendText([]byte("k=")); string(b) != "k="+pub.String() {
		t.Errorf("AppendText = %q", b)
	}
	if fmt.Sprint(pub) != pub.String() || fmt.Sprintf("%s", pub) != pub.String() {
		t.Errorf("a public key does not print as base64: %v", pub)
	}
}

func TestParseErrors(t *testing.T) {
	valid := fixedPrivate(t).RevealBase64()
	for _, s := range []string{
		"",
		"   ",
		"not base64!",
		valid[:43],                    // truncated
		valid + "A",                   // too long
		strings.TrimRight(valid, "="), // unpadded
		base64.StdEncoding.EncodeToString(make([]byte, 31)),
		base64.StdEncoding.EncodeToString(make([]byte, 33)),
		base64.URLEncoding.EncodeToString([]byte(strings.Repeat("\xfb", 32))), // URL alphabet
	} {
		if _, err := ParsePublicKey(s); err == nil {
			t.Errorf("ParsePublicKey(%q) succeeded", s)
		}
		_, err := ParsePrivateKey(s)
		if err == nil {
			t.Errorf("ParsePrivateKey(%q) succeeded", s)
			continue
		}
		if len(s) > 8 && strings.Contains(err.Error(), strings.TrimSpace(s)[:8]) {
			t.Errorf("ParsePrivateKey's error %q quotes its input", err)
		}
	}
	var k PublicKey
	if err := k.UnmarshalText([]byte("nope")); err == nil || !k.IsZero() {
		t.Errorf("UnmarshalText of garbage = %v, key %v", err, k)
	}
}

func TestPublicDerivation(t *testing.T) {
	// RFC 7748, section 6.1: Alice's public key.
	want, _ := hex.DecodeString("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
	got := fixedPrivate(t).Public().Raw32()
	if !bytes.Equal(got[:], want) {
		t.Errorf("Public() = %x, want %x", got, want)
	}
	// The same as wgctrl's (and so `wg pubkey`'s), for fresh keys.
	for range 20 {
		k, err := NewPrivateKey()
		if err != nil {
			t.Fatal(err)
		}
		raw := k.RevealRaw32()
		if raw[0]&7 != 0 || raw[31]&128 != 0 || raw[31]&64 == 0 {
			t.Errorf("NewPrivateKey is not clamped: %x", raw)
		}
		if w := wgtypes.Key(raw).PublicKey(); w != wgtypes.Key(k.Public().Raw32()) {
			t.Errorf("Public() = %v, wgctrl says %v", k.Public(), w)
		}
	}
}

func TestZeroAndEqual(t *testing.T) {
	var zp PrivateKey
	var zk PublicKey
	if !zp.IsZero() || !zk.IsZero() {
		t.Error("zero keys are not IsZero")
	}
	a, _ := NewPrivateKey()
	b, _ := NewPrivateKey()
	if a.IsZero() || a.Public().IsZero() {
		t.Error("a fresh key is IsZero")
	}
	if !a.Equal(a) || a.Equal(b) || a.Public() == b.Public() {
		t.Error("Equal or == on keys is wrong")
	}
	if a.Public().Compare(b.Public()) == 0 || a.Public().Compare(a.Public()) != 0 {
		t.Error("Compare is wrong")
	}
}

// Package key holds booture's two kinds of WireGuard Curve25519 key: a
// PublicKey, which names a booture or a member everywhere (records, peers,
// rosters, files), and a PrivateKey, which is a secret.
//
// They are distinct types so that a private key cannot be used where a
// public one is meant, and a PrivateKey never prints itself: every fmt verb,
// slog and encoding.TextMarshaler (hence JSON) see a redacted form. The few
// places that must write a private key (the booture's key file, a member's
// wg-quick configuration, wgctrl and NaCl box) call RevealBase64 or
// RevealRaw32, which a reader can find with grep. tailscale's types/key is
// the model.
//
// The package imports nothing OS-specific (no wgctrl): the mesh, the member
// registry and the network model all use it.
package key

import (
	"bytes"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"golang.org/x/crypto/curve25519"
)

// Len is the length of a key in bytes.
const Len = 32

// errNotAKey is the error of every parse: it never quotes the input, which
// may be a private key.
var errNotAKey = errors.New("not a base64 WireGuard key (44 characters)")

// decode parses a key in standard base64, as wg(8) prints it; spaces and
// line breaks around it are ignored.
func decode(s string) ([Len]byte, error) {
	var k [Len]byte
	b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
	if err != nil || len(b) != Len {
		return k, errNotAKey
	}
	copy(k[:], b)
	return k, nil
}

// PublicKey is a WireGuard public key. A booture's public key is also its
// identity in the mesh. The zero value is no one's key (see IsZero).
// PublicKeys are comparable and may be map keys.
type PublicKey struct {
	k [Len]byte
}

// ParsePublicKey decodes a public key in standard base64 (44 characters, as
// `wg pubkey` prints it); spaces and line breaks around it are ignored.
func ParsePublicKey(s string) (PublicKey, error) {
	k, err := decode(s)
	return PublicKey{k: k}, err
}

// PublicKeyFromRaw32 returns the public key of raw bytes (from wgctrl).
func PublicKeyFromRaw32(raw [Len]byte) PublicKey { return PublicKey{k: raw} }

// Raw32 returns the key's bytes (for wgctrl and NaCl box).
func (k PublicKey) Raw32() [Len]byte { return k.k }

// IsZero reports whether k is unset.
func (k PublicKey) IsZero() bool { return k == PublicKey{} }

// Compare orders keys by their bytes (for stable listings).
func (k PublicKey) Compare(other PublicKey) int { return bytes.Compare(k.k[:], other.k[:]) }

// String returns the key in standard base64, as `wg` prints it.
func (k PublicKey) String() string { return base64.StdEncoding.EncodeToString(k.k[:]) }

// AppendText implements encoding.TextAppender (base64).
func (k PublicKey) AppendText(b []byte) ([]byte, error) {
	return base64.StdEncoding.AppendEncode(b, k.k[:]), nil
}

// MarshalText implements encoding.TextMarshaler (base64), which makes a
// PublicKey a JSON string.
func (k PublicKey) MarshalText() ([]byte, error) { return k.AppendText(nil) }

// UnmarshalText implements encoding.TextUnmarshaler (ParsePublicKey).
func (k *PublicKey) UnmarshalText(b []byte) error {
	p, err := ParsePublicKey(string(b))
	if err != nil {
		return err
	}
	*k = p
	return nil
}

// PrivateKey is a WireGuard private key. It is a secret: it prints as
// Redacted with every fmt verb, in slog and in text encodings, and it is not
// comparable with == (use Equal or IsZero), so that it is never a map key
// nor compared in variable time.
type PrivateKey struct {
	_ [0]func() // not comparable
	k [Len]byte
}

// Redacted is what a PrivateKey prints instead of itself.
const Redacted = "[redacted private key]"

// ErrSecret is returned by PrivateKey.MarshalText: a private key is written
// only through RevealBase64, never by an encoder by accident.
var ErrSecret = errors.New("a private key is not marshalled (use RevealBase64 where it must be written)")

// NewPrivateKey returns a fresh private key, clamped as Curve25519 wants
// (the same bits `wg genkey` sets).
func NewPrivateKey() (PrivateKey, error) {
	var k PrivateKey
	if _, err := rand.Read(k.k[:]); err != nil {
		return PrivateKey{}, fmt.Errorf("generating private key: %w", err)
	}
	k.k[0] &= 248
	k.k[31] = (k.k[31] & 127) | 64
	return k, nil
}

// ParsePrivateKey decodes a private key in standard base64, as `wg genkey`
// prints it and the key file holds it; spaces and line breaks around it are
// ignored. The error never quotes s.
func ParsePrivateKey(s string) (PrivateKey, error) {
	k, err := decode(s)
	if err != nil {
		return PrivateKey{}, err
	}
	return PrivateKey{k: k}, nil
}

// PrivateKeyFromRaw32 returns the private key of raw bytes, as they are
// (not clamped: X25519 clamps when it uses the key).
func PrivateKeyFromRaw32(raw [Len]byte) PrivateKey { return PrivateKey{k: raw} }

// IsZero reports whether k is unset.
func (k PrivateKey) IsZero() bool { return k.k == [Len]byte{} }

// Equal reports whether k and other are the same key, in constant time.
func (k PrivateKey) Equal(other PrivateKey) bool {
	return subtle.ConstantTimeCompare(k.k[:], other.k[:]) == 1
}

// Public returns the public key of k.
func (k PrivateKey) Public() PublicKey {
	var pub PublicKey
	// X25519 fails only for a low-order point, and the base point is not one.
	out, err := curve25519.X25519(k.k[:], curve25519.Basepoint)
	if err != nil {
		panic("key: X25519 with the base point failed: " + err.Error())
	}
	copy(pub.k[:], out)
	return pub
}

// RevealBase64 returns the secret key in standard base64, as `wg genkey`
// prints it. Call it only where the key must be written: the booture's key
// file and a member's wg-quick configuration.
func (k PrivateKey) RevealBase64() string { return base64.StdEncoding.EncodeToString(k.k[:]) }

// RevealRaw32 returns the secret key's bytes, for wgctrl and NaCl box.
func (k PrivateKey) RevealRaw32() [Len]byte { return k.k }

// String returns Redacted.
func (k PrivateKey) String() string { return Redacted }

// GoString returns Redacted, for %#v.
func (k PrivateKey) GoString() string { return Redacted }

// Format makes every fmt verb (%v, %+v, %#v, %s, %q, %x, %d...) print
// Redacted: without it, %x and %d would print the bytes.
func (k PrivateKey) Format(f fmt.State, verb rune) {
	if verb == 'q' {
		fmt.Fprintf(f, "%q", Redacted)
		return
	}
	_, _ = f.Write([]byte(Redacted))
}

// LogValue makes slog print Redacted, whatever the handler.
func (k PrivateKey) LogValue() slog.Value { return slog.StringValue(Redacted) }

// MarshalText refuses to encode the key: JSON, TOML and other encoders fail
// with ErrSecret instead of writing it. Use RevealBase64 where the key must
// be written.
func (k PrivateKey) MarshalText() ([]byte, error) { return nil, ErrSecret }

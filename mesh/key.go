package mesh

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/booture/booture/internal/store"
)

// Key is a Curve25519 key as WireGuard uses them. A booture's WireGuard key
// pair is also its identity in the mesh: records name it, and secrets meant
// for one booture only are sealed to it (NaCl box).
type Key wgtypes.Key

// String returns the key in base64, as `wg` prints it.
func (k Key) String() string { return base64.StdEncoding.EncodeToString(k[:]) }

// IsZero reports whether k is unset.
func (k Key) IsZero() bool { return k == Key{} }

// MarshalText encodes the key in base64.
func (k Key) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// UnmarshalText decodes a base64 key.
func (k *Key) UnmarshalText(b []byte) error {
	p, err := ParseKey(string(b))
	if err != nil {
		return err
	}
	*k = p
	return nil
}

// Public returns the public key of private key k.
func (k Key) Public() Key { return Key(wgtypes.Key(k).PublicKey()) }

// WG returns k as the wgtypes.Key of wgctrl and netcfg.
func (k Key) WG() wgtypes.Key { return wgtypes.Key(k) }

// ParseKey decodes a base64 WireGuard key.
func ParseKey(s string) (Key, error) {
	b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
	if err != nil || len(b) != 32 {
		return Key{}, errors.New("not a base64 WireGuard key (44 characters)")
	}
	return Key(b), nil
}

// NewPrivateKey returns a fresh clamped Curve25519 private key.
func NewPrivateKey() (Key, error) {
	k, err := wgtypes.GeneratePrivateKey()
	return Key(k), err
}

// LoadOrCreateKey reads the booture's private key from path, or creates it
// (mode 0600) if the file does not exist. The key never changes afterwards:
// peers and members are configured with its public half.
func LoadOrCreateKey(path string) (Key, error) {
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		k, perr := ParseKey(string(b))
		if perr != nil {
			return Key{}, fmt.Errorf("reading private key %s: %w", path, perr)
		}
		return k, nil
	case !store.IsNotExist(err):
		return Key{}, fmt.Errorf("reading private key: %w", err)
	}
	k, err := NewPrivateKey()
	if err != nil {
		return Key{}, fmt.Errorf("generating private key: %w", err)
	}
	if err := store.EnsureDir(filepath.Dir(path), 0o700); err != nil {
		return Key{}, err
	}
	if err := store.WriteFile(path, []byte(k.String()+"\n"), 0o600); err != nil {
		return Key{}, err
	}
	return k, nil
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic("crypto/rand failed: " + err.Error())
	}
	return b
}

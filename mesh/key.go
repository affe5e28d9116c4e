package mesh

import (
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"

	"github.com/booture/booture/internal/store"
	"github.com/booture/booture/key"
)

// A booture's WireGuard key pair is also its identity in the mesh: records
// name its key.PublicKey, and secrets meant for one booture only are sealed
// to it (NaCl box, see crypto.go).

// LoadOrCreateKey reads the booture's private key from path, or creates it
// (mode 0600) if the file does not exist. The key never changes afterwards:
// peers and members are configured with its public half. The file holds the
// key in base64 and a newline, as `wg genkey` writes it.
func LoadOrCreateKey(path string) (key.PrivateKey, error) {
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		k, perr := key.ParsePrivateKey(string(b))
		if perr != nil {
			return key.PrivateKey{}, fmt.Errorf("reading private key %s: %w", path, perr)
		}
		return k, nil
	case !store.IsNotExist(err):
		return key.PrivateKey{}, fmt.Errorf("reading private key: %w", err)
	}
	k, err := key.NewPrivateKey()
	if err != nil {
		return key.PrivateKey{}, fmt.Errorf("generating private key: %w", err)
	}
	if err := store.EnsureDir(filepath.Dir(path), 0o700); err != nil {
		return key.PrivateKey{}, err
	}
	if err := store.WriteFile(path, []byte(k.RevealBase64()+"\n"), 0o600); err != nil {
		return key.PrivateKey{}, err
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

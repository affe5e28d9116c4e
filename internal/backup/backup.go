// Package backup writes and reads booture's backup file: one file holding
// what makes a booture itself (its private key, its mesh credentials and
// roster, its members, its plugin pins and its config file), encrypted with
// a passphrase, and restores it into a state directory on a new machine.
//
// The file is an age file (https://age-encryption.org/v1) with a single
// scrypt (passphrase) recipient, made with filippo.io/age: a reviewed
// format and library, readable with the stock `age -d` tool in an
// emergency, with a memory-hard key derivation (scrypt, 2^18 by default)
// and an authenticated stream (ChaCha20-Poly1305 in 64 KiB chunks, so a
// truncated or altered file is detected, never half-read). Inside is a
// JSON Bundle.
//
// The package imports no network code: the CLI uses it to encrypt what the
// daemon hands over and to restore with the daemon stopped.
package backup

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"slices"
	"strings"
	"time"

	"filippo.io/age"

	"github.com/booture/booture/internal/api"
	"golang.org/x/crypto/curve25519"
)

// Format names the content of a booture backup.
const Format = "booture-backup"

// FormatVersion is the version of Bundle this package writes; it reads
// this one and older ones.
const FormatVersion = 1

// MaxFileSize bounds a backup file (and its decrypted content): a booture's
// state is a few hundred kilobytes even with a full site of members.
const MaxFileSize = 16 << 20

// DefaultWorkFactor is scrypt's log2(N) for new backups (age's default:
// about a second and 256 MiB on a small ARM box).
const DefaultWorkFactor = 18

// maxWorkFactor is the most a backup may ask of the machine that opens it.
const maxWorkFactor = 20

// MinPassphrase is the shortest passphrase a backup is made with.
const MinPassphrase = 8

// KeyFile and MeshFile are the state files a bundle cannot do without.
const (
	KeyFile  = "private.key"
	MeshFile = "mesh.json"
)

// Sentinel errors, checked with errors.Is.
var (
	// ErrWrongPassphrase: the file is a passphrase-encrypted age file but
	// the passphrase does not open it.
	ErrWrongPassphrase = errors.New("wrong passphrase")
	// ErrNotBackup: the file is not a booture backup.
	ErrNotBackup = errors.New("not a booture backup")
	// ErrDamaged: the file is a backup but truncated or altered.
	ErrDamaged = errors.New("backup file is truncated or damaged")
	// ErrNewer: the backup was made by a newer booture.
	ErrNewer = errors.New("backup made by a newer booture")
)

// Bundle is the decrypted content of a backup.
type Bundle struct {
	Format  string    `json:"format"`
	Version int       `json:"version"`
	Created time.Time `json:"created"`
	// DaemonVersion is the version of the bootured that made it.
	DaemonVersion string `json:"daemon_version"`
	// Name, PublicKey and Site describe the booture (shown before a
	// restore; the files are authoritative).
	Name      string `json:"name"`
	PublicKey string `json:"public_key"`
	Site      int    `json:"site"`
	Members   int    `json:"members"`
	// Files are the state directory's files by slash-separated path
	// relative to it (private.key, mesh.json, members.json, ...).
	Files map[string][]byte `json:"files"`
	// Config is the content of the daemon's config file, and ConfigPath
	// where it was (both empty when it ran on flags alone).
	Config     []byte `json:"config,omitempty"`
	ConfigPath string `json:"config_path,omitempty"`
}

// CheckPassphrase refuses a passphrase too weak to protect the booture's
// private key.
func CheckPassphrase(p string) error {
	if len([]rune(p)) < MinPassphrase {
		return fmt.Errorf("the passphrase must have at least %d characters", MinPassphrase)
	}
	return nil
}

// Encrypt returns b encrypted with passphrase. workFactor is scrypt's
// log2(N); 0 means DefaultWorkFactor (tests use less).
func Encrypt(b *Bundle, passphrase string, workFactor int) ([]byte, error) {
	if err := CheckPassphrase(passphrase); err != nil {
		return nil, err
	}
	b.Format, b.Version = Format, FormatVersion
	if err := b.Validate(); err != nil {
		return nil, err
	}
	plain, err := json.Marshal(b)
	if err != nil {
		return nil, fmt.Errorf("encoding backup: %w", err)
	}
	defer clear(plain)
	r, err := age.NewScryptRecipient(passphrase)
	if err != nil {
		return nil, fmt.Errorf("encrypting backup: %w", err)
	}
	if workFactor == 0 {
		workFactor = DefaultWorkFactor
	}
	r.SetWorkFactor(workFactor)
	var out bytes.Buffer
	w, err := age.Encrypt(&out, r)
	if err != nil {
		return nil, fmt.Errorf("encrypting backup: %w", err)
	}
	if _, err := w.Write(plain); err != nil {
		return nil, fmt.Errorf("encrypting backup: %w", err)
	}
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("encrypting backup: %w", err)
	}
	return out.Bytes(), nil
}

// ageMagic starts every age file (binary, not armored).
const ageMagic = "age-encryption.org/v1\n"

// Decrypt opens a backup file's content with passphrase and checks it.
// Errors are one line and wrap ErrWrongPassphrase, ErrNotBackup, ErrDamaged
// or ErrNewer.
func Decrypt(data []byte, passphrase string) (*Bundle, error) {
	return decrypt(data, passphrase, maxWorkFactor)
}

func decrypt(data []byte, passphrase string, maxLogN int) (*Bundle, error) {
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("%w: %d bytes, more than a backup can be", ErrNotBackup, len(data))
	}
	if !bytes.HasPrefix(data, []byte(ageMagic)) {
		if len(data) < len(ageMagic) && strings.HasPrefix(ageMagic, string(data)) {
			return nil, fmt.Errorf("%w (%d bytes)", ErrDamaged, len(data))
		}
		return nil, fmt.Errorf("%w (not an age-encrypted file)", ErrNotBackup)
	}
	id, err := age.NewScryptIdentity(passphrase)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrWrongPassphrase, err)
	}
	id.SetMaxWorkFactor(maxLogN)
	r, err := age.Decrypt(bytes.NewReader(data), id)
	if err != nil {
		return nil, classify(err)
	}
	plain, err := io.ReadAll(io.LimitReader(r, MaxFileSize+1))
	defer clear(plain)
	if err != nil {
		return nil, fmt.Errorf("%w (%v)", ErrDamaged, err)
	}
	return Parse(plain)
}

// classify turns age's header errors into ours.
func classify(err error) error {
	var nm *age.NoIdentityMatchError
	if errors.As(err, &nm) {
		for _, e := range nm.Errors {
			if strings.Contains(e.Error(), "incorrect passphrase") {
				return ErrWrongPassphrase
			}
			if strings.Contains(e.Error(), "work factor") {
				return fmt.Errorf("%w (%v)", ErrNotBackup, e)
			}
		}
		return fmt.Errorf("%w (an age file not encrypted with a passphrase)", ErrNotBackup)
	}
	if strings.Contains(err.Error(), "work factor") {
		return fmt.Errorf("%w (%v)", ErrNotBackup, err)
	}
	return fmt.Errorf("%w (%v)", ErrDamaged, err)
}

// Parse decodes and checks a decrypted bundle.
func Parse(plain []byte) (*Bundle, error) {
	if len(plain) > MaxFileSize {
		return nil, fmt.Errorf("%w: content larger than %d bytes", ErrNotBackup, MaxFileSize)
	}
	var head struct {
		Format  string `json:"format"`
		Version int    `json:"version"`
	}
	if err := json.Unmarshal(plain, &head); err != nil || head.Format != Format {
		return nil, fmt.Errorf("%w (an encrypted file, but not of booture)", ErrNotBackup)
	}
	if head.Version > FormatVersion {
		return nil, fmt.Errorf("%w (format %d; this booture reads up to %d): upgrade booture first", ErrNewer, head.Version, FormatVersion)
	}
	if head.Version < 1 {
		return nil, fmt.Errorf("%w: format version %d", ErrNotBackup, head.Version)
	}
	var b Bundle
	dec := json.NewDecoder(bytes.NewReader(plain))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&b); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrDamaged, err)
	}
	if err := b.Validate(); err != nil {
		return nil, err
	}
	return &b, nil
}

// Validate checks that b can be restored: known format, a private key and
// mesh state that belong together, file names that stay inside the state
// directory.
func (b *Bundle) Validate() error {
	if b.Format != Format {
		return fmt.Errorf("%w: format %q", ErrNotBackup, b.Format)
	}
	for name := range b.Files {
		if err := CheckPath(name); err != nil {
			return fmt.Errorf("%w: %v", ErrDamaged, err)
		}
	}
	pub, err := PublicKeyOf(b.Files[KeyFile])
	if err != nil {
		return fmt.Errorf("%w: %s: %v", ErrDamaged, KeyFile, err)
	}
	if b.PublicKey != pub {
		return fmt.Errorf("%w: the private key is not the one of %s", ErrDamaged, b.PublicKey)
	}
	var mesh struct {
		Self struct {
			PublicKey string `json:"key"`
		} `json:"self"`
	}
	if err := json.Unmarshal(b.Files[MeshFile], &mesh); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrDamaged, MeshFile, err)
	}
	if mesh.Self.PublicKey != pub {
		return fmt.Errorf("%w: %s belongs to another key", ErrDamaged, MeshFile)
	}
	for name, data := range b.Files {
		if strings.HasSuffix(name, ".json") && !json.Valid(data) {
			return fmt.Errorf("%w: %s is not JSON", ErrDamaged, name)
		}
	}
	if b.ConfigPath != "" && !path.IsAbs(b.ConfigPath) {
		return fmt.Errorf("%w: config path %q is not absolute", ErrDamaged, b.ConfigPath)
	}
	return nil
}

// Names returns the bundle's file names, sorted.
func (b *Bundle) Names() []string {
	out := make([]string, 0, len(b.Files))
	for n := range b.Files {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// CheckPath accepts the relative, slash-separated path of a state file:
// clean, inside the state directory, not hidden (temporary files), not a
// lock file and not an installed plugin binary.
func CheckPath(name string) error {
	switch {
	case name == "" || path.IsAbs(name) || path.Clean(name) != name || name == "." || strings.HasPrefix(name, "../") || name == "..":
		return fmt.Errorf("file name %.80q is not inside the state directory", name)
	case strings.ContainsAny(name, "\\\x00"):
		return fmt.Errorf("file name %.80q has a forbidden character", name)
	case !Included(name):
		return fmt.Errorf("file %.80q is not part of a backup", name)
	}
	return nil
}

// Included reports whether the state file at relative slash path name
// belongs in a backup: every state file but temporary and lock files and
// installed plugin binaries (reinstalled from their packages; their pins
// are kept).
func Included(name string) bool {
	for _, part := range strings.Split(name, "/") {
		if strings.HasPrefix(part, ".") {
			return false
		}
	}
	return !strings.HasSuffix(name, ".lock") && !strings.HasPrefix(name, "plugins/bin/") && name != "plugins/bin"
}

// PublicKeyOf returns the base64 public key of the private key file
// content data (base64, as wg genkey writes it).
func PublicKeyOf(data []byte) (string, error) {
	priv, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(data)))
	if err != nil || len(priv) != 32 {
		return "", errors.New("not a base64 WireGuard private key")
	}
	defer clear(priv)
	pub, err := curve25519.X25519(priv, curve25519.Basepoint)
	if err != nil {
		return "", fmt.Errorf("deriving the public key: %w", err)
	}
	return base64.StdEncoding.EncodeToString(pub), nil
}

// FromSnapshot makes the bundle of a daemon's snapshot.
func FromSnapshot(s api.Backup) *Bundle {
	return &Bundle{
		Format: Format, Version: FormatVersion, Created: s.Created, DaemonVersion: s.Version,
		Name: s.Name, PublicKey: s.PublicKey, Site: s.Site, Members: s.Members,
		Files: s.Files, Config: s.Config, ConfigPath: s.ConfigPath,
	}
}

package mesh

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/booture/booture/internal/store"
	"github.com/booture/booture/key"
)

// MarshalText encodes the ID in hex.
func (id MeshID) MarshalText() ([]byte, error) { return []byte(id.String()), nil }

// UnmarshalText decodes a hex ID.
func (id *MeshID) UnmarshalText(b []byte) error {
	var v MeshID
	if hex.DecodedLen(len(b)) != len(v) {
		return errors.New("mesh id: want 32 hex digits")
	}
	if _, err := hex.Decode(v[:], b); err != nil {
		return fmt.Errorf("mesh id: %w", err)
	}
	*id = v
	return nil
}

// Credentials are what a booture needs to take part in a mesh's gossip. The
// gossip key is a secret shared by the mesh's current bootures; a new key
// (next epoch) is handed out whenever a booture is expelled.
type Credentials struct {
	MeshID  MeshID `json:"mesh_id"`
	Founded int64  `json:"founded"` // Unix ms
	Key     []byte `json:"gossip_key"`
	Epoch   uint64 `json:"epoch"`
	// Excludes lists the expelled bootures' keys known when this key was
	// issued: it was sealed to none of them. A revocation missing here
	// means the key may have reached an expelled booture.
	Excludes []key.PublicKey `json:"excludes,omitempty"`
	// Issuer is the booture that drew the key (zero for the founder's
	// first key, or one taken from an older daemon). If the mesh revokes
	// it, its key loses any tie: it knows the key whatever it claimed.
	Issuer key.PublicKey `json:"issuer,omitzero"`
}

func (c *Credentials) validate() error {
	if c.MeshID.IsZero() {
		return errors.New("credentials without a mesh id")
	}
	if len(c.Key) != 32 {
		return errors.New("credentials: gossip key must be 32 bytes")
	}
	return nil
}

// keyHash identifies a gossip key without revealing it.
func keyHash(key []byte) []byte {
	h := sha256.Sum256(append([]byte("booture gossip key id "), key...))
	return h[:16]
}

// newCredentials founds a new mesh.
func newCredentials(now time.Time) Credentials {
	var id MeshID
	copy(id[:], randomBytes(16))
	return Credentials{MeshID: id, Founded: now.UnixMilli(), Key: randomBytes(32)}
}

// Summary is what two bootures compare to decide whose credentials win when
// they meet with different ones (a merge of two meshes, or a booture that
// missed a key change).
type Summary struct {
	MeshID  MeshID `json:"mesh_id"`
	Founded int64  `json:"founded"`
	Size    int    `json:"size"`
	Epoch   uint64 `json:"epoch"`
	KeyHash []byte `json:"key_hash"`
}

// Beats reports whether credentials summarized by s win over those of o.
// Within one mesh, the newer epoch wins (ties, from two simultaneous
// expulsions, go to the lower key hash). Between meshes, the bigger one wins
// (fewer bootures renumber), then the older, then the lower id. The order is
// total and both sides compute it the same way.
func (s Summary) Beats(o Summary) bool {
	if s.MeshID == o.MeshID {
		if s.Epoch != o.Epoch {
			return s.Epoch > o.Epoch
		}
		return bytes.Compare(s.KeyHash, o.KeyHash) < 0
	}
	if s.Size != o.Size {
		return s.Size > o.Size
	}
	if s.Founded != o.Founded {
		return s.Founded < o.Founded
	}
	return bytes.Compare(s.MeshID[:], o.MeshID[:]) < 0
}

// Same reports whether s and o describe the same credentials.
func (s Summary) Same(o Summary) bool {
	return s.MeshID == o.MeshID && s.Epoch == o.Epoch && bytes.Equal(s.KeyHash, o.KeyHash)
}

// Revocation records an expelled booture.
type Revocation struct {
	Name  string        `json:"name"`
	Key   key.PublicKey `json:"key"`
	Epoch uint64        `json:"epoch"` // the epoch whose key it never received
	By    string        `json:"by"`
	At    int64         `json:"at"`
}

// invitation is an invitation this booture issued.
type invitation struct {
	ID      []byte `json:"id"`
	Secret  []byte `json:"secret"`
	Created int64  `json:"created"`
	Expires int64  `json:"expires"`
	UsedBy  string `json:"used_by,omitempty"`
	UsedAt  int64  `json:"used_at,omitempty"`
	// UsedByKey is the public key of the booture that used it: only that
	// booture may redeem it again, within redeemRetryWindow.
	UsedByKey key.PublicKey `json:"used_by_key,omitzero"`
	// RevokedAt is set (Unix ms) when the admin revoked it unused.
	RevokedAt int64 `json:"revoked_at,omitempty"`
}

// Conflict records a site conflict found when two parts of the mesh met.
type Conflict struct {
	Site    int    `json:"site"`
	Winner  string `json:"winner"`
	Loser   string `json:"loser"`
	NewSite int    `json:"new_site,omitempty"`
	At      int64  `json:"at"`
}

// stateVersion is the version of the on-disk state format.
const stateVersion = 1

// persisted is the content of the mesh state file (mode 0600: it holds the
// gossip key and open invitations).
type persisted struct {
	Version     int          `json:"version"`
	Creds       Credentials  `json:"credentials"`
	Self        Record       `json:"self"`
	Roster      []Record     `json:"roster"`
	Revoked     []Revocation `json:"revoked"`
	Invitations []invitation `json:"invitations"`
	Conflicts   []Conflict   `json:"conflicts"`
	Expelled    bool         `json:"expelled,omitempty"`
}

func loadState(path string) (*persisted, error) {
	var p persisted
	if err := store.ReadJSON(path, &p); err != nil {
		return nil, err
	}
	if p.Version > stateVersion {
		return nil, fmt.Errorf("mesh state %s: format version %d was written by a newer booture (this one reads version %d): upgrade booture", path, p.Version, stateVersion)
	}
	if p.Version != stateVersion {
		return nil, fmt.Errorf("mesh state %s: format version %d is not supported", path, p.Version)
	}
	if err := p.Creds.validate(); err != nil {
		return nil, fmt.Errorf("mesh state %s: %w", path, err)
	}
	if !ValidSite(p.Self.Site) {
		return nil, fmt.Errorf("mesh state %s: own site %d out of range", path, p.Self.Site)
	}
	return &p, nil
}

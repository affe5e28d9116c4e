package daemon

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/booture/booture/internal/api"
	"github.com/booture/booture/internal/backup"
	"github.com/booture/booture/mesh"
)

var _ api.BackupBackend = (*Daemon)(nil)

// Backup implements api.BackupBackend: a snapshot of the state directory
// taken while the daemon runs. The mesh state comes from memory under the
// node's lock (the file may lag behind its roster); every other state file
// is read from disk, where its writer replaces it atomically, so each is
// one whole version. Installed plugin binaries are left out (see
// backup.Included); their pins are kept.
func (d *Daemon) Backup(ctx context.Context) (api.Backup, error) {
	files, err := backup.ReadStateFiles(d.cfg.StateDir)
	if err != nil {
		return api.Backup{}, fmt.Errorf("backup: %w", err)
	}
	snap, err := d.node.StateSnapshot()
	if err != nil {
		return api.Backup{}, fmt.Errorf("backup: %w", err)
	}
	files[mesh.StateFile] = snap
	if _, ok := files[KeyFile]; !ok {
		return api.Backup{}, fmt.Errorf("backup: no %s in %s", KeyFile, d.cfg.StateDir)
	}
	out := api.Backup{
		Name:      d.cfg.Name,
		PublicKey: d.priv.Public().String(),
		Site:      d.node.View().Site.Number,
		Members:   d.members.Len(),
		Version:   Version,
		Created:   time.Now().UTC().Truncate(time.Second),
		Files:     files,
	}
	if d.cfg.File != "" {
		if out.ConfigPath, err = filepath.Abs(d.cfg.File); err != nil {
			return api.Backup{}, fmt.Errorf("backup: %w", err)
		}
		if out.Config, err = os.ReadFile(d.cfg.File); err != nil {
			return api.Backup{}, fmt.Errorf("backup: reading the config file: %w", err)
		}
	}
	d.log.Info("backup taken", "files", len(files), "members", out.Members)
	return out, nil
}

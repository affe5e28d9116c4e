package daemon

import (
	"log/slog"

	"github.com/booture/booture/internal/config"
	"github.com/booture/booture/netcfg"
	"github.com/booture/booture/netcfg/linuxnet"
)

// linuxApplier is the real network applier.
func linuxApplier(log *slog.Logger, cfg config.Config) (netcfg.Applier, error) {
	return linuxnet.New(log, linuxnet.Options{Mode: cfg.WireGuardMode, Listen: cfg.Listen})
}

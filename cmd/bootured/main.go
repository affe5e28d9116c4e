// Command bootured is the booture daemon: it links this box into a
// WireGuard mesh with other bootures, gives members VPN access and serves
// the declared services through plugins. See bootured --help.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"syscall"

	"github.com/booture/booture/internal/config"
	"github.com/booture/booture/internal/daemon"
)

func main() {
	// Heap profiles are for developers; off, the runtime saves their
	// sampling and tables.
	if !daemon.Profiling() {
		runtime.MemProfileRate = 0
	}
	cfg, err := config.Load(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bootured:", err)
		os.Exit(2)
	}
	log := newLogger(cfg)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := daemon.Run(ctx, daemon.Options{Config: cfg, Logger: log}); err != nil {
		log.Error("bootured failed", "err", err)
		fmt.Fprintln(os.Stderr, "bootured:", err)
		os.Exit(1)
	}
}

func newLogger(cfg config.Config) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.LogLevel}
	var h slog.Handler = slog.NewTextHandler(os.Stderr, opts)
	if cfg.LogFormat == "json" {
		h = slog.NewJSONHandler(os.Stderr, opts)
	}
	return slog.New(h).With("booture", cfg.Name)
}

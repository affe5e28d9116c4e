package daemon

import (
	"context"
	"errors"

	"github.com/booture/booture/internal/api"
)

// TEMPORARY: replaced when the plugin host is wired in.
var errNoPlugins = errors.New("plugins are not wired in yet")

func (d *Daemon) Services(ctx context.Context) ([]api.Service, error) { return []api.Service{}, nil }
func (d *Daemon) Plugins(ctx context.Context) ([]api.Plugin, error)   { return []api.Plugin{}, nil }
func (d *Daemon) InstallPlugin(ctx context.Context, path string) (api.Plugin, error) {
	return api.Plugin{}, errNoPlugins
}
func (d *Daemon) ReloadPlugin(ctx context.Context, name string) (api.Plugin, error) {
	return api.Plugin{}, errNoPlugins
}

package gateway_test

import (
	"context"
	"log/slog"
	"net/netip"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/booture/booture/catalog"
	"github.com/booture/booture/gateway"
)

// The daemon's wiring: one Gateway for the daemon's life, Update on every
// change of routes, catalog or bootures, Serve on the mesh addresses
// (again, with new addresses, if the site is renumbered).
func Example() {
	ctx := context.Background()
	cfg := gateway.DefaultConfig() // then apply the config file's settings
	gw, err := gateway.New(cfg, slog.Default(), prometheus.NewRegistry())
	if err != nil {
		panic(err)
	}
	self := catalog.Booture{Name: "diois", IPv4: netip.MustParseAddr("10.77.1.1"), IPv6: netip.MustParseAddr("fd12:3456:789a:1::1")}
	err = gw.Update(gateway.State{
		Self: self,
		Network: gateway.Network{
			Site4: netip.MustParsePrefix("10.77.1.0/24"),
			Site6: netip.MustParsePrefix("fd12:3456:789a:1::/64"),
			Pool4: netip.MustParsePrefix("10.77.0.0/16"),
			Pool6: netip.MustParsePrefix("fd12:3456:789a::/48"),
		},
		Routes:   nil, // from the plugin host
		Services: nil, // the mesh-wide catalog
		Bootures: []catalog.Booture{self},
	})
	if err != nil {
		panic(err)
	}
	lan := netip.MustParseAddr("198.51.100.1") // only to offer public services to the LAN
	go func() {
		if err := gw.Serve(ctx, gateway.MeshListen(self, lan)); err != nil {
			slog.Error("gateway stopped", "err", err)
		}
	}()
}

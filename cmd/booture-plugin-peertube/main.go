// Command booture-plugin-peertube is the first-party booture plugin for
// PeerTube (see package plugins/peertube). The daemon starts it; it is not
// meant to be run by hand.
package main

import (
	"github.com/booture/booture/plugins/peertube"
	"github.com/booture/booture/plugins/sdk"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "0.1.0"

func main() {
	sdk.Serve(peertube.New(sdk.NewLogger(), version))
}

// Command booture-plugin-nextcloud is the first-party booture plugin for
// Nextcloud (see package plugins/nextcloud). The daemon starts it; it is not
// meant to be run by hand.
package main

import (
	"github.com/booture/booture/plugins/nextcloud"
	"github.com/booture/booture/plugins/sdk"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "0.1.0"

func main() {
	sdk.Serve(nextcloud.New(sdk.NewLogger(), version, nil))
}

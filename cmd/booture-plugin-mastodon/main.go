// Command booture-plugin-mastodon is the first-party booture plugin for
// Mastodon (see package plugins/mastodon). The daemon starts it; it is not
// meant to be run by hand.
package main

import (
	"github.com/booture/booture/plugins/mastodon"
	"github.com/booture/booture/plugins/sdk"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "0.1.0"

func main() {
	sdk.Serve(mastodon.New(sdk.NewLogger(), version))
}

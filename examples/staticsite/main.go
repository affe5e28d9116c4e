// Command booture-plugin-staticsite is an example third-party booture
// plugin: it serves a folder over HTTP on loopback and asks the daemon to
// route SERVICE.BOOTURE.DOMAIN to it. It imports nothing of booture but the
// SDK, as an outside author's plugin would. See README.md.
package main

import "github.com/booture/booture/plugins/sdk"

// version is set at build time with -ldflags "-X main.version=...".
var version = "0.1.0"

func main() {
	sdk.Serve(New(sdk.NewLogger(), version))
}

// Package proto is the wire contract between the booture daemon and its
// plugins: the gRPC services of plugin.proto (generated code beside this
// file) and the go-plugin handshake both sides must agree on.
//
// Plugin authors do not import this package: they use plugins/sdk, which
// speaks it for them.
package proto

import plugin "github.com/hashicorp/go-plugin"

// ProtocolVersion is the version of plugin.proto, negotiated through
// go-plugin's VersionedPlugins so that a later v2 can be served beside it.
const ProtocolVersion = 1

// PluginKey is the name under which the plugin is dispensed in go-plugin's
// plugin set.
const PluginKey = "booture"

// Handshake returns the go-plugin handshake. The cookie only keeps the
// binaries from being run by hand by mistake; integrity comes from the
// host's SHA-256 pins and AutoMTLS.
func Handshake() plugin.HandshakeConfig {
	return plugin.HandshakeConfig{
		MagicCookieKey:   "BOOTURE_PLUGIN",
		MagicCookieValue: "4c1b6a0e-booture-plugin",
	}
}

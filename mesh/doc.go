// Package mesh knows who is in a booture mesh and how to reach them.
//
// A mesh is a federation of bootures with no central server. Each booture
// runs a Node: it gossips with the others over hashicorp/memberlist
// (encrypted and authenticated with the mesh's gossip key), keeps a roster of
// every booture it has ever seen in the mesh (so that a crashed or cut-off
// booture keeps its site and is found again when it comes back), and turns
// invitations, expulsions and merges of meshes into changes of that roster and
// of the mesh's credentials. Bootures also trade digests of their views, so
// that one that gossip left behind catches up at once (digest.go). Each
// booture signs its own record and catalog with its WireGuard key, and the
// others take from a booture only what it says of itself (sign.go).
//
// The package also holds the pure parts the daemon builds on: the address
// plan (sites inside 10.77.0.0/16 and a ULA /48 derived from the mesh's
// identity), the encodings of node records and invitation tokens, and Plan,
// which turns the roster and the VPN members into the desired netcfg.Config.
// It never touches the operating system's network stack itself.
package mesh

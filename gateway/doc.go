// Package gateway is the front door of a booture on its mesh addresses: an
// HTTP reverse proxy that carries members' requests to the local services of
// plugins, the portal page that lists the mesh's services, and a DNS server
// that names bootures and services (SERVICE.BOOTURE.DOMAIN) and forwards
// other names upstream when there is an upstream.
//
// The daemon owns the data and the gateway only reads it: it builds a State
// (this booture, its network prefixes, the local routes, the mesh-wide
// catalog and the list of bootures) and calls [Gateway.Update] whenever
// something changes. Update validates the State, precomputes every index
// the hot paths need and swaps an immutable snapshot atomically, so
// requests and queries never take a lock and never see half an update.
//
// Who may use a service is decided by the source address of the request
// (see [Network.Classify]): the booture itself and its local members, members
// of other bootures and the bootures ("mesh"), or anyone else ("public", the
// LAN). The DNS server answers only the mesh and the booture itself: it
// refuses public sources (it is never an open resolver for the LAN, nor a
// list of the mesh's names), drops UDP queries that did not arrive by the
// WireGuard interface (Config.MeshInterface: a LAN host can reach the mesh
// addresses and forge a mesh source), and limits each client's rate.
//
// Offline first: nothing here needs the internet. Names of the mesh are
// answered from the snapshot; other names are forwarded only to upstream
// resolvers believed reachable, and answered SERVFAIL at once when none is
// (see [Config.Upstreams] for how upstreams are chosen and why loopback stubs
// are skipped).
package gateway

package members_test

import (
	"fmt"
	"log"
	"net/netip"
	"os"
	"path/filepath"

	"github.com/booture/booture/key"
	"github.com/booture/booture/members"
)

func Example() {
	dir, _ := os.MkdirTemp("", "members-example")
	defer os.RemoveAll(dir)

	site, err := members.ParseSite("10.77.3.0/24", "fd12:3456:789a:3::/64")
	if err != nil {
		log.Fatal(err)
	}
	reg, err := members.Open(filepath.Join(dir, "members.json"), site)
	if err != nil {
		log.Fatal(err)
	}
	defer reg.Close()

	// Alice gets a generated key pair; the private key exists only in
	// priv, to go into her configuration.
	alice, priv, err := reg.Add(members.AddRequest{Name: "alice"})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(alice.Name, alice.IPv4, alice.IPv6, priv != nil)

	// Bob keeps his private key and gives his public key.
	bob, priv, err := reg.Add(members.AddRequest{Name: "bob", PublicKey: "M/0GjzTtTLdGKCVJXx9lm2HwRup6ejiQMy7nO0asFCU=", FullTunnel: true})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(bob.Name, bob.IPv4, bob.IPv6, priv != nil)

	_, _, err = reg.Add(members.AddRequest{Name: "Carol"})
	fmt.Println(err)
	// Output:
	// alice 10.77.3.2 fd12:3456:789a:3::2 true
	// bob 10.77.3.3 fd12:3456:789a:3::3 false
	// adding member: invalid name "Carol": only a-z, 0-9 and '-' are allowed
}

func ExampleRender() {
	site, _ := members.ParseSite("10.77.3.0/24", "fd12:3456:789a:3::/64")
	bootureKey, _ := key.ParsePublicKey("QxZhcswhAhyG/0z11rwPLcGfnsckwp9B7CqQzK5zk1E=")
	memberKey, _ := key.ParsePublicKey("M/0GjzTtTLdGKCVJXx9lm2HwRup6ejiQMy7nO0asFCU=")
	ip4, ip6 := site.Addrs(7)
	m := members.Member{Name: "carol", PublicKey: memberKey, IPv4: ip4, IPv6: ip6}
	srv := members.Server{
		Name:      "diois",
		PublicKey: bootureKey,
		Endpoint:  "[2001:db8::1]:51820",
		Site:      site,
		MeshIPv4:  netip.MustParsePrefix("10.77.0.0/16"),
		MeshIPv6:  netip.MustParsePrefix("fd12:3456:789a::/48"),
	}
	// Carol has her own private key: the configuration has a placeholder.
	text, err := members.Render(members.ConfigFor(m, nil, srv))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Print(text)
	// Output:
	// # booture member carol of diois
	// [Interface]
	// # PrivateKey = (your own private key, whose public key is M/0GjzTtTLdGKCVJXx9lm2HwRup6ejiQMy7nO0asFCU=)
	// Address = 10.77.3.7/32, fd12:3456:789a:3::7/128
	// DNS = 10.77.3.1, fd12:3456:789a:3::1
	//
	// [Peer]
	// PublicKey = QxZhcswhAhyG/0z11rwPLcGfnsckwp9B7CqQzK5zk1E=
	// Endpoint = [2001:db8::1]:51820
	// AllowedIPs = 10.77.0.0/16, fd12:3456:789a::/48
	// PersistentKeepalive = 25
}

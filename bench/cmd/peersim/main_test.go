package main

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/device"

	"github.com/booture/booture/internal/waitfor"
	"github.com/booture/booture/key"
)

// TestDevicesHandshake: two WireGuard devices on peersim's one-packet UDP
// bind and null TUN complete a handshake over loopback, as a simulated
// peer does with the booture under test.
func TestDevicesHandshake(t *testing.T) {
	lo := netip.MustParseAddr("127.0.0.1")
	type dev struct {
		d    *device.Device
		priv key.PrivateKey
		port string
	}
	devs := make([]dev, 2)
	for i := range devs {
		priv, err := key.NewPrivateKey()
		if err != nil {
			t.Fatal(err)
		}
		d := device.NewDevice(newNullTUN(), &udpBind{addr: lo}, device.NewLogger(device.LogLevelSilent, ""))
		t.Cleanup(d.Close)
		if err := d.IpcSet(fmt.Sprintf("private_key=%s\nlisten_port=0\n", hexKey(priv.RevealRaw32()))); err != nil {
			t.Fatal(err)
		}
		if err := d.Up(); err != nil {
			t.Fatal(err)
		}
		devs[i] = dev{d, priv, uapiValue(t, d, "listen_port")}
	}
	a, b := devs[0], devs[1]
	// a knows where b is and keeps the session up; b answers.
	if err := a.d.IpcSet(fmt.Sprintf("public_key=%s\nendpoint=127.0.0.1:%s\npersistent_keepalive_interval=1\nallowed_ip=10.77.2.0/24\n", hexKey(b.priv.Public().Raw32()), b.port)); err != nil {
		t.Fatal(err)
	}
	if err := b.d.IpcSet(fmt.Sprintf("public_key=%s\nallowed_ip=10.77.1.0/24\n", hexKey(a.priv.Public().Raw32()))); err != nil {
		t.Fatal(err)
	}
	waitfor.Cond(t, 10*time.Second, "a handshake", func() bool {
		return uapiValue(t, b.d, "last_handshake_time_sec") != "0"
	})
}

// uapiValue returns the first value of key in the device's UAPI dump.
func uapiValue(t *testing.T, d *device.Device, key string) string {
	t.Helper()
	dump, err := d.IpcGet()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(dump, "\n") {
		if v, ok := strings.CutPrefix(line, key+"="); ok {
			return v
		}
	}
	t.Fatalf("no %s in the device's state", key)
	return ""
}

package outbox

import "testing"

// Addresses that lead inside kho's own network are never called, in any
// of their spellings; public ones are.
func TestRefuseInternal(t *testing.T) {
	for addr, internal := range map[string]bool{
		"127.0.0.1:443": true, "[::1]:443": true, "10.1.2.3:443": true, "172.16.0.1:443": true, "192.168.1.1:443": true,
		"169.254.169.254:80": true, "0.0.0.0:443": true, "100.64.0.1:443": true, "198.18.0.1:443": true, "240.0.0.1:443": true,
		"[::ffff:127.0.0.1]:443": true, "[::127.0.0.1]:443": true, "[64:ff9b::7f00:1]:443": true, "[2002:a00:1::]:443": true,
		"[fec0::1]:443": true, "[::ffff:0:7f00:1]:443": true, "[fd00::1]:443": true, "[fe80::1]:443": true, "224.0.0.1:443": true,
		"203.162.4.191:443": false, "[2001:4860:4860::8888]:443": false, "8.8.8.8:443": false,
	} {
		err := refuseInternal("tcp", addr, nil)
		if (err != nil) != internal {
			t.Errorf("%s: %v, internal %v", addr, err, internal)
		}
	}
}

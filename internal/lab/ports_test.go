package lab

import (
	"net"
	"strconv"
	"testing"
)

func TestPortsCannotRace(t *testing.T) {
	lo, hi, err := ephemeralRange()
	if err != nil {
		t.Fatal(err)
	}
	var a, b portSet
	pa, err := a.take(40)
	if err != nil {
		t.Fatal(err)
	}
	pb, err := b.take(40)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	for _, p := range append(pa, pb...) {
		if seen[p] {
			t.Fatalf("port %d reserved twice: %v and %v", p, pa, pb)
		}
		seen[p] = true
		if p < portLow || p >= portHigh || (p >= lo && p <= hi) {
			t.Fatalf("port %d is outside %d-%d or inside the ephemeral range %d-%d", p, portLow, portHigh-1, lo, hi)
		}
		// Free to bind for the process it is for.
		ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			t.Fatalf("reserved port %d is not free: %v", p, err)
		}
		ln.Close()
	}
	// A port taken by another program is skipped; a released one can be
	// taken again.
	a.release()
	busy, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(pa[0]))
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	var c portSet
	defer c.release()
	for range 50 {
		got, err := c.take(1)
		if err != nil {
			t.Fatal(err)
		}
		if got[0] == pa[0] || seen[got[0]] && !contains(pa, got[0]) {
			t.Fatalf("took port %d: in use, or still reserved by another lab", got[0])
		}
	}
	b.release()
}

func contains(ps []int, p int) bool {
	for _, q := range ps {
		if q == p {
			return true
		}
	}
	return false
}

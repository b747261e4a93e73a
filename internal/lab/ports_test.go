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

// Every Nomad client of every lab gets a block of the dynamic port range
// that no other holds, so no two tasks on loopback are handed one port.
func TestDynamicPortBlocksAreDisjoint(t *testing.T) {
	var a, b portSet
	defer a.release()
	defer b.release()
	type block struct{ lo, hi int }
	var blocks []block
	for _, ps := range []*portSet{&a, &a, &b, &b, &b} {
		lo, hi, err := ps.dynamicBlock()
		if err != nil {
			t.Fatal(err)
		}
		if lo < dynamicLow || hi >= dynamicHigh || hi-lo+1 != dynamicBlockSize {
			t.Fatalf("block %d-%d: want %d ports within Nomad's dynamic range %d-%d", lo, hi, dynamicBlockSize, dynamicLow, dynamicHigh-1)
		}
		for _, o := range blocks {
			if lo <= o.hi && o.lo <= hi {
				t.Fatalf("block %d-%d overlaps %d-%d, held by another client", lo, hi, o.lo, o.hi)
			}
		}
		blocks = append(blocks, block{lo, hi})
	}
	// A released block can be held again: lock it directly to check the
	// lock is gone.
	a.release()
	dir, err := portLockDir()
	if err != nil {
		t.Fatal(err)
	}
	f, ok := lockPort(dir, "dynamic-"+strconv.Itoa((blocks[0].lo-dynamicLow)/dynamicBlockSize))
	if !ok {
		t.Fatalf("block %d-%d is still held after release", blocks[0].lo, blocks[0].hi)
	}
	f.Close()
}

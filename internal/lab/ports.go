package lab

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// Ports for the lab's processes are reserved so that nothing can take one
// between the lab choosing it and the process binding it. (A port chosen by
// listening on port 0 and closing comes from the kernel's ephemeral range,
// from which every outgoing connection also draws its source port: a Nomad
// agent connecting to the server could take the next agent's HTTP port, and
// that agent then exited right after "started client".) So a lab port is:
//   - outside the ephemeral range (/proc/sys/net/ipv4/ip_local_port_range,
//     32768-60999 by default) and below Nomad's dynamic ports (20000-32000,
//     which Nomad hands to tasks): from 10000 to 19999;
//   - held with flock(2) on a file in a per-user directory under /tmp for
//     the lab's life, so two labs (in one test process or several, whatever
//     their $TMPDIR) never share one;
//   - and checked free by binding it.
//
// Every Nomad client of every lab shares loopback, and Nomad hands its
// tasks ports from its dynamic range without asking the kernel: two
// clients handing out the same port would leave a task that cannot bind.
// So each client also gets a block of the dynamic range of its own
// (dynamicBlock), held the same way.
const (
	portLow  = 10000
	portHigh = 20000 // exclusive

	dynamicLow  = 20000 // Nomad's default min_dynamic_port
	dynamicHigh = 32000 // exclusive; Nomad's default max_dynamic_port
	// dynamicBlockSize ports per client: a lab host runs a handful of
	// allocations with one port each.
	dynamicBlockSize = 40
)

// portLockDir is where port locks live, made when missing: the same for
// every process of the user, whatever its $TMPDIR (tests give `spillway
// lab` a TMPDIR of its own).
func portLockDir() (string, error) {
	dir := filepath.Join("/tmp", fmt.Sprintf("spillway-ports-%d", os.Getuid()))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("reserving ports: %w", err)
	}
	return dir, nil
}

// portSet holds the ports one lab reserved.
type portSet struct {
	mu    sync.Mutex
	locks []*os.File
}

// take reserves n ports.
func (ps *portSet) take(n int) ([]int, error) {
	lo, hi, err := ephemeralRange()
	if err != nil {
		return nil, err
	}
	dir, err := portLockDir()
	if err != nil {
		return nil, err
	}
	ps.mu.Lock()
	defer ps.mu.Unlock()
	out := make([]int, 0, n)
	start := portLow + rand.IntN(portHigh-portLow)
	for i := 0; i < portHigh-portLow && len(out) < n; i++ {
		port := portLow + (start-portLow+i)%(portHigh-portLow)
		if port >= lo && port <= hi {
			continue
		}
		f, ok := lockPort(dir, strconv.Itoa(port))
		if !ok {
			continue
		}
		ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err != nil {
			f.Close() // in use by something else
			continue
		}
		ln.Close()
		ps.locks = append(ps.locks, f)
		out = append(out, port)
	}
	if len(out) < n {
		return nil, fmt.Errorf("reserving ports: found %d of %d free ports in %d-%d outside the ephemeral range %d-%d", len(out), n, portLow, portHigh-1, lo, hi)
	}
	return out, nil
}

// dynamicBlock reserves a block of Nomad's dynamic port range for one
// client and returns its first and last port (min_dynamic_port,
// max_dynamic_port).
func (ps *portSet) dynamicBlock() (int, int, error) {
	dir, err := portLockDir()
	if err != nil {
		return 0, 0, err
	}
	ps.mu.Lock()
	defer ps.mu.Unlock()
	blocks := (dynamicHigh - dynamicLow) / dynamicBlockSize
	start := rand.IntN(blocks)
	for i := range blocks {
		b := (start + i) % blocks
		f, ok := lockPort(dir, "dynamic-"+strconv.Itoa(b))
		if !ok {
			continue
		}
		ps.locks = append(ps.locks, f)
		lo := dynamicLow + b*dynamicBlockSize
		return lo, lo + dynamicBlockSize - 1, nil
	}
	return 0, 0, fmt.Errorf("reserving dynamic ports: all %d blocks of %d-%d are held", blocks, dynamicLow, dynamicHigh-1)
}

// release gives the ports back, once the lab's processes are stopped.
func (ps *portSet) release() {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	for _, f := range ps.locks {
		f.Close() // closing drops the flock
	}
	ps.locks = nil
}

// lockPort takes the lock of one port (or block) without waiting.
func lockPort(dir string, name string) (*os.File, bool) {
	f, err := os.OpenFile(filepath.Join(dir, name), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, false
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, false
	}
	return f, true
}

// ephemeralRange is the kernel's range of ports for outgoing connections
// and port-0 binds.
func ephemeralRange() (int, int, error) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if errors.Is(err, os.ErrNotExist) {
		return 32768, 60999, nil // Linux's default
	}
	if err != nil {
		return 0, 0, fmt.Errorf("reading the ephemeral port range: %w", err)
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 0, 0, fmt.Errorf("reading the ephemeral port range: %q", b)
	}
	lo, err1 := strconv.Atoi(f[0])
	hi, err2 := strconv.Atoi(f[1])
	if err1 != nil || err2 != nil {
		return 0, 0, fmt.Errorf("reading the ephemeral port range: %q", b)
	}
	return lo, hi, nil
}

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
//   - held with flock(2) on a file in a per-user directory under $TMPDIR
//     for the lab's life, so two labs (two test processes) never share one;
//   - and checked free by binding it.
const (
	portLow  = 10000
	portHigh = 20000 // exclusive
)

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
	dir := filepath.Join(os.TempDir(), fmt.Sprintf("spillway-ports-%d", os.Getuid()))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("reserving ports: %w", err)
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
		f, ok := lockPort(dir, port)
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

// release gives the ports back, once the lab's processes are stopped.
func (ps *portSet) release() {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	for _, f := range ps.locks {
		f.Close() // closing drops the flock
	}
	ps.locks = nil
}

// lockPort takes the lock of one port without waiting.
func lockPort(dir string, port int) (*os.File, bool) {
	f, err := os.OpenFile(filepath.Join(dir, strconv.Itoa(port)), os.O_CREATE|os.O_RDWR, 0o600)
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

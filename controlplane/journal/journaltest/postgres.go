package journaltest

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/spillwayhq/spillway/internal/tools"
	"github.com/spillwayhq/spillway/internal/tools/toolstest"
)

// PostgresServer is a private PostgreSQL cluster for one test: initdb in a
// temporary directory, the server on a free loopback port, trust
// authentication for its one superuser. It is stopped, and its directory
// removed, when the test ends; the server also dies with the test binary
// (Pdeathsig), and its backends follow their postmaster.
type PostgresServer struct {
	// Addr is 127.0.0.1:port.
	Addr string
	// User is the superuser.
	User string

	dir, data, bin, log string
	cred                *syscall.Credential
	cmd                 *exec.Cmd
	done                chan struct{}
	dbSeq               atomic.Int64
}

// StartPostgres starts a cluster for tb. Without PostgreSQL installed it
// skips tb, or fails it when CI=true (toolstest.Need). As root, initdb and
// postgres run as the "postgres" system user (they refuse to run as root).
func StartPostgres(tb testing.TB) *PostgresServer {
	tb.Helper()
	toolstest.Need(tb, tools.Postgres)
	bin, err := tools.PostgresBin()
	if err != nil {
		tb.Fatalf("finding PostgreSQL: %v", err)
	}
	var cred *syscall.Credential
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			tb.Fatalf("running PostgreSQL as root needs the postgres system user (Debian's package makes it): %v", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	}
	// Not t.TempDir: its parents are private to root, and postgres must
	// reach its data directory.
	dir, err := os.MkdirTemp("", "spillway-pg-")
	if err != nil {
		tb.Fatal(err)
	}
	s := &PostgresServer{User: "spillway", dir: dir, log: filepath.Join(dir, "postgres.log")}
	tb.Cleanup(func() {
		s.stop()
		if tb.Failed() {
			if b, err := os.ReadFile(s.log); err == nil {
				tb.Logf("postgres log (%s):\n%s", s.log, tail(b, 40))
			}
		}
		_ = os.RemoveAll(dir)
	})
	if cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			tb.Fatal(err)
		}
	}
	data := filepath.Join(dir, "data")
	initdb := exec.Command(filepath.Join(bin, "initdb"), "-D", data, "-U", s.User, "--auth=trust",
		"--encoding=UTF8", "--locale=C", "--no-sync", "--no-instructions")
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGKILL}
	initdb.Dir = dir
	if out, err := initdb.CombinedOutput(); err != nil {
		tb.Fatalf("initdb: %v\n%s", err, out)
	}

	port, err := freePort()
	if err != nil {
		tb.Fatal(err)
	}
	s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	s.bin, s.data, s.cred = bin, data, cred
	s.start(tb)
	return s
}

// start runs the postmaster on s.Addr and waits until it takes connections.
func (s *PostgresServer) start(tb testing.TB) {
	tb.Helper()
	logf, err := os.OpenFile(s.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		tb.Fatal(err)
	}
	defer logf.Close()
	if s.cred != nil {
		_ = os.Chown(s.log, int(s.cred.Uid), int(s.cred.Gid))
	}
	_, port, _ := net.SplitHostPort(s.Addr)
	// fsync stays on: the contract includes durability.
	s.cmd = exec.Command(filepath.Join(s.bin, "postgres"), "-D", s.data, "-h", "127.0.0.1", "-p", port,
		"-k", s.dir, "-c", "max_connections=100", "-c", "shared_buffers=16MB")
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	s.cmd.Dir = s.dir
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred, Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := s.cmd.Start(); err != nil {
		tb.Fatalf("starting postgres: %v", err)
	}
	done := make(chan struct{})
	s.done = done
	cmd := s.cmd
	go func() { _ = cmd.Wait(); close(done) }()

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for {
		conn, err := pgx.Connect(ctx, s.DSN("postgres"))
		if err == nil {
			conn.Close(ctx)
			return
		}
		select {
		case <-done:
			b, _ := os.ReadFile(s.log)
			tb.Fatalf("postgres exited while starting:\n%s", tail(b, 40))
		case <-ctx.Done():
			tb.Fatalf("postgres did not accept connections on %s within 60s: %v", s.Addr, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Crash kills the server and its backends outright (SIGKILL, as a power
// loss would leave it), then starts it again on the same address: what a
// client was told is committed must still be there.
func (s *PostgresServer) Crash(tb testing.TB) {
	tb.Helper()
	// Backends call setsid, so the postmaster's group is not all of them:
	// kill its children by parent, then the postmaster.
	pm := s.cmd.Process.Pid
	kids := children(pm)
	for _, pid := range kids {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	_ = syscall.Kill(-pm, syscall.SIGKILL)
	<-s.done
	// A new postmaster refuses the data directory while any old process
	// still has the shared memory attached.
	for i := 0; ; i++ {
		alive := 0
		for _, pid := range kids {
			if running(pid) {
				alive++
			}
		}
		if alive == 0 {
			break
		}
		if i == 200 {
			tb.Fatalf("%d postgres processes outlived SIGKILL for 10s", alive)
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.start(tb)
}

// DSN is the connection string of database db on the server.
func (s *PostgresServer) DSN(db string) string {
	return fmt.Sprintf("postgres://%s@%s/%s?sslmode=disable", s.User, s.Addr, db)
}

// NewDatabase creates an empty database and returns its DSN.
func (s *PostgresServer) NewDatabase(tb testing.TB) string {
	tb.Helper()
	name := fmt.Sprintf("journal_%d", s.dbSeq.Add(1))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.DSN("postgres"))
	if err != nil {
		tb.Fatalf("connecting to postgres: %v", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		tb.Fatalf("creating database %s: %v", name, err)
	}
	return s.DSN(name)
}

// Pid is the postmaster's process ID.
func (s *PostgresServer) Pid() int { return s.cmd.Process.Pid }

// stop shuts the server down fast (SIGINT: active transactions roll back,
// committed ones are on disk), then kills its process group if it lingers.
func (s *PostgresServer) stop() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-s.done:
	case <-time.After(15 * time.Second):
		_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		<-s.done
	}
	// Backends exit with their postmaster; make sure none is left.
	_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
}

// children lists the processes whose parent is pid.
func children(pid int) []int {
	var out []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		child, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if ppid, _, ok := procStat(child); ok && ppid == pid {
			out = append(out, child)
		}
	}
	return out
}

// running reports whether pid exists and is not a zombie.
func running(pid int) bool {
	_, state, ok := procStat(pid)
	return ok && state != 'Z' && state != 'X'
}

// procStat reads a process's parent and state from /proc/<pid>/stat.
func procStat(pid int) (ppid int, state byte, ok bool) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0, 0, false
	}
	// "pid (comm) state ppid ...": comm may hold spaces and parentheses.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return 0, 0, false
	}
	f := bytes.Fields(b[i+2:])
	if len(f) < 2 || len(f[0]) != 1 {
		return 0, 0, false
	}
	ppid, err = strconv.Atoi(string(f[1]))
	return ppid, f[0][0], err == nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func tail(b []byte, n int) string {
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

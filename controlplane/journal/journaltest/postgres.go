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

	"github.com/spillwayhq/spillway/controlplane/tools"
	"github.com/spillwayhq/spillway/controlplane/tools/toolstest"
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

	dir   string
	cmd   *exec.Cmd
	done  chan struct{}
	log   string
	dbSeq atomic.Int64
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
	s := &PostgresServer{User: "spillway", dir: dir, log: filepath.Join(dir, "postgres.log"), done: make(chan struct{})}
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
	logf, err := os.Create(s.log)
	if err != nil {
		tb.Fatal(err)
	}
	defer logf.Close()
	if cred != nil {
		_ = os.Chown(s.log, int(cred.Uid), int(cred.Gid))
	}
	// fsync stays on: the contract includes durability.
	s.cmd = exec.Command(filepath.Join(bin, "postgres"), "-D", data, "-h", "127.0.0.1", "-p", strconv.Itoa(port),
		"-k", dir, "-c", "max_connections=100", "-c", "shared_buffers=16MB")
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	s.cmd.Dir = dir
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := s.cmd.Start(); err != nil {
		tb.Fatalf("starting postgres: %v", err)
	}
	go func() { _ = s.cmd.Wait(); close(s.done) }()

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for {
		conn, err := pgx.Connect(ctx, s.DSN("postgres"))
		if err == nil {
			conn.Close(ctx)
			return s
		}
		select {
		case <-s.done:
			b, _ := os.ReadFile(s.log)
			tb.Fatalf("postgres exited while starting:\n%s", tail(b, 40))
		case <-ctx.Done():
			tb.Fatalf("postgres did not accept connections on %s within 60s: %v", s.Addr, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
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

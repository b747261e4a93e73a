package lab

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// markerEnv is set on every process the lab starts. Nomad passes it on to
// its executors and tasks, so every descendant is findable in /proc, even
// one that was orphaned.
const markerEnv = "SPILLWAY_LAB"

// ownerFile in a lab directory holds the PID of the process that runs it.
const ownerFile = "owner.pid"

// process is one program the lab runs, with its output in a log file.
type process struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{}
	err     error // set before done is closed
}

var subreaperOnce sync.Once

// becomeSubreaper makes this process adopt orphaned descendants, so a
// Nomad executor whose agent died is still ours to find and stop.
func becomeSubreaper() {
	subreaperOnce.Do(func() { _ = unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) })
}

// startProcess starts bin with args, logging to dir/<name>.log. env is
// added to the environment, and drop names variables to remove.
func (l *Lab) startProcess(name, bin string, args, env, drop []string) (*process, error) {
	logPath := filepath.Join(l.Dir, "logs", name+".log")
	if err := os.MkdirAll(filepath.Dir(logPath), 0o755); err != nil {
		return nil, err
	}
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = l.Dir
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.Env = append(filterEnv(os.Environ(), drop), append([]string{markerEnv + "=" + l.Dir}, env...)...)
	// Its own process group keeps the terminal's Ctrl-C for the lab, which
	// stops everything in order; Pdeathsig kills it if the lab itself dies.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &process{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		logFile.Close()
		close(p.done)
	}()
	l.mu.Lock()
	l.procs = append(l.procs, p)
	l.mu.Unlock()
	return p, nil
}

func filterEnv(env, drop []string) []string {
	out := env[:0:0]
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		keep := k != markerEnv
		for _, d := range drop {
			if k == d {
				keep = false
			}
		}
		if keep {
			out = append(out, kv)
		}
	}
	return out
}

// exited reports whether p has stopped, with its error.
func (p *process) exited() (bool, error) {
	select {
	case <-p.done:
		if p.err == nil {
			return true, errors.New("exited")
		}
		return true, p.err
	default:
		return false, nil
	}
}

// tail returns the last n lines of the process's log.
func (p *process) tail(n int) string {
	data, err := os.ReadFile(p.logPath)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// stop asks p's process group to terminate, then kills it after grace.
func (p *process) stop(grace time.Duration) {
	if ok, _ := p.exited(); ok {
		return
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGCONT) // a frozen process acts on it
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
}

// markedProcesses lists the PIDs whose environment carries the lab marker
// for a lab directory accepted by match.
func markedProcesses(match func(dir string) bool) []int { return pidsWithEnv(markerEnv, match) }

// pidsWithEnv lists the PIDs (other than this process) whose environment
// sets the variable name to a value that match accepts.
func pidsWithEnv(name string, match func(value string) bool) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	self := os.Getpid()
	prefix := []byte(name + "=")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		env, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err != nil {
			continue
		}
		for _, kv := range bytes.Split(env, []byte{0}) {
			if v, ok := bytes.CutPrefix(kv, prefix); ok {
				if match(string(v)) {
					pids = append(pids, pid)
				}
				break
			}
		}
	}
	return pids
}

// killMarked kills every process marked for a matching lab directory until
// none is left or the timeout passes, and reaps those that were our children.
func killMarked(match func(dir string) bool, timeout time.Duration) []int {
	var killed []int
	deadline := time.Now().Add(timeout)
	for {
		pids := markedProcesses(match)
		if len(pids) == 0 {
			break
		}
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			killed = append(killed, pid)
		}
		reap(pids)
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Descendants killed above may have been re-parented to us (the
	// subreaper) only after their parent died: reap them now.
	reap(killed)
	return killed
}

// reap collects the exit status of the given PIDs that are our children
// (adopted as subreaper), so they do not linger as zombies. A child that is
// still dying gets a moment.
func reap(pids []int) {
	self := os.Getpid()
	for _, pid := range pids {
		if parentOf(pid) != self {
			continue
		}
		var ws unix.WaitStatus
		for range 20 {
			if got, _ := unix.Wait4(pid, &ws, unix.WNOHANG, nil); got != 0 {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

func parentOf(pid int) int {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "PPid:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(v))
			return n
		}
	}
	return 0
}

// SweepStale kills processes left behind by labs whose owner is gone (a lab
// killed with SIGKILL, or a test binary that timed out). It returns the
// PIDs it killed.
func SweepStale() []int {
	return killMarked(func(dir string) bool {
		data, err := os.ReadFile(filepath.Join(dir, ownerFile))
		if err != nil {
			return true // the lab's directory is gone: nobody owns it
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
		if err != nil || pid <= 0 {
			return true
		}
		return syscall.Kill(pid, 0) == syscall.ESRCH
	}, 5*time.Second)
}

// Processes lists the PIDs of live processes started by the lab in dir,
// their descendants included. After Stop it is empty.
func Processes(dir string) []int {
	var live []int
	for _, pid := range markedProcesses(func(d string) bool { return d == dir }) {
		if !isZombie(pid) {
			live = append(live, pid)
		}
	}
	return live
}

func isZombie(pid int) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	// The state follows the parenthesised command name.
	if i := bytes.LastIndexByte(data, ')'); i >= 0 && i+2 < len(data) {
		return data[i+2] == 'Z'
	}
	return false
}

package scalesim

import (
	"bufio"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// usage is the process's CPU time so far and its peak resident memory
// since the last resetPeak.
func usage() (cpu time.Duration, peakRSS int64) {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		cpu = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
		peakRSS = ru.Maxrss << 10 // kB on Linux
	}
	// VmHWM, unlike ru_maxrss, starts again at resetPeak.
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return cpu, peakRSS
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			if kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64); err == nil {
				peakRSS = kb << 10
			}
		}
	}
	return cpu, peakRSS
}

// resetPeak starts the peak resident memory again from what the process
// holds now (Linux: clear_refs 5), so each scenario of a run reports its
// own peak.
func resetPeak() {
	_ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0)
}

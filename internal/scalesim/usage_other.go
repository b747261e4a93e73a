//go:build !linux

package scalesim

import "time"

// usage is unknown off Linux: the figures say 0.
func usage() (cpu time.Duration, peakRSS int64) { return 0, 0 }

func resetPeak() {}

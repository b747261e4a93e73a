// Package policies owns the scaling policy language of Spillway: the YAML
// schema (apiVersion spillway/v1, kind ScalingPolicy), strict loading with
// file:line:column errors, validation that reports every problem at once,
// and the strategies that turn metric values into scaling decisions.
//
// Loading is the only fallible step. [LoadFiles] and [LoadDir] read, decode
// and validate everything and return either a complete immutable [Set] or
// every error, so a reloader can swap sets atomically and keep the old one
// on failure.
//
// Everything after loading is pure: a [Strategy] and [Evaluate] are
// functions of (policy, metric values with timestamps, current count, now).
// They do no I/O and read no clock, so they are table-tested. The I/O around
// them (Prometheus, Nomad) lives in controlplane.
//
// Two rules hold everywhere:
//   - the safest vote wins: more capacity beats less, and "no change" wins
//     only when every check agrees;
//   - a policy never scales in on missing, stale or erroneous data.
package policies

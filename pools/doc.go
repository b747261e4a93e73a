// Package pools owns where Spillway's capacity comes from and how it is
// accounted for:
//
//   - the pool configuration: [BusinessUnit], [SharedPool], [CloudPool]
//     and [Link] documents (apiVersion spillway/v1), loaded strictly with
//     every error located as file:line:column: field.path: message
//     ([LoadFiles]);
//   - the capacity ladder ([Ladder]): a pure function that orders the tiers
//     own idle → shared internal → warm cloud → cold cloud for a service and
//     a deadline, puts no more allocations behind a [Link] than it carries,
//     and [OfferingMemory], which remembers offerings that just failed;
//   - the time-to-ready estimator ([EstimateTimeToReady]);
//   - the lending ledger ([Ledger]): borrow, extend, reclaim and return of
//     hosts, with its invariants enforced in one place, made durable through
//     a [LedgerStore] before any change takes effect, verified against what
//     Nomad says ([Ledger.Verify]) and charged back in host-hours
//     ([Ledger.Chargeback]);
//   - the capacity arithmetic ([Account]) behind the per-tier capacity
//     report, on Nomad's nodes as [NodeOf] converts them.
//
// This package never imports controlplane. It is pure: no clock of its own
// (every function that needs the time takes it), no I/O except through the
// LedgerStore it is given. It imports Nomad's api package for its types
// only: [NodeOf], the one conversion of a Nomad node into a [NodeUsage],
// lives beside the type it makes, where both the control plane and
// providers/internalpool (which may not import controlplane) can call it.
package pools

//! Scheduler v1: a pure function from a pod and node snapshots to a node, or the reasons it fits nowhere. (api helper: stub.)

//! Pod lifecycle on the worker: pure state machine plus the sync loop that drives the runtime.

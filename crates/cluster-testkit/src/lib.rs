//! Test support for wsring's cluster backends, kept out of the production
//! crates: every backend crate (and the binary's integration tests) takes it
//! as a dev-dependency only, so none of it is compiled into a release build.
//!
//! * [`conformance`] — one suite of behaviours every backend must show, run
//!   against memory, Redis, NATS and RabbitMQ alike
//!   ([`conformance_suite!`]), plus [`unique_ns`](conformance::unique_ns)
//!   and [`skip_or_fail`](conformance::skip_or_fail) for isolating and
//!   skipping tests on the shared servers.
//! * [`fault`] — a TCP proxy that cuts connections on demand, and a
//!   throwaway PKI with a TLS-terminating proxy for the TLS runs.
//! * [`local_clusters`] — SIGKILL and recovery on the local clusters of
//!   `scripts/test-clusters`.

pub mod conformance;
pub mod fault;
pub mod local_clusters;

//! NATS backend for wsring (work in progress).

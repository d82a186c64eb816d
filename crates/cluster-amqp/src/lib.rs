//! RabbitMQ broker backend for wsring (work in progress).

//! The master: SQLite store (truth), HTTP API, scheduler, controllers, MQTT bus and broker.

pub mod scheduler;

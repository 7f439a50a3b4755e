//! Connectors own the clients and programs steps talk to. They know nothing of playbooks.

pub mod child;
pub mod cluster;
pub mod demo;
pub mod guard;
pub mod pg_tools;
pub mod pgbackrest;
pub mod postgres;
pub mod redis;
pub mod secrets_manager;
pub mod store;

/// An HTTP status that trying the same request again will not change: a 4xx other than 408
/// (request timeout) and 429 (too many requests). 5xx and those two are transient.
pub fn permanent_http_status(status: u16) -> bool {
    (400..500).contains(&status) && status != 408 && status != 429
}

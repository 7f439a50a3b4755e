//! Connectors own the clients and programs steps talk to. They know nothing of playbooks.

pub mod child;
pub mod cluster;
pub mod demo;
pub mod guard;
pub mod pg_tools;
pub mod postgres;
pub mod redis;
pub mod store;

//! Connectors own the clients and programs steps talk to. They know nothing of playbooks.

pub mod pg_tools;

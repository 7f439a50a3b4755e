//! The JSON Schema of the playbook language, generated from the Rust types: the raw
//! top-level and common step types, and each kind's parameter struct.

use schemars::{Schema, SchemaGenerator};

use crate::validate::raw::PlaybookRaw;

/// The whole schema, as committed in `schemas/playbook.schema.json`.
pub fn playbook_schema() -> Schema {
    let generator = SchemaGenerator::new(schemars::generate::SchemaSettings::draft2020_12());
    generator.into_root_schema_for::<PlaybookRaw>()
}

pub fn playbook_schema_json() -> String {
    let mut text = serde_json::to_string_pretty(&playbook_schema()).unwrap_or_default();
    text.push('\n');
    text
}

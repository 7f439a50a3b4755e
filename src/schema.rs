//! The JSON Schema of the playbook language, generated from the Rust types: the raw
//! top-level and common step types, and each kind's parameter struct.

use schemars::{Schema, SchemaGenerator, json_schema};
use serde_json::{Map, Value};

use crate::steps::Kind;
use crate::validate::raw::{CommonRaw, PlaybookRaw};

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

/// A step is one object with the common keys, `kind` naming one of the kinds, and that kind's
/// parameters: `oneOf` the kinds, each closed to unknown keys.
pub(crate) fn steps_schema(generator: &mut SchemaGenerator) -> Schema {
    let common = generator.root_schema_for::<CommonRaw>();
    let mut variants = Vec::new();
    for kind in Kind::ALL {
        let params = kind.parameter_schema(generator);
        let mut properties = Map::new();
        let mut required: Vec<Value> = Vec::new();
        for part in [&common, &params] {
            if let Some(Value::Object(props)) = part.get("properties") {
                properties.extend(props.clone());
            }
            if let Some(Value::Array(names)) = part.get("required") {
                required.extend(names.iter().cloned());
            }
        }
        properties.insert(
            "kind".into(),
            json_schema!({ "const": kind.name() }).to_value(),
        );
        let mut variant = Map::new();
        variant.insert("type".into(), "object".into());
        variant.insert("title".into(), kind.name().into());
        if let Some(description) = params.get("description") {
            variant.insert("description".into(), description.clone());
        }
        variant.insert("properties".into(), Value::Object(properties));
        variant.insert("required".into(), Value::Array(required));
        variant.insert("additionalProperties".into(), false.into());
        variants.push(Value::Object(variant));
        // Definitions a kind refers to ($defs) are hoisted into the generator's own.
        if let Some(Value::Object(defs)) = params.get("$defs") {
            for (name, schema) in defs {
                if let Ok(schema) = Schema::try_from(schema.clone()) {
                    generator
                        .definitions_mut()
                        .insert(name.clone(), schema.to_value());
                }
            }
        }
    }
    if let Some(Value::Object(defs)) = common.get("$defs") {
        for (name, schema) in defs {
            generator
                .definitions_mut()
                .insert(name.clone(), schema.clone());
        }
    }
    json_schema!({
        "type": "array",
        "items": { "oneOf": variants }
    })
}

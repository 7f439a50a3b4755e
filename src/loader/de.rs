//! serde's view of a positioned YAML tree.
//!
//! The raw playbook types derive `Deserialize`; this deserializer feeds them from a [`Node`]
//! so that every error carries the position of the node it is about. Unknown keys are not
//! fatal: they are collected (with a "did you mean") and skipped, so one misspelt key does
//! not hide the next error.

use std::cell::RefCell;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IntoDeserializer, Visitor};

use super::node::{Node, Value};
use crate::diagnostic::Pos;
use crate::diagnostic::did_you_mean;

/// An error found while reading a node into a raw type.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct DeError {
    pub(crate) pos: Pos,
    pub(crate) len: usize,
    pub(crate) message: String,
    pub(crate) help: Option<String>,
}

impl DeError {
    pub(crate) fn at(node: &Node, message: impl Into<String>) -> Self {
        DeError {
            pos: node.pos,
            len: node.len,
            message: message.into(),
            help: None,
        }
    }

    fn placed(mut self, node: &Node) -> Self {
        if self.pos.line == 0 {
            self.pos = node.pos;
            self.len = node.len;
        }
        self
    }
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DeError {
            pos: Pos::default(),
            len: 0,
            message: msg.to_string(),
            help: None,
        }
    }

    fn invalid_type(unexpected: de::Unexpected, expected: &dyn de::Expected) -> Self {
        Self::custom(format_args!(
            "expected {}, found {}",
            plain_expected(&expected.to_string()),
            plain_unexpected(unexpected)
        ))
    }

    fn invalid_value(unexpected: de::Unexpected, expected: &dyn de::Expected) -> Self {
        Self::custom(format_args!(
            "expected {}, found {}",
            plain_expected(&expected.to_string()),
            plain_unexpected(unexpected)
        ))
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        let mut error = Self::custom(format_args!(
            "unknown value `{variant}`, expected one of: {}",
            expected.join(", ")
        ));
        error.help = did_you_mean(variant, expected.iter().copied());
        error
    }

    fn missing_field(field: &'static str) -> Self {
        Self::custom(format_args!("missing required key `{field}`"))
    }
}

/// serde names primitive types the Rust way; playbook authors read YAML.
fn plain_expected(expected: &str) -> String {
    match expected {
        "u8" | "u16" | "u32" | "u64" | "usize" => "a non-negative integer".into(),
        "i8" | "i16" | "i32" | "i64" | "isize" => "an integer".into(),
        "f32" | "f64" => "a number".into(),
        "a boolean" | "bool" => "true or false".into(),
        "a sequence" => "a list".into(),
        "a map" => "a mapping".into(),
        other => other.to_owned(),
    }
}

fn plain_unexpected(unexpected: de::Unexpected) -> String {
    use de::Unexpected::*;
    match unexpected {
        Bool(b) => format!("`{b}`"),
        Unsigned(n) => format!("the number `{n}`"),
        Signed(n) => format!("the number `{n}`"),
        Float(n) => format!("the number `{n}`"),
        Str(s) => format!("`{s}`"),
        Unit | Option => "nothing".into(),
        Seq => "a list".into(),
        Map => "a mapping".into(),
        other => other.to_string(),
    }
}

/// Unknown keys found while reading, collected instead of failing.
#[derive(Default)]
pub(crate) struct Collector {
    pub(crate) errors: RefCell<Vec<DeError>>,
}

/// Reads `T` from `node`. Keys listed in `also_allowed` are accepted (and skipped) at the top
/// level: a step's mapping holds both the common keys and its kind's parameters.
pub(crate) fn from_node<'a, T: serde::Deserialize<'a>>(
    node: &'a Node,
    collector: &'a Collector,
    also_allowed: &'a [&'static str],
) -> Result<T, DeError> {
    T::deserialize(NodeDeserializer {
        node,
        collector,
        also_allowed,
    })
}

/// The field names a derived struct accepts, as serde itself lists them.
pub(crate) fn fields_of<'a, T: serde::Deserialize<'a>>() -> &'static [&'static str] {
    match T::deserialize(FieldsProbe) {
        Err(ProbeResult(fields)) => fields,
        Ok(_) => &[],
    }
}

#[derive(Debug)]
struct ProbeResult(&'static [&'static str]);

impl fmt::Display for ProbeResult {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("probe")
    }
}
impl std::error::Error for ProbeResult {}
impl de::Error for ProbeResult {
    fn custom<T: fmt::Display>(_: T) -> Self {
        ProbeResult(&[])
    }
}

struct FieldsProbe;

impl<'de> Deserializer<'de> for FieldsProbe {
    type Error = ProbeResult;
    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, ProbeResult> {
        Err(ProbeResult(&[]))
    }
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, ProbeResult> {
        Err(ProbeResult(fields))
    }
    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map enum identifier ignored_any
    }
}

/// The struct name the raw `Spanned<T>` asks for, to receive its node's position.
pub(crate) const SPANNED: &str = "$drillbook::Spanned";
pub(crate) const SPANNED_FIELDS: &[&str] = &["$line", "$column", "$offset", "$len", "$value"];

#[derive(Clone, Copy)]
struct NodeDeserializer<'a> {
    node: &'a Node,
    collector: &'a Collector,
    also_allowed: &'a [&'static str],
}

impl<'a> NodeDeserializer<'a> {
    fn child(&self, node: &'a Node) -> Self {
        NodeDeserializer {
            node,
            collector: self.collector,
            also_allowed: &[],
        }
    }
}

impl<'de> Deserializer<'de> for NodeDeserializer<'de> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let result = match &self.node.value {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(*b),
            Value::Int(i) => visitor.visit_i64(*i),
            Value::Float(f) => visitor.visit_f64(*f),
            Value::Str(s) => visitor.visit_borrowed_str(s),
            Value::Seq(items) => visitor.visit_seq(SeqAccess {
                items: items.iter(),
                parent: self,
            }),
            Value::Map(entries) => visitor.visit_map(MapAccess {
                entries: entries.iter(),
                value: None,
                parent: self,
            }),
        };
        result.map_err(|e: DeError| e.placed(self.node))
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.node.value {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    /// Scalars are accepted as text where text is expected (`port: 5432` into a string), the
    /// way YAML authors expect; lists and mappings are not.
    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let result = match &self.node.value {
            Value::Str(s) => visitor.visit_borrowed_str(s),
            Value::Int(i) => visitor.visit_string(i.to_string()),
            Value::Float(f) => visitor.visit_string(f.to_string()),
            Value::Bool(b) => visitor.visit_string(b.to_string()),
            _ => return self.deserialize_any(visitor),
        };
        result.map_err(|e: DeError| e.placed(self.node))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        if name == SPANNED {
            return visitor
                .visit_map(SpannedAccess {
                    parent: self,
                    index: 0,
                })
                .map_err(|e| e.placed(self.node));
        }
        let Value::Map(entries) = &self.node.value else {
            return self.deserialize_any(visitor);
        };
        let mut known = Vec::with_capacity(entries.len());
        for entry in entries {
            let key = entry.0.as_str().unwrap_or_default();
            if fields.contains(&key) {
                known.push(entry);
            } else if !self.also_allowed.contains(&key) {
                let mut error = DeError::at(&entry.0, format!("unknown key `{key}`"));
                let candidates = fields.iter().chain(self.also_allowed).copied();
                error.help = did_you_mean(key, candidates).or_else(|| {
                    let mut all: Vec<&str> =
                        fields.iter().chain(self.also_allowed).copied().collect();
                    all.sort_unstable();
                    Some(format!("expected one of: {}", all.join(", ")))
                });
                self.collector.errors.borrow_mut().push(error);
            }
        }
        visitor
            .visit_map(MapAccess {
                entries: known.into_iter(),
                value: None,
                parent: self,
            })
            .map_err(|e| e.placed(self.node))
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        match &self.node.value {
            Value::Str(s) => visitor
                .visit_enum(s.as_str().into_deserializer())
                .map_err(|e: DeError| e.placed(self.node)),
            _ => Err(DeError::at(
                self.node,
                format!("expected a name, found {}", self.node.value.describe()),
            )),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        visitor.visit_newtype_struct(self)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char
        bytes byte_buf unit unit_struct seq tuple
        tuple_struct map identifier ignored_any
    }
}

struct SeqAccess<'a, I> {
    items: I,
    parent: NodeDeserializer<'a>,
}

impl<'de, I: Iterator<Item = &'de Node>> de::SeqAccess<'de> for SeqAccess<'de, I> {
    type Error = DeError;
    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        match self.items.next() {
            Some(item) => seed
                .deserialize(self.parent.child(item))
                .map(Some)
                .map_err(|e| e.placed(item)),
            None => Ok(None),
        }
    }
}

struct MapAccess<'a, I> {
    entries: I,
    value: Option<&'a Node>,
    parent: NodeDeserializer<'a>,
}

impl<'de, I: Iterator<Item = &'de (Node, Node)>> de::MapAccess<'de> for MapAccess<'de, I> {
    type Error = DeError;
    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        match self.entries.next() {
            Some((key, value)) => {
                self.value = Some(value);
                seed.deserialize(self.parent.child(key))
                    .map(Some)
                    .map_err(|e| e.placed(key))
            }
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        let value = self
            .value
            .take()
            .ok_or_else(|| de::Error::custom("value requested before key"))?;
        seed.deserialize(self.parent.child(value))
            .map_err(|e| e.placed(value))
    }
}

/// Hands a `Spanned<T>` its node's position, then the node itself.
struct SpannedAccess<'a> {
    parent: NodeDeserializer<'a>,
    index: usize,
}

impl<'de> de::MapAccess<'de> for SpannedAccess<'de> {
    type Error = DeError;
    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        match SPANNED_FIELDS.get(self.index) {
            Some(field) => seed.deserialize((*field).into_deserializer()).map(Some),
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        let node = self.parent.node;
        let index = self.index;
        self.index += 1;
        match index {
            0 => seed.deserialize((node.pos.line as u64).into_deserializer()),
            1 => seed.deserialize((node.pos.column as u64).into_deserializer()),
            2 => seed.deserialize((node.pos.offset as u64).into_deserializer()),
            3 => seed.deserialize((node.len as u64).into_deserializer()),
            _ => seed.deserialize(NodeDeserializer {
                node,
                collector: self.parent.collector,
                also_allowed: self.parent.also_allowed,
            }),
        }
    }
}

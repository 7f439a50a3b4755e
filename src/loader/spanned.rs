use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};

use super::de::{SPANNED, SPANNED_FIELDS};
use crate::diagnostic::Pos;

/// A raw value with the place it was written, so validation can point at it.
#[derive(Clone, Debug)]
pub struct Spanned<T> {
    pub value: T,
    pub pos: Pos,
    pub len: usize,
}

impl<T> Spanned<T> {
    pub fn new(value: T, pos: Pos, len: usize) -> Self {
        Spanned { value, pos, len }
    }
}

impl<T: PartialEq> PartialEq for Spanned<T> {
    fn eq(&self, other: &Self) -> bool {
        self.value == other.value
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Spanned<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_struct(SPANNED, SPANNED_FIELDS, SpannedVisitor(PhantomData))
    }
}

struct SpannedVisitor<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de>> Visitor<'de> for SpannedVisitor<T> {
    type Value = Spanned<T>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a positioned value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Spanned<T>, A::Error> {
        let mut numbers = [0u64; 4];
        for slot in &mut numbers {
            map.next_key::<de::IgnoredAny>()?;
            *slot = map.next_value()?;
        }
        map.next_key::<de::IgnoredAny>()?;
        let value = map.next_value()?;
        Ok(Spanned {
            value,
            pos: Pos {
                line: numbers[0] as usize,
                column: numbers[1] as usize,
                offset: numbers[2] as usize,
            },
            len: numbers[3] as usize,
        })
    }
}

impl<T: schemars::JsonSchema> schemars::JsonSchema for Spanned<T> {
    fn inline_schema() -> bool {
        T::inline_schema()
    }
    fn schema_name() -> std::borrow::Cow<'static, str> {
        T::schema_name()
    }
    fn schema_id() -> std::borrow::Cow<'static, str> {
        T::schema_id()
    }
    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        T::json_schema(generator)
    }
}

impl<T: serde::Serialize> serde::Serialize for Spanned<T> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.value.serialize(serializer)
    }
}

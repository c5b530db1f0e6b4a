//! JSON read into template values with objects kept in input order.
//!
//! Hand-written because llama.cpp passes JSON objects to the template in the order of the input
//! (nlohmann `ordered_json`), which `tojson` and `items()` expose; `minijinja::Value::from_serialize`
//! of a `serde_json::Value` gets them sorted unless serde_json's `preserve_order` is on for the
//! whole build, so a small serde visitor builds order-keeping maps instead.

use std::fmt;
use std::sync::Arc;

use minijinja::value::{Enumerator, Object, ObjectRepr};
use minijinja::Value;

/// A map that keeps insertion order (JSON objects, messages, the context). Later duplicates of a
/// key replace the value in place.
#[derive(Debug, Default)]
pub(super) struct OrderedMap(Vec<(Value, Value)>);

impl OrderedMap {
    pub(super) fn insert(&mut self, key: impl Into<Value>, value: Value) {
        let key = key.into();
        match self.0.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => self.0.push((key, value)),
        }
    }

    pub(super) fn into_value(self) -> Value {
        Value::from_object(self)
    }
}

impl Object for OrderedMap {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Map
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Values(self.0.iter().map(|(k, _)| k.clone()).collect())
    }

    fn enumerator_len(self: &Arc<Self>) -> Option<usize> {
        Some(self.0.len())
    }
}

/// A [`Value`] read from JSON (or any self-describing serde format) with objects kept in the
/// order of the input, as llama.cpp keeps them. `serde_json::from_str::<JsonValue>(text)`.
#[derive(Debug, Clone)]
pub struct JsonValue(pub Value);

impl<'de> serde::Deserialize<'de> for JsonValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(JsonVisitor).map(JsonValue)
    }
}

struct JsonVisitor;

impl<'de> serde::de::Visitor<'de> for JsonVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::from(()))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::from(()))
    }
    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(JsonVisitor)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        while let Some(JsonValue(v)) = seq.next_element()? {
            items.push(v);
        }
        Ok(Value::from(items))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = OrderedMap::default();
        while let Some(key) = map.next_key::<String>()? {
            let JsonValue(v) = map.next_value()?;
            out.insert(key, v);
        }
        Ok(out.into_value())
    }
}

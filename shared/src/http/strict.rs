//! Reads request bodies as their types describe them, and no other way. serde's derived structs
//! also accept a JSON array, its elements taken as the fields in order, so `[null, null]` would
//! pass for `{"role": null, "status": null}`; the document promises objects, and an API that
//! takes what it does not describe invites clients to depend on accidents. This deserializer
//! walks a parsed [`Value`] exactly as `serde_json` does, except that a struct comes only from
//! an object.

use serde::de::{
    self, DeserializeSeed, Deserializer, IntoDeserializer, MapAccess, SeqAccess, Visitor,
};
use serde_json::{Error, Map, Value};

/// A parsed JSON value, read strictly.
pub struct Strict<'a>(pub &'a Value);

impl<'de> Deserializer<'de> for Strict<'de> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0 {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(*b),
            Value::Number(n) => {
                if let Some(u) = n.as_u64() {
                    visitor.visit_u64(u)
                } else if let Some(i) = n.as_i64() {
                    visitor.visit_i64(i)
                } else {
                    visitor.visit_f64(n.as_f64().unwrap_or(f64::NAN))
                }
            }
            Value::String(s) => visitor.visit_borrowed_str(s),
            Value::Array(items) => visitor.visit_seq(Items(items.iter())),
            Value::Object(map) => visitor.visit_map(Fields::new(map)),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0 {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        match self.0 {
            Value::Object(map) => visitor.visit_map(Fields::new(map)),
            other => Err(de::Error::invalid_type(unexpected(other), &visitor)),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        match self.0 {
            // A unit variant, by name.
            Value::String(s) => visitor.visit_enum(s.as_str().into_deserializer()),
            // `{"Variant": ...}`, as serde_json reads it.
            Value::Object(_) => self.0.deserialize_enum(name, variants, visitor),
            other => Err(de::Error::invalid_type(unexpected(other), &visitor)),
        }
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        unit unit_struct seq tuple tuple_struct map identifier ignored_any
    }
}

fn unexpected(v: &Value) -> de::Unexpected<'_> {
    match v {
        Value::Null => de::Unexpected::Unit,
        Value::Bool(b) => de::Unexpected::Bool(*b),
        Value::Number(_) => de::Unexpected::Other("number"),
        Value::String(_) => de::Unexpected::Other("string"),
        Value::Array(_) => de::Unexpected::Seq,
        Value::Object(_) => de::Unexpected::Map,
    }
}

struct Items<'a>(std::slice::Iter<'a, Value>);

impl<'de> SeqAccess<'de> for Items<'de> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        self.0
            .next()
            .map(|v| seed.deserialize(Strict(v)))
            .transpose()
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.0.len())
    }
}

struct Fields<'a> {
    entries: serde_json::map::Iter<'a>,
    value: Option<&'a Value>,
}

impl<'a> Fields<'a> {
    fn new(map: &'a Map<String, Value>) -> Self {
        Self {
            entries: map.iter(),
            value: None,
        }
    }
}

impl<'de> MapAccess<'de> for Fields<'de> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        match self.entries.next() {
            Some((k, v)) => {
                self.value = Some(v);
                seed.deserialize(k.as_str().into_deserializer()).map(Some)
            }
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        let v = self
            .value
            .take()
            .ok_or_else(|| <Error as de::Error>::custom("a value without its key"))?;
        seed.deserialize(Strict(v))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use serde_json::json;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    struct Body {
        name: Option<String>,
        #[serde(default)]
        tags: Vec<String>,
        kind: Option<Kind>,
        inner: Option<Inner>,
        count: Option<u8>,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(rename_all = "SCREAMING_SNAKE_CASE")]
    enum Kind {
        InPerson,
        VideoCall,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    struct Inner {
        x: i64,
    }

    fn read(v: Value) -> Result<Body, Error> {
        Body::deserialize(Strict(&v))
    }

    #[test]
    fn objects_read_as_serde_json_reads_them() {
        let v = json!({"name": "a", "tags": ["t"], "kind": "VIDEO_CALL", "inner": {"x": -3}, "count": 7});
        assert_eq!(
            read(v.clone()).expect("strict"),
            serde_json::from_value(v).expect("serde_json")
        );
        assert_eq!(read(json!({})).expect("empty").name, None);
    }

    #[test]
    fn a_struct_never_comes_from_an_array() {
        // serde_json alone takes both, positionally
        assert!(serde_json::from_value::<Body>(json!([null, [], null, null, null])).is_ok());
        assert!(read(json!([null, [], null, null, null])).is_err());
        assert!(read(json!({"inner": [5]})).is_err());
    }

    #[test]
    fn a_body_that_is_an_array_is_an_invalid_body() {
        // GIVEN bodies that serde's positional reading would take for a struct
        for body in [
            &b"[null, null, null, null, null]"[..],
            b"[]",
            b"\"x\"",
            b"7",
        ] {
            // WHEN they are parsed as a request body
            let e = crate::http::parse_json::<Body>(body).expect_err("refused");
            // THEN each is 422 invalid_body, and broken JSON stays 400 malformed_json
            assert_eq!(e.code(), "invalid_body");
        }
        let e = crate::http::parse_json::<Body>(b"{").expect_err("refused");
        assert_eq!(e.code(), "malformed_json");
    }

    #[test]
    fn wrong_types_unknown_fields_and_bad_variants_are_refused() {
        assert!(read(json!({"count": 300})).is_err());
        assert!(read(json!({"count": "7"})).is_err());
        assert!(read(json!({"kind": "PHONE"})).is_err());
        assert!(read(json!({"other": 1})).is_err());
        assert!(read(json!("text")).is_err());
    }
}

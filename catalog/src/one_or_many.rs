//! `x` or `[x, y]`: fields that take one item or a list of them (node links, fault targets).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One item or a list of them.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for OneOrMany<T> {
    // Not `untagged`: its "did not match any variant" hides the real error (a bad unit).
    // Not through a `Value` either: the item is deserialized from the same map or sequence
    // access, so `serde_path_to_error` sees the item's own fields and an error names the
    // exact field (`nodes[0].link.delay`, not `nodes[0].link`).
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::value::{MapAccessDeserializer, SeqAccessDeserializer};
        use serde::de::{Error, IntoDeserializer, MapAccess, SeqAccess, Visitor};

        struct OneOrList<T>(std::marker::PhantomData<T>);

        impl<'de, T: Deserialize<'de>> OneOrList<T> {
            fn one<E: Error>(d: impl serde::Deserializer<'de, Error = E>) -> Result<OneOrMany<T>, E> {
                T::deserialize(d).map(OneOrMany::One)
            }
        }

        impl<'de, T: Deserialize<'de>> Visitor<'de> for OneOrList<T> {
            type Value = OneOrMany<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("one item or a list of them")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                Vec::<T>::deserialize(SeqAccessDeserializer::new(seq)).map(OneOrMany::Many)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                Self::one(MapAccessDeserializer::new(map))
            }
            fn visit_str<E: Error>(self, v: &str) -> Result<Self::Value, E> {
                Self::one(v.to_owned().into_deserializer())
            }
            fn visit_string<E: Error>(self, v: String) -> Result<Self::Value, E> {
                Self::one(v.into_deserializer())
            }
            fn visit_bool<E: Error>(self, v: bool) -> Result<Self::Value, E> {
                Self::one(v.into_deserializer())
            }
            fn visit_i64<E: Error>(self, v: i64) -> Result<Self::Value, E> {
                Self::one(v.into_deserializer())
            }
            fn visit_u64<E: Error>(self, v: u64) -> Result<Self::Value, E> {
                Self::one(v.into_deserializer())
            }
            fn visit_f64<E: Error>(self, v: f64) -> Result<Self::Value, E> {
                Self::one(v.into_deserializer())
            }
        }

        d.deserialize_any(OneOrList(std::marker::PhantomData))
    }
}

impl<T: Clone> OneOrMany<T> {
    pub fn to_vec(&self) -> Vec<T> {
        match self {
            Self::One(t) => vec![t.clone()],
            Self::Many(v) => v.clone(),
        }
    }
}

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

impl<'de, T: serde::de::DeserializeOwned> Deserialize<'de> for OneOrMany<T> {
    // Not `untagged`: its "did not match any variant" hides the real error (a bad unit).
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        match serde_yaml_ng::Value::deserialize(d)? {
            serde_yaml_ng::Value::Sequence(items) => items
                .into_iter()
                .map(|v| serde_yaml_ng::from_value(v).map_err(D::Error::custom))
                .collect::<Result<Vec<T>, _>>()
                .map(OneOrMany::Many),
            other => serde_yaml_ng::from_value(other).map(OneOrMany::One).map_err(D::Error::custom),
        }
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

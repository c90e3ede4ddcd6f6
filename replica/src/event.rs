//! S3 event notifications in the AWS event structure (`Records[]`, event version 2.1).
//!
//! The store sends one record per created or removed object. `sequencer` is the key's
//! ordering token as in S3: a fixed-width hex string, so a larger string is a later event of
//! the same key. Receivers keep the largest they have seen.

use serde::{Deserialize, Serialize};

/// The body of a notification: a list of records.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct Notification {
    pub records: Vec<Record>,
}

/// One event.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    pub event_version: String,
    pub event_source: String,
    pub aws_region: String,
    pub event_time: String,
    /// `ObjectCreated:Put`, `ObjectCreated:CompleteMultipartUpload`, `ObjectCreated:Copy`,
    /// `ObjectRemoved:Delete`.
    pub event_name: String,
    pub s3: S3Entity,
}

/// The `s3` member of a record.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct S3Entity {
    pub s3_schema_version: String,
    pub configuration_id: String,
    pub bucket: BucketEntity,
    pub object: ObjectEntity,
}

/// The bucket of a record.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BucketEntity {
    pub name: String,
    pub arn: String,
}

/// The object of a record. `size` and `eTag` are absent on removals, as in S3.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ObjectEntity {
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e_tag: Option<String>,
    pub sequencer: String,
}

/// What happened to the object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Put,
    CompleteMultipartUpload,
    Copy,
    Delete,
}

impl Kind {
    /// The AWS event name.
    pub fn event_name(self) -> &'static str {
        match self {
            Kind::Put => "ObjectCreated:Put",
            Kind::CompleteMultipartUpload => "ObjectCreated:CompleteMultipartUpload",
            Kind::Copy => "ObjectCreated:Copy",
            Kind::Delete => "ObjectRemoved:Delete",
        }
    }
}

impl Record {
    /// A record of `kind` on `bucket`/`key`, stamped now.
    pub fn new(region: &str, bucket: &str, kind: Kind, object: ObjectEntity) -> Record {
        Record {
            event_version: "2.1".into(),
            event_source: "aws:s3".into(),
            aws_region: region.into(),
            event_time: chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
            event_name: kind.event_name().into(),
            s3: S3Entity {
                s3_schema_version: "1.0".into(),
                configuration_id: "diorama-replication".into(),
                bucket: BucketEntity { name: bucket.into(), arn: format!("arn:aws:s3:::{bucket}") },
                object,
            },
        }
    }

    /// Whether the record removes the object (`ObjectRemoved:*`).
    pub fn is_removal(&self) -> bool {
        self.event_name.starts_with("ObjectRemoved:")
    }

    /// The sequencer as a number (records of other producers may use any hex width).
    pub fn sequence(&self) -> Option<u64> {
        u64::from_str_radix(&self.s3.object.sequencer, 16).ok()
    }
}

/// A sequencer string for `seq`: fixed-width hex, so string order is numeric order.
pub fn sequencer(seq: u64) -> String {
    format!("{seq:016X}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_in_the_aws_shape() {
        let object =
            ObjectEntity { key: "a/b".into(), size: Some(5), e_tag: Some("abc".into()), sequencer: sequencer(10) };
        let body = Notification { records: vec![Record::new("eu-1", "data", Kind::Put, object)] };
        let json: serde_json::Value = serde_json::to_value(&body).unwrap();
        let record = &json["Records"][0];
        assert_eq!(record["eventName"], "ObjectCreated:Put");
        assert_eq!(record["eventSource"], "aws:s3");
        assert_eq!(record["awsRegion"], "eu-1");
        assert_eq!(record["s3"]["s3SchemaVersion"], "1.0");
        assert_eq!(record["s3"]["bucket"]["arn"], "arn:aws:s3:::data");
        assert_eq!(record["s3"]["object"]["eTag"], "abc");
        assert_eq!(record["s3"]["object"]["sequencer"], "000000000000000A");
    }

    #[test]
    fn parses_an_aws_removal_record() {
        // The shape of a record S3 sends for a DELETE (no size, no eTag).
        let text = r#"{"Records":[{"eventVersion":"2.1","eventSource":"aws:s3","awsRegion":"us-west-2",
          "eventTime":"1970-01-01T00:00:00.000Z","eventName":"ObjectRemoved:Delete",
          "s3":{"s3SchemaVersion":"1.0","configurationId":"testConfigRule",
          "bucket":{"name":"mybucket","arn":"arn:aws:s3:::mybucket"},
          "object":{"key":"HappyFace.jpg","sequencer":"0055AED6DCD90281E5"}}}]}"#;
        let body: Notification = serde_json::from_str(text).unwrap();
        assert!(body.records[0].is_removal());
        assert_eq!(body.records[0].sequence(), Some(0x0055AED6DCD90281E5));
    }
}

//! The request plan: which class a request belongs to, which app servers the front end
//! calls, and which database operations each app server performs.
//!
//! # Design
//! Classes are set at the front end only: it sends each app server the class's
//! `reads`, `writes`, `size` and `as_hashes` in the request, so the app and DB tiers need
//! no class configuration and a mix change is one flag on one tier. All choices take the
//! random generator as an argument so tests can seed them.

use rand::seq::SliceRandom;
use rand::Rng;
use serde::Deserialize;

/// A bad class definition.
#[derive(Debug, thiserror::Error)]
pub enum ClassError {
    #[error("parse class `{text}`: {source}")]
    Json {
        text: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("class `{name}`: field `{field}`: {reason}")]
    Field { name: String, field: &'static str, reason: String },
    #[error("no request class has a positive weight")]
    Empty,
}

/// One request class: DieCast's first Isaac experiment by default.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Class {
    pub name: String,
    /// Relative frequency in the mix.
    #[serde(default = "one")]
    pub weight: f64,
    /// App servers the front end calls (distinct while there are enough of them).
    pub fanout: usize,
    /// Database reads per app server call.
    pub reads: usize,
    /// Database writes per app server call.
    pub writes: usize,
    /// Bytes of each read and write.
    pub size: usize,
    /// SHA-1 rounds the app server computes over its response.
    pub as_hashes: usize,
    /// SHA-1 rounds the front end computes over the concatenated responses.
    pub fs_hashes: usize,
}

fn one() -> f64 {
    1.0
}

impl Default for Class {
    fn default() -> Self {
        Class {
            name: "default".into(),
            weight: 1.0,
            fanout: 5,
            reads: 10,
            writes: 2,
            size: 1024,
            as_hashes: 500,
            fs_hashes: 5000,
        }
    }
}

/// A class given as JSON: fields left out take the base class's values.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClassPatch {
    name: Option<String>,
    weight: Option<f64>,
    fanout: Option<usize>,
    reads: Option<usize>,
    writes: Option<usize>,
    size: Option<usize>,
    as_hashes: Option<usize>,
    fs_hashes: Option<usize>,
}

/// Parses `--class` values: each a JSON object or an array of objects; missing fields come
/// from `base` (itself built from the single-class flags).
pub fn parse_classes<S: AsRef<str>>(texts: &[S], base: &Class) -> Result<Vec<Class>, ClassError> {
    let mut out = Vec::new();
    for text in texts {
        let text = text.as_ref();
        let json = |source| ClassError::Json { text: text.to_owned(), source };
        let value: serde_json::Value = serde_json::from_str(text).map_err(json)?;
        let items = match value {
            serde_json::Value::Array(items) => items,
            one => vec![one],
        };
        for item in items {
            let p: ClassPatch = serde_json::from_value(item).map_err(json)?;
            let c = Class {
                name: p.name.unwrap_or_else(|| format!("class{}", out.len())),
                weight: p.weight.unwrap_or(1.0),
                fanout: p.fanout.unwrap_or(base.fanout),
                reads: p.reads.unwrap_or(base.reads),
                writes: p.writes.unwrap_or(base.writes),
                size: p.size.unwrap_or(base.size),
                as_hashes: p.as_hashes.unwrap_or(base.as_hashes),
                fs_hashes: p.fs_hashes.unwrap_or(base.fs_hashes),
            };
            c.validate()?;
            out.push(c);
        }
    }
    Ok(out)
}

impl Class {
    /// Checks the values that would make a request meaningless.
    pub fn validate(&self) -> Result<(), ClassError> {
        let field =
            |field, reason: &str| ClassError::Field { name: self.name.clone(), field, reason: reason.to_owned() };
        if !(self.weight.is_finite() && self.weight >= 0.0) {
            return Err(field("weight", "must be a finite number ≥ 0"));
        }
        if self.fanout == 0 {
            return Err(field("fanout", "must be at least 1"));
        }
        if self.size > 16 << 20 {
            return Err(field("size", "must be at most 16 MiB"));
        }
        Ok(())
    }
}

/// The request classes with their weights.
#[derive(Debug, Clone)]
pub struct Mix {
    classes: Vec<Class>,
    cumulative: Vec<f64>,
}

impl Mix {
    /// A mix of `classes`; at least one must have a positive weight.
    pub fn new(classes: Vec<Class>) -> Result<Self, ClassError> {
        let mut sum = 0.0;
        let cumulative = classes
            .iter()
            .map(|c| {
                sum += c.weight;
                sum
            })
            .collect();
        if sum <= 0.0 {
            return Err(ClassError::Empty);
        }
        Ok(Mix { classes, cumulative })
    }

    pub fn classes(&self) -> &[Class] {
        &self.classes
    }

    /// Draws a class with probability proportional to its weight.
    pub fn pick<R: Rng + ?Sized>(&self, rng: &mut R) -> &Class {
        let total = self.cumulative.last().copied().unwrap_or(0.0);
        let x = rng.random::<f64>() * total;
        let i = self.cumulative.iter().position(|&c| x < c).unwrap_or(self.classes.len() - 1);
        // Skip zero-weight classes that `position` can land on only through rounding.
        let i = (i..self.classes.len()).find(|&j| self.classes[j].weight > 0.0).unwrap_or(i);
        &self.classes[i]
    }
}

/// Chooses `fanout` of `n` app servers at random: distinct while `fanout ≤ n`; beyond that
/// every server is called ⌊fanout/n⌋ times and a random subset once more.
pub fn choose_app_servers<R: Rng + ?Sized>(rng: &mut R, n: usize, fanout: usize) -> Vec<usize> {
    if n == 0 {
        return Vec::new();
    }
    let mut out = Vec::with_capacity(fanout);
    let mut all: Vec<usize> = (0..n).collect();
    while out.len() < fanout {
        all.shuffle(rng);
        let take = (fanout - out.len()).min(n);
        out.extend_from_slice(&all[..take]);
    }
    out
}

/// One database operation of an app server call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbOp {
    Read { key: u64 },
    Write { key: u64 },
}

/// The database operations of one app server call: `reads` reads then `writes` writes of
/// random keys in `0..keys`.
pub fn db_ops<R: Rng + ?Sized>(rng: &mut R, reads: usize, writes: usize, keys: u64) -> Vec<DbOp> {
    let keys = keys.max(1);
    let mut ops: Vec<DbOp> = (0..reads).map(|_| DbOp::Read { key: rng.random_range(0..keys) }).collect();
    ops.extend((0..writes).map(|_| DbOp::Write { key: rng.random_range(0..keys) }));
    ops
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn defaults_follow_diecast() {
        let c = Class::default();
        assert_eq!((c.fanout, c.reads, c.writes, c.size, c.as_hashes, c.fs_hashes), (5, 10, 2, 1024, 500, 5000));
    }

    #[test]
    fn fanout_is_distinct_then_wraps() {
        let mut rng = StdRng::seed_from_u64(1);
        for _ in 0..200 {
            let mut a = choose_app_servers(&mut rng, 6, 5);
            assert_eq!(a.len(), 5);
            a.sort_unstable();
            a.dedup();
            assert_eq!(a.len(), 5, "distinct");
            assert!(a.iter().all(|&i| i < 6));
        }
        let mut counts = [0; 2];
        for i in choose_app_servers(&mut rng, 2, 5) {
            counts[i] += 1;
        }
        assert!(counts == [2, 3] || counts == [3, 2], "{counts:?}");
        assert!(choose_app_servers(&mut rng, 0, 5).is_empty());
    }

    #[test]
    fn fanout_choice_is_uniform() {
        let mut rng = StdRng::seed_from_u64(2);
        let mut hits = [0u32; 6];
        for _ in 0..6000 {
            for i in choose_app_servers(&mut rng, 6, 1) {
                hits[i] += 1;
            }
        }
        assert!(hits.iter().all(|&h| (850..1150).contains(&h)), "{hits:?}");
    }

    #[test]
    fn ops_are_reads_then_writes_within_keys() {
        let mut rng = StdRng::seed_from_u64(3);
        let ops = db_ops(&mut rng, 10, 2, 50);
        assert_eq!(ops.len(), 12);
        assert!(ops[..10].iter().all(|o| matches!(o, DbOp::Read { key } if *key < 50)));
        assert!(ops[10..].iter().all(|o| matches!(o, DbOp::Write { key } if *key < 50)));
    }

    #[test]
    fn mix_follows_weights() {
        let base = Class::default();
        let classes = parse_classes(
            &[
                r#"{"name":"light","weight":3,"fanout":1,"fs_hashes":10}"#,
                r#"[{"name":"heavy","weight":1},{"name":"off","weight":0}]"#,
            ],
            &base,
        )
        .unwrap();
        assert_eq!(classes[0].fanout, 1);
        assert_eq!(classes[0].reads, 10, "unset fields come from the base");
        assert_eq!(classes[1], Class { name: "heavy".into(), ..Class::default() });
        let mix = Mix::new(classes).unwrap();
        let mut rng = StdRng::seed_from_u64(4);
        let mut light = 0;
        for _ in 0..4000 {
            match mix.pick(&mut rng).name.as_str() {
                "light" => light += 1,
                "heavy" => {}
                other => panic!("zero-weight class {other} picked"),
            }
        }
        assert!((2800..3200).contains(&light), "{light}");
    }

    #[test]
    fn bad_classes_are_refused_with_the_field() {
        let base = Class::default();
        let e = parse_classes(&[r#"{"name":"x","fanout":0}"#], &base).unwrap_err();
        assert!(e.to_string().contains("fanout"), "{e}");
        let e = parse_classes(&[r#"{"name":"x","fanot":2}"#], &base).unwrap_err();
        assert!(e.to_string().contains("fanot"), "{e}");
        assert!(parse_classes(&["{"], &base).is_err());
        assert!(Mix::new(parse_classes(&[r#"{"weight":0}"#], &base).unwrap()).is_err());
    }
}

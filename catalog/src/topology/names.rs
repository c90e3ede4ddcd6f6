//! Node names and group ranges: `web[0..6]` declares web0 … web5 as group `web`.

/// A declared name: a single node, or a group with its members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Declared {
    Single(String),
    Group { group: String, members: Vec<String> },
}

/// Whether `name` is usable as a node, group or switch name (it becomes a hostname and a
/// cgroup directory name).
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && name.len() <= 63
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Parses `prefix[a..b]suffix` into its parts; `None` if `text` has no range.
pub fn parse_range(text: &str) -> Option<Result<(String, u64, u64, String), String>> {
    let open = text.find('[')?;
    let Some(close) = text[open..].find(']').map(|i| open + i) else {
        return Some(Err(format!("{text:?}: unclosed `[` (a range is written name[0..6])")));
    };
    let inner = &text[open + 1..close];
    let Some((a, b)) = inner.split_once("..") else {
        return Some(Err(format!("{text:?}: expected a range like [0..6] inside the brackets")));
    };
    let parse = |s: &str| s.trim().parse::<u64>().map_err(|_| format!("{text:?}: {s:?} is not a whole number"));
    let a = match parse(a) {
        Ok(v) => v,
        Err(e) => return Some(Err(e)),
    };
    let b = match parse(b) {
        Ok(v) => v,
        Err(e) => return Some(Err(e)),
    };
    Some(Ok((text[..open].to_owned(), a, b, text[close + 1..].to_owned())))
}

/// Expands a declared name. Errors say what is wrong in words a user can act on.
pub fn expand(text: &str) -> Result<Declared, String> {
    match parse_range(text) {
        None => {
            if valid_name(text) {
                Ok(Declared::Single(text.to_owned()))
            } else {
                Err(format!("{text:?} is not a valid name (letters, digits, '-' and '_', starting with a letter or digit, at most 63 characters)"))
            }
        }
        Some(Err(e)) => Err(e),
        Some(Ok((prefix, a, b, suffix))) => {
            if b <= a {
                return Err(format!("the range {text:?} expands to nothing ({a}..{b} is empty; the end is exclusive)"));
            }
            if b - a > 100_000 {
                return Err(format!("the range {text:?} has {} members; at most 100000", b - a));
            }
            let group = format!("{prefix}{suffix}");
            if !valid_name(&group) {
                return Err(format!("{text:?}: the group name {group:?} is not a valid name"));
            }
            let members = (a..b).map(|i| format!("{prefix}{i}{suffix}")).collect();
            Ok(Declared::Group { group, members })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_expand_with_exclusive_end() {
        assert_eq!(
            expand("web[0..3]").unwrap(),
            Declared::Group { group: "web".into(), members: vec!["web0".into(), "web1".into(), "web2".into()] }
        );
        assert_eq!(expand("db").unwrap(), Declared::Single("db".into()));
        match expand("rack[1..3]-tor").unwrap() {
            Declared::Group { group, members } => {
                assert_eq!(group, "rack-tor");
                assert_eq!(members, ["rack1-tor", "rack2-tor"]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_ranges_say_why() {
        assert!(expand("web[3..3]").unwrap_err().contains("expands to nothing"));
        assert!(expand("web[5..2]").unwrap_err().contains("expands to nothing"));
        assert!(expand("web[a..2]").unwrap_err().contains("whole number"));
        assert!(expand("web[0..2").unwrap_err().contains("unclosed"));
        assert!(expand("web[0-2]").unwrap_err().contains("range like"));
        assert!(expand("we b").unwrap_err().contains("not a valid name"));
        assert!(expand("").is_err());
    }
}

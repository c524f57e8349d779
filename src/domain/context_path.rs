//! Context paths: `activeWork.currentRefactoring.status`; `\.` is a literal dot inside a key
//! (`versions.react\.dom`), `\\` a literal backslash, `[2]` an array index
//! (`recentDiscoveries[0].severity`). The empty path is the whole document. `Display` gives
//! the canonical text, which `Path::parse` reads back exactly.

use std::fmt;

use super::DomainError;

/// Longest path accepted, in characters.
pub const MAX_PATH_LEN: usize = 512;
/// Deepest nesting a path may address.
pub const MAX_DEPTH: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Segment {
    Key(String),
    Index(usize),
}

/// A parsed path; `Display` gives its canonical text.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Path(pub Vec<Segment>);

impl Path {
    pub fn root() -> Path {
        Path(Vec::new())
    }

    pub fn parse(text: &str) -> Result<Path, DomainError> {
        let bad = |why: &str| DomainError::invalid("path", format!("path {text:?}: {why}"));
        if text.chars().count() > MAX_PATH_LEN {
            return Err(bad(&format!("longer than {MAX_PATH_LEN} characters")));
        }
        let mut segments = Vec::new();
        let mut key = String::new();
        let mut key_open = false; // a key segment is being read (possibly empty so far)
        let mut chars = text.chars().peekable();
        let mut expect_key = !text.is_empty();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some(e @ ('.' | '\\' | '[' | ']')) => {
                        key.push(e);
                        key_open = true;
                    }
                    _ => return Err(bad("'\\' escapes only '.', '[', ']' and '\\'")),
                },
                '.' => {
                    if !key_open && !matches!(segments.last(), Some(Segment::Index(_))) {
                        return Err(bad("empty key"));
                    }
                    if key_open {
                        segments.push(Segment::Key(std::mem::take(&mut key)));
                    }
                    key_open = false;
                    expect_key = true;
                }
                '[' => {
                    if key_open {
                        segments.push(Segment::Key(std::mem::take(&mut key)));
                        key_open = false;
                    } else if segments.is_empty()
                        || expect_key && !matches!(segments.last(), Some(Segment::Index(_)))
                    {
                        return Err(bad("an index must follow a key"));
                    }
                    let mut digits = String::new();
                    loop {
                        match chars.next() {
                            Some(']') => break,
                            Some(d) if d.is_ascii_digit() => digits.push(d),
                            _ => return Err(bad("an index is [digits]")),
                        }
                    }
                    let index = digits.parse().map_err(|_| bad("an index is [digits]"))?;
                    segments.push(Segment::Index(index));
                    expect_key = false;
                    if let Some(&next) = chars.peek()
                        && next != '.'
                        && next != '['
                    {
                        return Err(bad("expected '.' or '[' after an index"));
                    }
                }
                ']' => return Err(bad("unmatched ']'")),
                c if c.is_control() => return Err(bad("control characters are not allowed")),
                c => {
                    key.push(c);
                    key_open = true;
                }
            }
        }
        if key_open {
            segments.push(Segment::Key(key));
        } else if expect_key && !text.is_empty() {
            return Err(bad("ends with '.'"));
        }
        if segments.len() > MAX_DEPTH {
            return Err(bad(&format!("deeper than {MAX_DEPTH} levels")));
        }
        Ok(Path(segments))
    }

    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// `self` is `other` or lies inside it.
    pub fn within(&self, other: &Path) -> bool {
        self.0.starts_with(&other.0)
    }

    /// One path contains the other (a write to either changes what the other reads).
    pub fn overlaps(&self, other: &Path) -> bool {
        self.within(other) || other.within(self)
    }

    pub(crate) fn child(&self, segment: Segment) -> Path {
        let mut p = self.clone();
        p.0.push(segment);
        p
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, s) in self.0.iter().enumerate() {
            match s {
                Segment::Index(n) => write!(f, "[{n}]")?,
                Segment::Key(k) => {
                    if i > 0 {
                        f.write_str(".")?;
                    }
                    for c in k.chars() {
                        if matches!(c, '.' | '\\' | '[' | ']') {
                            f.write_str("\\")?;
                        }
                        write!(f, "{c}")?;
                    }
                }
            }
        }
        Ok(())
    }
}

//! The JSON-path subset of redaction rules: `$`, then `.name`, `['name']`, `[N]`, `[*]`,
//! `.*` and `..name` (at any depth).

/// One step of a concrete location in a document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// An object member.
    Key(String),
    /// An array element.
    Index(usize),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Key(String),
    Index(usize),
    AnyChild,
    Descendant(String),
}

/// A parsed path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Path(Vec<Seg>);

impl Path {
    /// Parses a path; the error says what is wrong.
    pub fn parse(text: &str) -> Result<Self, String> {
        let rest = text.strip_prefix('$').ok_or("must start with '$'")?;
        let b = rest.as_bytes();
        let mut segs = Vec::new();
        let mut i = 0;
        let name_end = |from: usize| (from..b.len()).find(|&j| b[j] == b'.' || b[j] == b'[').unwrap_or(b.len());
        while i < b.len() {
            match b[i] {
                b'.' if b.get(i + 1) == Some(&b'.') => {
                    let end = name_end(i + 2);
                    let name = &rest[i + 2..end];
                    if name.is_empty() || name == "*" {
                        return Err("needs a member name after '..'".into());
                    }
                    segs.push(Seg::Descendant(name.to_owned()));
                    i = end;
                }
                b'.' => {
                    let end = name_end(i + 1);
                    let name = &rest[i + 1..end];
                    match name {
                        "" => return Err(format!("has an empty member name at offset {}", i + 1)),
                        "*" => segs.push(Seg::AnyChild),
                        n => segs.push(Seg::Key(n.to_owned())),
                    }
                    i = end;
                }
                b'[' => {
                    let close = rest[i..].find(']').map(|j| i + j).ok_or("has an unclosed '['")?;
                    let inner = &rest[i + 1..close];
                    if inner == "*" {
                        segs.push(Seg::AnyChild);
                    } else if let Some(q) = inner.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')) {
                        segs.push(Seg::Key(q.to_owned()));
                    } else if let Ok(n) = inner.parse::<usize>() {
                        segs.push(Seg::Index(n));
                    } else {
                        return Err(format!("has an invalid selector [{inner}]: use [N], [*] or ['name']"));
                    }
                    i = close + 1;
                }
                _ => return Err(format!("has an unexpected character at offset {}", i + 1)),
            }
        }
        Ok(Self(segs))
    }

    /// Whether the concrete location `at` is selected.
    pub fn matches(&self, at: &[Step]) -> bool {
        fn go(segs: &[Seg], at: &[Step]) -> bool {
            match (segs.first(), at.first()) {
                (None, None) => true,
                (None, Some(_)) | (Some(_), None) => false,
                (Some(Seg::Key(k)), Some(Step::Key(s))) if k == s => go(&segs[1..], &at[1..]),
                (Some(Seg::Index(n)), Some(Step::Index(i))) if n == i => go(&segs[1..], &at[1..]),
                (Some(Seg::AnyChild), Some(_)) => go(&segs[1..], &at[1..]),
                (Some(Seg::Descendant(name)), _) => (0..at.len())
                    .any(|skip| matches!(&at[skip], Step::Key(s) if s == name) && go(&segs[1..], &at[skip + 1..])),
                _ => false,
            }
        }
        go(&self.0, at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(parts: &[&str]) -> Vec<Step> {
        parts
            .iter()
            .map(|p| p.parse::<usize>().map(Step::Index).unwrap_or_else(|_| Step::Key((*p).to_owned())))
            .collect()
    }

    #[test]
    fn parses_and_matches() {
        let p = Path::parse("$.params.arguments.password").unwrap();
        assert!(p.matches(&at(&["params", "arguments", "password"])));
        assert!(!p.matches(&at(&["params", "arguments"])));
        let p = Path::parse("$.result.content[*].text").unwrap();
        assert!(p.matches(&at(&["result", "content", "3", "text"])));
        let p = Path::parse("$..password").unwrap();
        assert!(p.matches(&at(&["a", "b", "password"])));
        assert!(p.matches(&at(&["password"])));
        assert!(!p.matches(&at(&["password", "x"])));
        let p = Path::parse("$['odd key'][0]").unwrap();
        assert!(p.matches(&[Step::Key("odd key".into()), Step::Index(0)]));
        for bad in ["params.x", "$.", "$[x]", "$..", "$.a[", "$a"] {
            assert!(Path::parse(bad).is_err(), "{bad}");
        }
    }
}

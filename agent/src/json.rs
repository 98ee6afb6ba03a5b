//! A JSON tree that borrows from the bytes it was parsed from: the form in which the
//! agent reads, redacts and writes every captured message.
//!
//! `serde_json::Value` allocates every key and every string, sorts object members and
//! keeps only the last of a repeated key. Here a string without escape sequences points
//! into the message, members keep their order and every repetition (so the redactor
//! scans what the server would read, whichever of two equal keys it takes), and a string
//! the parser borrowed is written back without being escaped again. Lookups take the
//! last of repeated keys, as `serde_json` and the SDKs' parsers do.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Number;

/// One JSON value.
#[derive(Debug, Clone, PartialEq)]
pub enum Node<'a> {
    Null,
    Bool(bool),
    Number(Number),
    String(Text<'a>),
    Array(Vec<Node<'a>>),
    /// Members in document order, repeated keys included.
    Object(Vec<(Text<'a>, Node<'a>)>),
}

/// A JSON string's content. Only the parser makes a borrowed one, from a string that had
/// no escape sequence: such a string holds no `"`, `\` or control character (the parser
/// refuses raw control characters), so it is written back as it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Text<'a>(Cow<'a, str>);

impl Text<'_> {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Owned text (it will be escaped when written).
    pub fn owned(s: String) -> Self {
        Text(Cow::Owned(s))
    }

    fn write(&self, out: &mut Vec<u8>) {
        match &self.0 {
            Cow::Borrowed(s) => {
                out.push(b'"');
                out.extend_from_slice(s.as_bytes());
                out.push(b'"');
            }
            Cow::Owned(s) => serde_json::to_writer(out, s).expect("writing to a Vec cannot fail"),
        }
    }
}

impl From<&str> for Text<'_> {
    fn from(s: &str) -> Self {
        Text::owned(s.to_owned())
    }
}

impl<'a> Node<'a> {
    /// Parses one JSON document (UTF-8, nesting at most 128 deep, as `serde_json`).
    pub fn parse(bytes: &'a [u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    /// A string value.
    pub fn string(s: impl Into<String>) -> Self {
        Node::String(Text::owned(s.into()))
    }

    /// The member `key` of an object (the last one when the key repeats).
    pub fn get(&self, key: &str) -> Option<&Node<'a>> {
        match self {
            Node::Object(members) => members.iter().rev().find(|(k, _)| k.as_str() == key).map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Node::String(s) => Some(s.as_str()),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Node<'a>]> {
        match self {
            Node::Array(items) => Some(items),
            _ => None,
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Node::Number(n) => n.as_i64(),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Node::Bool(b) => Some(*b),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Node::Null)
    }

    pub fn is_string(&self) -> bool {
        matches!(self, Node::String(_))
    }

    pub fn is_number(&self) -> bool {
        matches!(self, Node::Number(_))
    }

    pub fn is_object(&self) -> bool {
        matches!(self, Node::Object(_))
    }

    /// Appends the compact JSON text of this value.
    pub fn write(&self, out: &mut Vec<u8>) {
        match self {
            Node::Null => out.extend_from_slice(b"null"),
            Node::Bool(true) => out.extend_from_slice(b"true"),
            Node::Bool(false) => out.extend_from_slice(b"false"),
            Node::Number(n) => serde_json::to_writer(out, n).expect("writing to a Vec cannot fail"),
            Node::String(s) => s.write(out),
            Node::Array(items) => {
                out.push(b'[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    item.write(out);
                }
                out.push(b']');
            }
            Node::Object(members) => {
                out.push(b'{');
                for (i, (k, v)) in members.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    k.write(out);
                    out.push(b':');
                    v.write(out);
                }
                out.push(b'}');
            }
        }
    }

    /// The compact JSON text of this value.
    pub fn to_json(&self) -> String {
        self.to_json_sized(0)
    }

    /// [`Node::to_json`], with room for `size` bytes made up front.
    pub fn to_json_sized(&self, size: usize) -> String {
        let mut out = Vec::with_capacity(size);
        self.write(&mut out);
        String::from_utf8(out).expect("JSON text from UTF-8 parts")
    }

    /// As a `serde_json::Value` (the last of repeated keys wins).
    pub fn to_value(&self) -> serde_json::Value {
        use serde_json::Value;
        match self {
            Node::Null => Value::Null,
            Node::Bool(b) => Value::Bool(*b),
            Node::Number(n) => Value::Number(n.clone()),
            Node::String(s) => Value::String(s.as_str().to_owned()),
            Node::Array(items) => Value::Array(items.iter().map(Node::to_value).collect()),
            Node::Object(members) => {
                Value::Object(members.iter().map(|(k, v)| (k.as_str().to_owned(), v.to_value())).collect())
            }
        }
    }
}

impl From<serde_json::Value> for Node<'_> {
    fn from(v: serde_json::Value) -> Self {
        use serde_json::Value;
        match v {
            Value::Null => Node::Null,
            Value::Bool(b) => Node::Bool(b),
            Value::Number(n) => Node::Number(n),
            Value::String(s) => Node::string(s),
            Value::Array(items) => Node::Array(items.into_iter().map(Node::from).collect()),
            Value::Object(map) => Node::Object(map.into_iter().map(|(k, v)| (Text::owned(k), Node::from(v))).collect()),
        }
    }
}

impl<'de> de::Deserialize<'de> for Node<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, b: bool) -> Result<Node<'de>, E> {
        Ok(Node::Bool(b))
    }

    fn visit_i64<E>(self, n: i64) -> Result<Node<'de>, E> {
        Ok(Node::Number(n.into()))
    }

    fn visit_u64<E>(self, n: u64) -> Result<Node<'de>, E> {
        Ok(Node::Number(n.into()))
    }

    fn visit_f64<E>(self, n: f64) -> Result<Node<'de>, E> {
        Ok(Number::from_f64(n).map_or(Node::Null, Node::Number))
    }

    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Node<'de>, E> {
        Ok(Node::String(Text(Cow::Borrowed(s))))
    }

    fn visit_str<E>(self, s: &str) -> Result<Node<'de>, E> {
        Ok(Node::string(s))
    }

    fn visit_string<E>(self, s: String) -> Result<Node<'de>, E> {
        Ok(Node::string(s))
    }

    fn visit_unit<E>(self) -> Result<Node<'de>, E> {
        Ok(Node::Null)
    }

    fn visit_none<E>(self) -> Result<Node<'de>, E> {
        Ok(Node::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Node<'de>, D::Error> {
        de::Deserialize::deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node<'de>, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Node::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node<'de>, A::Error> {
        let mut members = Vec::with_capacity(map.size_hint().unwrap_or(0).min(64));
        while let Some(key) = map.next_key_seed(KeySeed)? {
            members.push((key, map.next_value()?));
        }
        Ok(Node::Object(members))
    }
}

/// An object key, borrowed when it has no escape sequence.
struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Text<'de>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Text<'de>, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Text<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Text<'de>, E> {
        Ok(Text(Cow::Borrowed(s)))
    }

    fn visit_str<E>(self, s: &str) -> Result<Text<'de>, E> {
        Ok(Text::owned(s.to_owned()))
    }

    fn visit_string<E>(self, s: String) -> Result<Text<'de>, E> {
        Ok(Text::owned(s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_back_what_it_read_in_order_with_repeated_keys() {
        let text = br#"{"b":1,"a":[true,null,-2.5,"x"],"b":"\u0041\n\"q\"","k\u00e9y":{}}"#;
        let node = Node::parse(text).unwrap();
        // Escaped strings are unescaped and escaped again the way serde_json writes them.
        assert_eq!(node.to_json(), r#"{"b":1,"a":[true,null,-2.5,"x"],"b":"A\n\"q\"","kéy":{}}"#);
        assert_eq!(node.get("b").and_then(Node::as_str), Some("A\n\"q\""), "the last of a repeated key");
        assert_eq!(node.to_value(), serde_json::json!({"a":[true,null,-2.5,"x"],"b":"A\n\"q\"","kéy":{}}));
        // Strings without escapes are borrowed from the input.
        let Node::Object(members) = &node else { panic!() };
        assert!(matches!(members[0].0.0, Cow::Borrowed("b")));
        assert!(matches!(members[2].1, Node::String(Text(Cow::Owned(_)))));
    }

    #[test]
    fn refuses_what_serde_json_refuses() {
        for bad in [&b"{\"a\":\"tab\there\"}"[..], b"{\"a\":\"\xff\"}", b"[1,]", b"{} {}", b"\"open"] {
            assert!(Node::parse(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
            assert!(serde_json::from_slice::<serde_json::Value>(bad).is_err());
        }
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        assert!(Node::parse(deep.as_bytes()).is_err(), "the recursion limit holds");
    }

    #[test]
    fn agrees_with_serde_json_value() {
        // Without repeated keys, the tree holds what `Value` holds.
        let text = br#"{"n":[0,-1,18446744073709551615,1e300,0.1],"s":"\ud83d\ude00 \\ \/","o":{"z":{},"a":[]}}"#;
        let node = Node::parse(text).unwrap();
        let value: serde_json::Value = serde_json::from_slice(text).unwrap();
        assert_eq!(node.to_value(), value);
        assert_eq!(serde_json::from_str::<serde_json::Value>(&node.to_json()).unwrap(), value);
        assert_eq!(Node::from(value.clone()).to_value(), value);
    }
}

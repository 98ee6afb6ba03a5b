//! A JSON tree that borrows from the bytes it was parsed from: the form in which the
//! agent reads, redacts and writes every captured message.
//!
//! `serde_json::Value` allocates every key and every string, sorts object members and
//! keeps only the last of a repeated key. Here a string without escape sequences points
//! into the message, members keep their order and every repetition (so the redactor
//! scans what the server would read, whichever of two equal keys it takes), and a string
//! the parser borrowed is written back without being escaped again. Lookups take the
//! last of repeated keys, as `serde_json` and the SDKs' parsers do.
//!
//! The parser accepts exactly what `serde_json` accepts (a differential test and the
//! `json` fuzz target hold it to that), and has `serde_json` read every number but a
//! short integer, so each value is the one `serde_json` would give.

use std::borrow::Cow;
use std::fmt;

use mcp_ledger_crds::first_needing_escape;
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
    /// Parses one JSON document: UTF-8, only whitespace around it, nesting at most 127
    /// deep (`serde_json`'s limit).
    pub fn parse(bytes: &'a [u8]) -> Result<Self, JsonError> {
        Self::parse_keeping_compact(bytes).map(|(node, _)| node)
    }

    /// [`Node::parse`], and the text itself when it is compact: no whitespace outside its
    /// strings, so that it is a JSON writer's compact output of the same value (escapes
    /// and number forms aside) and can stand for it.
    pub fn parse_keeping_compact(bytes: &'a [u8]) -> Result<(Self, Option<&'a str>), JsonError> {
        // Checked once, whole: JSON outside strings is ASCII, so invalid UTF-8 anywhere is a
        // refusal, in a string or not, and a string's content is then a slice of this text.
        let text = std::str::from_utf8(bytes).map_err(|e| JsonError { what: "invalid UTF-8", at: e.valid_up_to() })?;
        let mut parser = Parser { text, at: 0, depth: 0, spaced: false };
        let node = parser.value()?;
        parser.skip_whitespace();
        if parser.at < bytes.len() {
            return Err(parser.error("trailing characters"));
        }
        Ok((node, (!parser.spaced).then_some(text)))
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

/// Why a text is not one JSON document, and the offset where that was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonError {
    what: &'static str,
    at: usize,
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{} at byte {}", self.what, self.at)
    }
}

impl std::error::Error for JsonError {}

/// How deep arrays and objects may nest: `serde_json` refuses the 128th level.
const MAX_DEPTH: u32 = 127;

struct Parser<'a> {
    /// The input, valid UTF-8 (read as bytes but for the strings and numbers it yields).
    text: &'a str,
    at: usize,
    depth: u32,
    /// Whether whitespace was skipped anywhere.
    spaced: bool,
}

impl<'a> Parser<'a> {
    fn bytes(&self) -> &'a [u8] {
        self.text.as_bytes()
    }

    fn error(&self, what: &'static str) -> JsonError {
        JsonError { what, at: self.at }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes().get(self.at).copied()
    }

    fn skip_whitespace(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.at += 1;
            self.spaced = true;
        }
    }

    fn value(&mut self) -> Result<Node<'a>, JsonError> {
        self.skip_whitespace();
        match self.peek() {
            Some(b'{') => self.object(),
            Some(b'[') => self.array(),
            Some(b'"') => {
                self.at += 1;
                self.string().map(Node::String)
            }
            Some(b't') => self.literal(b"true", Node::Bool(true)),
            Some(b'f') => self.literal(b"false", Node::Bool(false)),
            Some(b'n') => self.literal(b"null", Node::Null),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(_) => Err(self.error("expected value")),
            None => Err(self.error("EOF while parsing a value")),
        }
    }

    fn literal(&mut self, word: &'static [u8], node: Node<'a>) -> Result<Node<'a>, JsonError> {
        if self.bytes()[self.at..].starts_with(word) {
            self.at += word.len();
            Ok(node)
        } else {
            Err(self.error("expected value"))
        }
    }

    /// Enters an array or object at its opening bracket: true if it is empty (and left,
    /// at `close`).
    fn enter(&mut self, close: u8) -> Result<bool, JsonError> {
        if self.depth == MAX_DEPTH {
            return Err(self.error("recursion limit exceeded"));
        }
        self.depth += 1;
        self.at += 1;
        self.skip_whitespace();
        Ok(self.leave(close))
    }

    /// Leaves the array or object if the next byte is its `close`.
    fn leave(&mut self, close: u8) -> bool {
        let closed = self.peek() == Some(close);
        if closed {
            self.at += 1;
            self.depth -= 1;
        }
        closed
    }

    /// After an item: true at the closing `close` (then left), false after a `,`.
    fn next_or_close(&mut self, close: u8, what: &'static str) -> Result<bool, JsonError> {
        self.skip_whitespace();
        if self.leave(close) {
            return Ok(true);
        }
        match self.peek() {
            Some(b',') => {
                self.at += 1;
                Ok(false)
            }
            Some(_) => Err(self.error(what)),
            None => Err(self.error("EOF while parsing a list or an object")),
        }
    }

    fn array(&mut self) -> Result<Node<'a>, JsonError> {
        let mut items = Vec::new();
        if self.enter(b']')? {
            return Ok(Node::Array(items));
        }
        loop {
            items.push(self.value()?);
            if self.next_or_close(b']', "expected `,` or `]`")? {
                return Ok(Node::Array(items));
            }
        }
    }

    fn object(&mut self) -> Result<Node<'a>, JsonError> {
        let mut members = Vec::new();
        if self.enter(b'}')? {
            return Ok(Node::Object(members));
        }
        loop {
            self.skip_whitespace();
            match self.peek() {
                Some(b'"') => self.at += 1,
                Some(_) => return Err(self.error("key must be a string")),
                None => return Err(self.error("EOF while parsing an object")),
            }
            let key = self.string()?;
            self.skip_whitespace();
            match self.peek() {
                Some(b':') => self.at += 1,
                Some(_) => return Err(self.error("expected `:`")),
                None => return Err(self.error("EOF while parsing an object")),
            }
            members.push((key, self.value()?));
            if self.next_or_close(b'}', "expected `,` or `}`")? {
                return Ok(Node::Object(members));
            }
        }
    }

    /// A string's content, after its opening quote: borrowed when it has no escape.
    fn string(&mut self) -> Result<Text<'a>, JsonError> {
        let start = self.at;
        // Eight bytes at a time while none is a quote, a backslash or a control character;
        // then straight to the first one.
        while let Some(word) = self.bytes().get(self.at..self.at + 8) {
            if let Some(first) = first_needing_escape(u64::from_le_bytes(word.try_into().expect("eight bytes"))) {
                self.at += first;
                break;
            }
            self.at += 8;
        }
        loop {
            match self.peek() {
                Some(b'"') => {
                    // Both ends are at ASCII bytes (the quotes), so at character boundaries.
                    let text = &self.text[start..self.at];
                    self.at += 1;
                    return Ok(Text(Cow::Borrowed(text)));
                }
                Some(b'\\') => break,
                Some(0..0x20) => return Err(self.error("control character in a string")),
                Some(_) => self.at += 1,
                None => return Err(self.error("EOF while parsing a string")),
            }
        }
        // An escape sequence: the content is built from the runs of text between escapes
        // (each run starts and ends at an ASCII byte, so at character boundaries) and the
        // character each escape stands for.
        let mut out = String::new();
        let mut run = start;
        loop {
            match self.peek() {
                Some(b'"') => {
                    out.push_str(&self.text[run..self.at]);
                    self.at += 1;
                    return Ok(Text::owned(out));
                }
                Some(b'\\') => {
                    out.push_str(&self.text[run..self.at]);
                    self.at += 1;
                    self.escape(&mut out)?;
                    run = self.at;
                }
                Some(0..0x20) => return Err(self.error("control character in a string")),
                Some(_) => self.at += 1,
                None => return Err(self.error("EOF while parsing a string")),
            }
        }
    }

    /// One escape sequence, after its backslash.
    fn escape(&mut self, out: &mut String) -> Result<(), JsonError> {
        let Some(c) = self.peek() else { return Err(self.error("EOF while parsing a string")) };
        self.at += 1;
        let byte = match c {
            b'"' => b'"',
            b'\\' => b'\\',
            b'/' => b'/',
            b'b' => 0x08,
            b'f' => 0x0c,
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'u' => {
                let c = self.unicode_escape()?;
                out.push(c);
                return Ok(());
            }
            _ => return Err(self.error("invalid escape")),
        };
        out.push(char::from(byte));
        Ok(())
    }

    /// The character of a `\uXXXX` escape (after the `u`), a surrogate pair included.
    fn unicode_escape(&mut self) -> Result<char, JsonError> {
        let first = self.hex4()?;
        let code = match first {
            0xDC00..=0xDFFF => return Err(self.error("lone trailing surrogate in hex escape")),
            0xD800..=0xDBFF => {
                if !self.bytes()[self.at..].starts_with(b"\\u") {
                    return Err(self.error("lone leading surrogate in hex escape"));
                }
                self.at += 2;
                let second = self.hex4()?;
                if !(0xDC00..=0xDFFF).contains(&second) {
                    return Err(self.error("lone leading surrogate in hex escape"));
                }
                0x10000 + ((u32::from(first) - 0xD800) << 10 | (u32::from(second) - 0xDC00))
            }
            n => u32::from(n),
        };
        Ok(char::from_u32(code).expect("not a surrogate"))
    }

    fn hex4(&mut self) -> Result<u16, JsonError> {
        let Some(digits) = self.bytes().get(self.at..self.at + 4) else {
            return Err(self.error("EOF while parsing a string"));
        };
        let mut n = 0u16;
        for &d in digits {
            let v = match d {
                b'0'..=b'9' => d - b'0',
                b'a'..=b'f' => d - b'a' + 10,
                b'A'..=b'F' => d - b'A' + 10,
                _ => return Err(self.error("invalid escape")),
            };
            n = n << 4 | u16::from(v);
        }
        self.at += 4;
        Ok(n)
    }

    /// Skips ASCII digits: how many.
    fn digits(&mut self) -> usize {
        let start = self.at;
        while let Some(b'0'..=b'9') = self.peek() {
            self.at += 1;
        }
        self.at - start
    }

    fn number(&mut self) -> Result<Node<'a>, JsonError> {
        let start = self.at;
        let negative = self.peek() == Some(b'-');
        self.at += usize::from(negative);
        let int_digits = match self.peek() {
            Some(b'0') => {
                self.at += 1;
                1
            }
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(self.error("invalid number")),
        };
        let mut integer = true;
        if self.peek() == Some(b'.') {
            self.at += 1;
            if self.digits() == 0 {
                return Err(self.error("invalid number"));
            }
            integer = false;
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.at += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.at += 1;
            }
            if self.digits() == 0 {
                return Err(self.error("invalid number"));
            }
            integer = false;
        }
        // Up to 19 digits cannot overflow a u64. A negative one is an i64 unless it is -0
        // or below i64::MIN, which serde_json reads as floats (below).
        if integer && int_digits <= 19 {
            let magnitude =
                self.bytes()[self.at - int_digits..self.at].iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
            if !negative {
                return Ok(Node::Number(magnitude.into()));
            }
            let value = (magnitude as i64).wrapping_neg();
            if value < 0 {
                return Ok(Node::Number(value.into()));
            }
        }
        // Fractions, exponents, long integers: read by serde_json, so the value is the
        // float it would give here (and one out of range is refused, as it refuses it).
        let text = &self.text[start..self.at];
        serde_json::from_str::<Number>(text)
            .map(Node::Number)
            .map_err(|_| JsonError { what: "number out of range", at: start })
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

    /// What serde_json makes of `bytes`, and what this parser makes of it, as values.
    fn both(bytes: &[u8]) -> (Option<serde_json::Value>, Option<serde_json::Value>) {
        (serde_json::from_slice(bytes).ok(), Node::parse(bytes).ok().map(|n| n.to_value()))
    }

    #[test]
    fn accepts_and_refuses_what_serde_json_does_with_the_same_values() {
        let cases: &[&[u8]] = &[
            b"0",
            b"-0",
            b"-0.0",
            b"1",
            b"-1",
            b"01",
            b"-01",
            b"1.",
            b".5",
            b"+1",
            b"1e",
            b"1e+",
            b"1E-2",
            b"1e400",
            b"-1e400",
            b"1e-400",
            b"0.1",
            b"12345678901234567890",
            b"18446744073709551615",
            b"18446744073709551616",
            b"-9223372036854775808",
            b"-9223372036854775809",
            b"9999999999999999999",
            b"-9999999999999999999",
            b"1.7976931348623157e308",
            b"2.2250738585072014e-308",
            b"123456789.123456789e-5",
            b"Infinity",
            b"NaN",
            b"-",
            b"--1",
            b"1-",
            b"[1,2",
            b"[1 2]",
            br#"{"a" 1}"#,
            br#"{"a":}"#,
            b"{1:2}",
            br#"{"a":1,}"#,
            b"[,]",
            b"[1,]",
            b"[]",
            b"{}",
            b" \t\r\n[ ] \n",
            b"\x0c[]",
            b"tru",
            b"truex",
            b"nul",
            b"null",
            b"false",
            b"\"",
            b"\"\\",
            br#""\x""#,
            br#""\u12""#,
            br#""\u12g4""#,
            br#""\uD83D\uDE00""#,
            br#""\ud83d""#,
            br#""\ude00""#,
            br#""\ud83d\u0041""#,
            br#""\ud83d\n""#,
            br#""\ud83dx""#,
            br#""\u0000""#,
            br#""\/\b\f""#,
            b"\"a\x01\"",
            b"\"a\x7f\"",
            b"\"\xc3\xa9\"",
            b"\"\xc3\"",
            b"\"\xc3\\u00a9\"",
            b"\"\xed\xa0\x80\"",
            b"\"\xf4\x90\x80\x80\"",
            b"\xef\xbb\xbf[]",
            b"[1]x",
            b"[1] [2]",
            b"",
            b"   ",
            br#"{"a":1,"a":2}"#,
            b"[\"\\u00e9\xc3\xa9\"]",
        ];
        for &case in cases {
            let (theirs, ours) = both(case);
            assert_eq!(ours, theirs, "{:?}", String::from_utf8_lossy(case));
        }
        for depth in [126, 127, 128, 129] {
            for (open, close) in [("[", "]"), (r#"{"k":"#, "}")] {
                let text = format!("{}1{}", open.repeat(depth), close.repeat(depth));
                let (theirs, ours) = both(text.as_bytes());
                assert_eq!(ours.is_some(), theirs.is_some(), "{depth} levels of {open}");
                assert_eq!(ours, theirs);
            }
        }
    }

    #[test]
    fn agrees_with_serde_json_on_mutated_messages() {
        // Real MCP messages, cut short, or with bytes replaced or inserted from the
        // characters that matter to the grammar: every outcome must be serde_json's.
        let seeds: [&[u8]; 4] = [
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"h\u00e9llo \"q\""},"_meta":{"progressToken":-12.5e-1}}}"#,
            br#"[{"jsonrpc":"2.0","id":"a","result":{"content":[{"type":"text","text":"\ud83d\ude00 ok"}],"isError":false}},{"jsonrpc":"2.0","method":"n","params":[null,true,0,1e3]}]"#,
            "{\"é\":[\"日本\",{\"\":{}}],\"n\":18446744073709551615,\"m\":-9223372036854775808}".as_bytes(),
            br#" { "a" : [ 1 , 2.0 , "\\\/\b\f\n\r\t" ] } "#,
        ];
        let alphabet = b"{}[]\":,\\ -+.eE0123456789tfnu\x00\x1f\x7f\xc3\xa9\xff";
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n as u64) as usize
        };
        let mut refused = 0;
        for round in 0..30_000 {
            let mut text = seeds[round % seeds.len()].to_vec();
            for _ in 0..1 + next(3) {
                let at = next(text.len() + 1);
                let byte = alphabet[next(alphabet.len())];
                match next(4) {
                    0 => text.truncate(at),
                    1 => text.insert(at, byte),
                    _ if at < text.len() => text[at] = byte,
                    _ => text.push(byte),
                }
            }
            let (theirs, ours) = both(&text);
            refused += usize::from(theirs.is_none());
            assert_eq!(ours, theirs, "{:?}", String::from_utf8_lossy(&text));
        }
        // Both outcomes were exercised many times.
        assert!((3_000..27_000).contains(&refused), "{refused} of 30000 refused");
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

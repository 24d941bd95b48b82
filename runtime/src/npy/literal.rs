//! The Python literals of a `.npy` header: the dictionary NumPy writes with `repr` and reads
//! back with `ast.literal_eval`. A small parser of the part of the grammar a header can use —
//! strings, integers, `True`, `False`, `None`, tuples, lists and dictionaries — which refuses
//! anything else, duplicate keys included, instead of searching the text for keys.

/// A parsed literal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Literal {
    /// `'...'` or `"..."`.
    Str(String),
    /// A decimal integer (NumPy writes shapes as plain integers; Python 2 added an `L`).
    Int(i128),
    /// `True` or `False`.
    Bool(bool),
    /// `None`.
    None,
    /// `(a, b)`, `(a,)`, `()`.
    Tuple(Vec<Literal>),
    /// `[a, b]`.
    List(Vec<Literal>),
    /// `{k: v, ...}`, in order; keys are unique.
    Dict(Vec<(Literal, Literal)>),
}

impl Literal {
    /// How the literal reads in an error message.
    pub(super) fn kind(&self) -> &'static str {
        match self {
            Literal::Str(_) => "a string",
            Literal::Int(_) => "an integer",
            Literal::Bool(_) => "a boolean",
            Literal::None => "None",
            Literal::Tuple(_) => "a tuple",
            Literal::List(_) => "a list",
            Literal::Dict(_) => "a dictionary",
        }
    }
}

/// How deep literals may nest: a header is two levels deep; a structured dtype a few more.
const MAX_DEPTH: usize = 32;

/// Parses `text` as one literal, surrounded by nothing but white space.
pub(super) fn parse(text: &str) -> Result<Literal, String> {
    let mut p = Parser {
        chars: text.char_indices().collect(),
        pos: 0,
    };
    let value = p.value(0)?;
    p.skip_space();
    if let Some(&(at, c)) = p.chars.get(p.pos) {
        return Err(format!(
            "unexpected `{c}` at byte {at} after the header's dictionary"
        ));
    }
    Ok(value)
}

struct Parser {
    chars: Vec<(usize, char)>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).map(|&(_, c)| c)
    }

    /// The byte offset of the current character (the end of the text when there is none).
    fn at(&self) -> usize {
        self.chars.get(self.pos).map_or_else(
            || self.chars.last().map_or(0, |&(i, c)| i + c.len_utf8()),
            |&(i, _)| i,
        )
    }

    fn skip_space(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.pos += 1;
        }
    }

    fn expected(&self, what: &str) -> String {
        match self.peek() {
            Some(c) => format!("expected {what} at byte {}, found `{c}`", self.at()),
            None => format!("expected {what}, found the end of the header"),
        }
    }

    fn value(&mut self, depth: usize) -> Result<Literal, String> {
        if depth > MAX_DEPTH {
            return Err(format!("literals nested more than {MAX_DEPTH} deep"));
        }
        self.skip_space();
        match self.peek() {
            Some(q @ ('\'' | '"')) => self.string(q).map(Literal::Str),
            Some('(') => self.sequence(')', depth).map(Literal::Tuple),
            Some('[') => self.sequence(']', depth).map(Literal::List),
            Some('{') => self.dict(depth),
            Some(c) if c.is_ascii_digit() || c == '-' || c == '+' => self.int(),
            Some(c) if c.is_ascii_alphabetic() => self.word(),
            _ => Err(self.expected("a value")),
        }
    }

    fn string(&mut self, quote: char) -> Result<String, String> {
        let start = self.at();
        self.pos += 1;
        let mut out = String::new();
        loop {
            let Some(c) = self.peek() else {
                return Err(format!("the string at byte {start} is not closed"));
            };
            self.pos += 1;
            match c {
                c if c == quote => return Ok(out),
                '\n' => return Err(format!("the string at byte {start} is not closed")),
                '\\' => {
                    let Some(e) = self.peek() else {
                        return Err(format!("the string at byte {start} is not closed"));
                    };
                    self.pos += 1;
                    match e {
                        '\\' | '\'' | '"' => out.push(e),
                        'n' => out.push('\n'),
                        't' => out.push('\t'),
                        'r' => out.push('\r'),
                        '0' => out.push('\0'),
                        'x' => out.push(self.hex_escape(2)?),
                        'u' => out.push(self.hex_escape(4)?),
                        other => {
                            return Err(format!(
                                "unsupported escape `\\{other}` in the string at byte {start}"
                            ));
                        }
                    }
                }
                c => out.push(c),
            }
        }
    }

    fn hex_escape(&mut self, digits: usize) -> Result<char, String> {
        let mut value = 0u32;
        for _ in 0..digits {
            let d = self
                .peek()
                .and_then(|c| c.to_digit(16))
                .ok_or_else(|| self.expected("a hexadecimal digit"))?;
            value = value * 16 + d;
            self.pos += 1;
        }
        char::from_u32(value).ok_or_else(|| format!("escape of U+{value:X} is not a character"))
    }

    fn int(&mut self) -> Result<Literal, String> {
        let start = self.at();
        let mut text = String::new();
        if let Some(sign @ ('-' | '+')) = self.peek() {
            text.push(sign);
            self.pos += 1;
        }
        while let Some(c) = self.peek().filter(char::is_ascii_digit) {
            text.push(c);
            self.pos += 1;
        }
        if matches!(self.peek(), Some('L' | 'l')) {
            self.pos += 1;
        }
        if self
            .peek()
            .is_some_and(|c| c.is_alphanumeric() || c == '.' || c == '_')
        {
            return Err(self.expected("the end of the integer"));
        }
        text.parse::<i128>()
            .map(Literal::Int)
            .map_err(|_| format!("`{text}` at byte {start} is not an integer this reader takes"))
    }

    fn word(&mut self) -> Result<Literal, String> {
        let start = self.at();
        let mut word = String::new();
        while let Some(c) = self.peek().filter(|c| c.is_alphanumeric() || *c == '_') {
            word.push(c);
            self.pos += 1;
        }
        match word.as_str() {
            "True" => Ok(Literal::Bool(true)),
            "False" => Ok(Literal::Bool(false)),
            "None" => Ok(Literal::None),
            _ => Err(format!("`{word}` at byte {start} is not a literal")),
        }
    }

    /// Items up to `close`, separated by commas, a trailing comma allowed. A one-item tuple
    /// needs its comma, as in Python: `(4)` is the integer 4.
    fn sequence(&mut self, close: char, depth: usize) -> Result<Vec<Literal>, String> {
        self.pos += 1;
        let mut items = Vec::new();
        let mut comma = false;
        loop {
            self.skip_space();
            if self.peek() == Some(close) {
                self.pos += 1;
                break;
            }
            if !items.is_empty() && !comma {
                return Err(self.expected(&format!("`,` or `{close}`")));
            }
            items.push(self.value(depth + 1)?);
            self.skip_space();
            comma = self.peek() == Some(',');
            if comma {
                self.pos += 1;
            }
        }
        if close == ')' && items.len() == 1 && !comma {
            // Parentheses around one value are only grouping.
            return Err(
                "a parenthesised value that is not a tuple (a one-item tuple needs a \
                        comma)"
                    .into(),
            );
        }
        Ok(items)
    }

    fn dict(&mut self, depth: usize) -> Result<Literal, String> {
        self.pos += 1;
        let mut entries: Vec<(Literal, Literal)> = Vec::new();
        loop {
            self.skip_space();
            if self.peek() == Some('}') {
                self.pos += 1;
                return Ok(Literal::Dict(entries));
            }
            let key_at = self.at();
            let key = self.value(depth + 1)?;
            if entries.iter().any(|(k, _)| *k == key) {
                return Err(match &key {
                    Literal::Str(k) => format!("the key '{k}' is given twice (byte {key_at})"),
                    other => format!("a key ({}) is given twice (byte {key_at})", other.kind()),
                });
            }
            self.skip_space();
            if self.peek() != Some(':') {
                return Err(self.expected("`:`"));
            }
            self.pos += 1;
            let value = self.value(depth + 1)?;
            entries.push((key, value));
            self.skip_space();
            match self.peek() {
                Some(',') => self.pos += 1,
                Some('}') => {}
                _ => return Err(self.expected("`,` or `}`")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dict(text: &str) -> Vec<(Literal, Literal)> {
        match parse(text) {
            Ok(Literal::Dict(d)) => d,
            other => panic!("{text}: {other:?}"),
        }
    }

    #[test]
    fn numpy_headers_parse() {
        let d = dict("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }");
        assert_eq!(d.len(), 3);
        assert_eq!(
            d[2].1,
            Literal::Tuple(vec![Literal::Int(2), Literal::Int(3)])
        );
        let d = dict("{\"descr\": \"<i8\", 'fortran_order': True, 'shape': (4,)}");
        assert_eq!(d[0].1, Literal::Str("<i8".into()));
        assert_eq!(d[2].1, Literal::Tuple(vec![Literal::Int(4)]));
        let d = dict("{'shape': (), 'descr': [('a', '<f4'), ('b', '<i8')], 'x': None}");
        assert_eq!(d[0].1, Literal::Tuple(vec![]));
        assert!(matches!(&d[1].1, Literal::List(l) if l.len() == 2));
        assert_eq!(
            parse("(3L, 2)"),
            Ok(Literal::Tuple(vec![Literal::Int(3), Literal::Int(2)]))
        );
        assert_eq!(
            parse("'a\\'b\\x41\\u00e9'"),
            Ok(Literal::Str("a'bAé".into()))
        );
    }

    #[test]
    fn what_is_not_a_literal_is_refused() {
        for text in [
            "{'shape': (2, 3), 'shape': (4,)}",
            "{'a': 1 'b': 2}",
            "{'a': 1",
            "{'a': (1 2)}",
            "{'a': 'unterminated}",
            "{'a': 1e3}",
            "{'a': 3x}",
            "{'a': foo}",
            "{'a': (4)}",
            "{'a': '\\q'}",
            "{'a': 1} extra",
            "{'descr’: '<f4'}",
            "é",
            "",
            "{'a': 123456789012345678901234567890123456789012}",
        ] {
            assert!(parse(text).is_err(), "{text} parsed: {:?}", parse(text));
        }
        let e = parse("{'shape': (2,), 'shape': (4,)}").unwrap_err();
        assert!(e.contains("'shape' is given twice"), "{e}");
        let deep = format!("{}{}", "[".repeat(100), "]".repeat(100));
        assert!(parse(&deep).unwrap_err().contains("nested"));
    }
}

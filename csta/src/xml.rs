//! The XML inside a CSTA frame as a small element tree, read without
//! caring which namespace edition the PBX speaks: elements are known by
//! their local names (`csta:MakeCall` and `MakeCall` in ed2 to ed5 are the
//! same thing), the root's namespace is kept only to answer in kind.
//! Owns well-formedness and size limits; knows nothing of what a message
//! means (that is [`crate::message`]).
//!
//! Text keeps its escapes resolved (`&lt;`, `&#x41;`); CDATA is text; a
//! document type declaration is refused (no entity of the PBX's own making
//! is ever expanded); comments and processing instructions are skipped.

use quick_xml::events::{BytesStart, Event};
use std::fmt::Write as _;

/// Deepest nesting accepted: CSTA messages are a few levels deep; private
/// data rarely goes past ten.
pub const MAX_DEPTH: usize = 32;

/// Most elements in one message: an event with every optional field and
/// private data has well under a hundred.
pub const MAX_ELEMENTS: usize = 2048;

/// One element: its local name, attributes, text and children.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Element {
    /// The name without its prefix.
    pub name: String,
    /// The namespace it is in, when declared.
    pub namespace: Option<String>,
    /// Attributes by local name, values unescaped (namespace declarations
    /// left out).
    pub attributes: Vec<(String, String)>,
    /// Its own text (all pieces joined), trimmed.
    pub text: String,
    /// Child elements in order.
    pub children: Vec<Element>,
}

/// Why a frame's XML cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum XmlError {
    /// Not well-formed, with the parser's reason.
    #[error("not well-formed XML: {0}")]
    Malformed(String),
    /// No root element.
    #[error("no XML element in the message")]
    Empty,
    /// Something after the root element.
    #[error("more than one root element")]
    TrailingContent,
    /// Nested deeper than [`MAX_DEPTH`].
    #[error("XML nested deeper than {MAX_DEPTH} levels")]
    TooDeep,
    /// More than [`MAX_ELEMENTS`] elements.
    #[error("more than {MAX_ELEMENTS} XML elements")]
    TooManyElements,
    /// A document type declaration.
    #[error("a document type declaration (DOCTYPE) is not accepted in CSTA messages")]
    DocType,
    /// An entity other than the five XML defines and character references.
    #[error("unknown XML entity &{0};")]
    UnknownEntity(String),
}

impl Element {
    /// An element named `name` with no content.
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            ..Self::default()
        }
    }

    /// The first child named `name`.
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    /// Every child named `name`.
    pub fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> {
        self.children.iter().filter(move |c| c.name == name)
    }

    /// Follows `path` through first children of each name.
    pub fn path(&self, path: &[&str]) -> Option<&Element> {
        path.iter().try_fold(self, |e, n| e.child(n))
    }

    /// The text at `path`, when there and not empty.
    pub fn text_at(&self, path: &[&str]) -> Option<&str> {
        self.path(path)
            .map(|e| e.text.as_str())
            .filter(|t| !t.is_empty())
    }

    /// The first element named `name` anywhere below (depth first).
    pub fn find(&self, name: &str) -> Option<&Element> {
        self.children.iter().find_map(|c| {
            if c.name == name {
                Some(c)
            } else {
                c.find(name)
            }
        })
    }

    /// An attribute's value by local name.
    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Reads `bytes` as one XML document.
pub fn parse(bytes: &[u8]) -> Result<Element, XmlError> {
    let mut reader = quick_xml::Reader::from_reader(bytes);
    reader.config_mut().trim_text(false);
    reader.config_mut().check_end_names = true;
    // Open elements, innermost last, with the namespaces each declared.
    let mut stack: Vec<(Element, Vec<(String, String)>)> = Vec::new();
    let mut root: Option<Element> = None;
    let mut count = 0usize;
    let mut buf = Vec::new();
    loop {
        let event = reader
            .read_event_into(&mut buf)
            .map_err(|e| XmlError::Malformed(e.to_string()))?;
        match event {
            Event::Start(start) | Event::Empty(start) if root.is_some() => {
                let _ = start;
                return Err(XmlError::TrailingContent);
            }
            Event::Start(start) => {
                count += 1;
                within_limits(count, stack.len())?;
                stack.push(open(&start, &stack)?);
            }
            Event::Empty(start) => {
                count += 1;
                within_limits(count, stack.len())?;
                let (element, _) = open(&start, &stack)?;
                close(element, &mut stack, &mut root);
            }
            Event::End(_) => {
                let (element, _) = stack
                    .pop()
                    .ok_or_else(|| XmlError::Malformed("an end tag with no start".into()))?;
                close(element, &mut stack, &mut root);
            }
            Event::Text(t) => {
                let text = t.decode().map_err(|e| XmlError::Malformed(e.to_string()))?;
                push_text(&mut stack, &text)?;
            }
            Event::CData(c) => {
                let text = c.decode().map_err(|e| XmlError::Malformed(e.to_string()))?;
                push_text(&mut stack, &text)?;
            }
            Event::GeneralRef(r) => {
                let resolved = match r.resolve_char_ref() {
                    Ok(Some(ch)) => ch.to_string(),
                    Ok(None) => {
                        let name = r.decode().map_err(|e| XmlError::Malformed(e.to_string()))?;
                        quick_xml::escape::resolve_predefined_entity(&name)
                            .ok_or_else(|| {
                                XmlError::UnknownEntity(name.chars().take(32).collect())
                            })?
                            .to_owned()
                    }
                    Err(e) => return Err(XmlError::Malformed(e.to_string())),
                };
                push_text(&mut stack, &resolved)?;
            }
            Event::DocType(_) => return Err(XmlError::DocType),
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
            Event::Eof => break,
        }
        buf.clear();
    }
    if !stack.is_empty() {
        return Err(XmlError::Malformed(format!(
            "the message ends inside <{}>",
            stack.last().map_or("", |(e, _)| e.name.as_str())
        )));
    }
    let mut root = root.ok_or(XmlError::Empty)?;
    trim(&mut root);
    Ok(root)
}

/// Refuses an element past [`MAX_ELEMENTS`] or deeper than [`MAX_DEPTH`].
fn within_limits(count: usize, depth: usize) -> Result<(), XmlError> {
    if count > MAX_ELEMENTS {
        return Err(XmlError::TooManyElements);
    }
    if depth >= MAX_DEPTH {
        return Err(XmlError::TooDeep);
    }
    Ok(())
}

fn push_text(stack: &mut [(Element, Vec<(String, String)>)], text: &str) -> Result<(), XmlError> {
    match stack.last_mut() {
        Some((e, _)) => {
            e.text.push_str(text);
            Ok(())
        }
        // Whitespace around the root is allowed, anything else is not.
        None if text.trim().is_empty() => Ok(()),
        None => Err(XmlError::Malformed("text outside the root element".into())),
    }
}

fn trim(e: &mut Element) {
    let t = e.text.trim();
    if t.len() != e.text.len() {
        e.text = t.to_owned();
    }
    e.children.iter_mut().for_each(trim);
}

fn close(
    element: Element,
    stack: &mut [(Element, Vec<(String, String)>)],
    root: &mut Option<Element>,
) {
    match stack.last_mut() {
        Some((parent, _)) => parent.children.push(element),
        None => *root = Some(element),
    }
}

fn open(
    start: &BytesStart<'_>,
    stack: &[(Element, Vec<(String, String)>)],
) -> Result<(Element, Vec<(String, String)>), XmlError> {
    let utf8 = |b: &[u8]| {
        std::str::from_utf8(b)
            .map(str::to_owned)
            .map_err(|e| XmlError::Malformed(e.to_string()))
    };
    let qname = start.name();
    let name = utf8(qname.local_name().as_ref())?;
    let prefix = match qname.prefix() {
        Some(p) => utf8(p.as_ref())?,
        None => String::new(),
    };
    let mut declared = Vec::new();
    let mut attributes = Vec::new();
    for a in start.attributes() {
        let a = a.map_err(|e| XmlError::Malformed(e.to_string()))?;
        let value = a
            .unescape_value()
            .map_err(|e| XmlError::Malformed(e.to_string()))?
            .into_owned();
        let key = utf8(a.key.as_ref())?;
        if key == "xmlns" {
            declared.push((String::new(), value));
        } else if let Some(p) = key.strip_prefix("xmlns:") {
            declared.push((p.to_owned(), value));
        } else {
            attributes.push((utf8(a.key.local_name().as_ref())?, value));
        }
    }
    let namespace = declared
        .iter()
        .rev()
        .chain(stack.iter().rev().flat_map(|(_, d)| d.iter().rev()))
        .find(|(p, _)| *p == prefix)
        .map(|(_, uri)| uri.clone());
    Ok((
        Element {
            name,
            namespace,
            attributes,
            ..Element::default()
        },
        declared,
    ))
}

/// `text` with the five XML specials escaped, for element content and
/// attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Control characters other than tab and line ends are not XML.
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => {
                let _ = write!(out, "&#xFFFD;");
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_and_editions_do_not_matter_to_names() {
        let a = parse(
            br#"<?xml version="1.0" encoding="UTF-8"?>
<csta:MakeCallResponse xmlns:csta="http://www.ecma-international.org/standards/ecma-323/csta/ed4">
  <csta:callingDevice><csta:callID>12</csta:callID><csta:deviceID>1000</csta:deviceID></csta:callingDevice>
</csta:MakeCallResponse>"#,
        )
        .unwrap();
        assert_eq!(a.name, "MakeCallResponse");
        assert_eq!(
            a.namespace.as_deref(),
            Some("http://www.ecma-international.org/standards/ecma-323/csta/ed4")
        );
        assert_eq!(a.text_at(&["callingDevice", "callID"]), Some("12"));
        let b = parse(br#"<MakeCallResponse xmlns="http://www.ecma-international.org/standards/ecma-323/csta/ed2"><callingDevice><callID>12</callID><deviceID>1000</deviceID></callingDevice></MakeCallResponse>"#).unwrap();
        assert_eq!(b.text_at(&["callingDevice", "deviceID"]), Some("1000"));
        assert_eq!(
            b.path(&["callingDevice", "deviceID"]).unwrap().namespace,
            b.namespace,
            "a default namespace is inherited"
        );
    }

    #[test]
    fn escapes_and_cdata_are_resolved() {
        let e = parse(b"<a><b>N&lt;3021&gt;;noa=nk &#x41;&#66;</b><c><![CDATA[<x>&]]></c><d k=\"&quot;1&quot;\"/></a>").unwrap();
        assert_eq!(e.text_at(&["b"]), Some("N<3021>;noa=nk AB"));
        assert_eq!(e.text_at(&["c"]), Some("<x>&"));
        assert_eq!(e.child("d").unwrap().attribute("k"), Some("\"1\""));
        assert_eq!(escape("a<b&\"c'\u{1}"), "a&lt;b&amp;&quot;c&apos;&#xFFFD;");
    }

    #[test]
    fn broken_and_hostile_xml_is_refused_with_a_reason() {
        for (bad, want) in [
            (&b"<a><b></a>"[..], "not well-formed"),
            (b"<a>", "ends inside <a>"),
            (b"", "no XML element"),
            (b"<a/><b/>", "more than one root"),
            (b"<!DOCTYPE a [<!ENTITY x \"y\">]><a>&x;</a>", "DOCTYPE"),
            (b"<a>&x;</a>", "unknown XML entity &x;"),
            (b"junk<a/>", "text outside"),
        ] {
            let e = parse(bad).unwrap_err().to_string();
            assert!(e.contains(want), "{:?}: {e}", String::from_utf8_lossy(bad));
        }
        let deep = "<a>".repeat(MAX_DEPTH + 1) + &"</a>".repeat(MAX_DEPTH + 1);
        assert_eq!(parse(deep.as_bytes()), Err(XmlError::TooDeep));
        let wide = format!("<a>{}</a>", "<b/>".repeat(MAX_ELEMENTS));
        assert_eq!(parse(wide.as_bytes()), Err(XmlError::TooManyElements));
    }
}

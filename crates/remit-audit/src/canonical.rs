//! RFC 8785 canonical JSON, written straight from `serde::Serialize` values.
//!
//! Records are serialised on every request, so this is a `serde::Serializer` of its own
//! rather than a detour through `serde_json::Value` (which allocates a string for every key
//! and value) or a JCS crate (which goes through `Value` too). Members of an object are
//! written as they come; an object whose members did not come sorted is rewritten once, in
//! order, when it ends. Everything else follows RFC 8785:
//!
//! - strings are escaped by `serde_json`, whose escaping is exactly §3.2.2.2 (the
//!   two-character escapes, `\u00xx` in lower case for other controls, everything else as
//!   is);
//! - object members are sorted by their keys' UTF-16 code units (§3.2.3), and a key may
//!   appear once;
//! - integers whose magnitude is at most 2^53 are written as integers; any other number is a
//!   double in RFC 8785 and is written by `serde_json_canonicalizer` in ECMAScript form
//!   (§3.2.2.3); a non-finite float is written as `null`, as `serde_json` writes it.
//!
//! The test suite checks the output against `serde_json_canonicalizer` on arbitrary values
//! and on every kind of record.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::ops::Range;

use serde::Serialize;
use serde::ser::{self, Impossible};

/// A value that cannot be written as canonical JSON (a map with keys that are not strings,
/// a key given twice).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot write canonical JSON: {0}")]
pub struct CanonicalError(pub String);

impl ser::Error for CanonicalError {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        Self(msg.to_string())
    }
}

/// Serialises a value as RFC 8785 canonical JSON.
pub fn canonical<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CanonicalError> {
    let mut out = Vec::with_capacity(1024);
    value.serialize(Writer { out: &mut out })?;
    Ok(out)
}

/// The largest integer magnitude a double holds exactly (RFC 8785 §3.2.2.3 writes any
/// integer beyond it as a double).
const EXACT: u64 = 1 << 53;

fn err(e: impl std::fmt::Display) -> CanonicalError {
    CanonicalError(e.to_string())
}

fn string(out: &mut Vec<u8>, s: &str) -> Result<(), CanonicalError> {
    let bytes = s.as_bytes();
    // Most strings (every key, ids, digests, times) have nothing to escape: written as
    // they are.
    if needs_escape(bytes) {
        return serde_json::to_writer(&mut *out, s).map_err(err);
    }
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    out.extend_from_slice(bytes);
    out.push(b'"');
    Ok(())
}

/// Whether a string holds a byte JSON escapes (a control character, `"` or `\`), eight
/// bytes at a time: a byte below 0x20 borrows through `x - 0x20…20` (`hasless`), an equal
/// byte through `(x ^ c…c) - 0x01…01` (`haszero`); neither misses one, and a false alarm
/// would only send the string to `serde_json`'s escaping, which writes it the same.
fn needs_escape(bytes: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let x = u64::from_le_bytes(word);
        let quote = x ^ (ONES * u64::from(b'"'));
        let backslash = x ^ (ONES * u64::from(b'\\'));
        let found = (x.wrapping_sub(ONES * 0x20) & !x)
            | (quote.wrapping_sub(ONES) & !quote)
            | (backslash.wrapping_sub(ONES) & !backslash);
        if found & HIGH != 0 {
            return true;
        }
    }
    chunks
        .remainder()
        .iter()
        .any(|&b| b < 0x20 || b == b'"' || b == b'\\')
}

/// An integer as RFC 8785 writes it: exactly, or past 2^53 as the double it rounds to.
fn integer<N>(out: &mut Vec<u8>, n: N, magnitude: u64) -> Result<(), CanonicalError>
where
    N: Serialize,
{
    if magnitude <= EXACT {
        serde_json::to_writer(&mut *out, &n).map_err(err)
    } else {
        out.extend(serde_json_canonicalizer::to_vec(&n).map_err(err)?);
        Ok(())
    }
}

fn float(out: &mut Vec<u8>, f: f64) -> Result<(), CanonicalError> {
    if f.is_finite() {
        out.extend(serde_json_canonicalizer::to_vec(&f).map_err(err)?);
    } else {
        out.extend_from_slice(b"null");
    }
    Ok(())
}

/// Writes one value into the output.
struct Writer<'a> {
    out: &'a mut Vec<u8>,
}

impl<'a> ser::Serializer for Writer<'a> {
    type Ok = ();
    type Error = CanonicalError;
    type SerializeSeq = Array<'a>;
    type SerializeTuple = Array<'a>;
    type SerializeTupleStruct = Array<'a>;
    type SerializeTupleVariant = Array<'a>;
    type SerializeMap = Object<'a>;
    type SerializeStruct = Object<'a>;
    type SerializeStructVariant = Object<'a>;

    fn serialize_bool(self, v: bool) -> Result<(), CanonicalError> {
        self.out
            .extend_from_slice(if v { b"true" } else { b"false" });
        Ok(())
    }
    fn serialize_i8(self, v: i8) -> Result<(), CanonicalError> {
        self.serialize_i64(v.into())
    }
    fn serialize_i16(self, v: i16) -> Result<(), CanonicalError> {
        self.serialize_i64(v.into())
    }
    fn serialize_i32(self, v: i32) -> Result<(), CanonicalError> {
        self.serialize_i64(v.into())
    }
    fn serialize_i64(self, v: i64) -> Result<(), CanonicalError> {
        integer(self.out, v, v.unsigned_abs())
    }
    fn serialize_i128(self, v: i128) -> Result<(), CanonicalError> {
        match (i64::try_from(v), u64::try_from(v)) {
            (Ok(i), _) => self.serialize_i64(i),
            (_, Ok(u)) => self.serialize_u64(u),
            _ => Err(CanonicalError(format!("{v} is out of range for JSON"))),
        }
    }
    fn serialize_u8(self, v: u8) -> Result<(), CanonicalError> {
        self.serialize_u64(v.into())
    }
    fn serialize_u16(self, v: u16) -> Result<(), CanonicalError> {
        self.serialize_u64(v.into())
    }
    fn serialize_u32(self, v: u32) -> Result<(), CanonicalError> {
        self.serialize_u64(v.into())
    }
    fn serialize_u64(self, v: u64) -> Result<(), CanonicalError> {
        integer(self.out, v, v)
    }
    fn serialize_u128(self, v: u128) -> Result<(), CanonicalError> {
        match u64::try_from(v) {
            Ok(u) => self.serialize_u64(u),
            Err(_) => Err(CanonicalError(format!("{v} is out of range for JSON"))),
        }
    }
    fn serialize_f32(self, v: f32) -> Result<(), CanonicalError> {
        float(self.out, v.into())
    }
    fn serialize_f64(self, v: f64) -> Result<(), CanonicalError> {
        float(self.out, v)
    }
    fn serialize_char(self, v: char) -> Result<(), CanonicalError> {
        string(self.out, v.encode_utf8(&mut [0; 4]))
    }
    fn serialize_str(self, v: &str) -> Result<(), CanonicalError> {
        string(self.out, v)
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<(), CanonicalError> {
        // As `serde_json` writes bytes: an array of numbers.
        let mut seq = ser::Serializer::serialize_seq(self, Some(v.len()))?;
        for b in v {
            ser::SerializeSeq::serialize_element(&mut seq, b)?;
        }
        ser::SerializeSeq::end(seq)
    }
    fn serialize_none(self) -> Result<(), CanonicalError> {
        self.serialize_unit()
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), CanonicalError> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), CanonicalError> {
        self.out.extend_from_slice(b"null");
        Ok(())
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<(), CanonicalError> {
        self.serialize_unit()
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<(), CanonicalError> {
        string(self.out, variant)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<(), CanonicalError> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), CanonicalError> {
        // `{"variant":value}`: one member, sorted as it is.
        self.out.push(b'{');
        string(self.out, variant)?;
        self.out.push(b':');
        value.serialize(Writer {
            out: &mut *self.out,
        })?;
        self.out.push(b'}');
        Ok(())
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Array<'a>, CanonicalError> {
        self.out.push(b'[');
        Ok(Array {
            out: self.out,
            first: true,
            variant: false,
        })
    }
    fn serialize_tuple(self, len: usize) -> Result<Array<'a>, CanonicalError> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_struct(
        self,
        _: &'static str,
        len: usize,
    ) -> Result<Array<'a>, CanonicalError> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Array<'a>, CanonicalError> {
        self.out.push(b'{');
        string(self.out, variant)?;
        self.out.extend_from_slice(b":[");
        Ok(Array {
            out: self.out,
            first: true,
            variant: true,
        })
    }
    fn serialize_map(self, len: Option<usize>) -> Result<Object<'a>, CanonicalError> {
        Ok(Object::open(self.out, len.unwrap_or(8), false))
    }
    fn serialize_struct(self, _: &'static str, len: usize) -> Result<Object<'a>, CanonicalError> {
        Ok(Object::open(self.out, len, false))
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Object<'a>, CanonicalError> {
        self.out.push(b'{');
        string(self.out, variant)?;
        self.out.push(b':');
        Ok(Object::open(self.out, len, true))
    }
}

/// An array being written; `variant` closes the `{"variant":[…]}` around it too.
struct Array<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
    variant: bool,
}

impl Array<'_> {
    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), CanonicalError> {
        if !std::mem::replace(&mut self.first, false) {
            self.out.push(b',');
        }
        value.serialize(Writer {
            out: &mut *self.out,
        })
    }

    fn close(self) -> Result<(), CanonicalError> {
        self.out.push(b']');
        if self.variant {
            self.out.push(b'}');
        }
        Ok(())
    }
}

impl ser::SerializeSeq for Array<'_> {
    type Ok = ();
    type Error = CanonicalError;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), CanonicalError> {
        self.element(v)
    }
    fn end(self) -> Result<(), CanonicalError> {
        self.close()
    }
}

impl ser::SerializeTuple for Array<'_> {
    type Ok = ();
    type Error = CanonicalError;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), CanonicalError> {
        self.element(v)
    }
    fn end(self) -> Result<(), CanonicalError> {
        self.close()
    }
}

impl ser::SerializeTupleStruct for Array<'_> {
    type Ok = ();
    type Error = CanonicalError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), CanonicalError> {
        self.element(v)
    }
    fn end(self) -> Result<(), CanonicalError> {
        self.close()
    }
}

impl ser::SerializeTupleVariant for Array<'_> {
    type Ok = ();
    type Error = CanonicalError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), CanonicalError> {
        self.element(v)
    }
    fn end(self) -> Result<(), CanonicalError> {
        self.close()
    }
}

/// One member written so far: where its key and `"key":value` lie in the output. Keys
/// are compared where they were written, so no key is copied.
struct Member {
    /// The key's bytes as written, between its quotes.
    key: Range<usize>,
    /// Whether the key is ASCII (its UTF-16 order is then its byte order).
    ascii: bool,
    /// Whether the key was written with escapes (it is then compared decoded).
    escaped: bool,
    /// An unescaped ASCII key's first sixteen bytes, big-endian and zero-padded: keys
    /// nearly always differ there, so nearly every comparison is one integer comparison.
    prefix: u128,
    start: usize,
    end: usize,
}

impl Member {
    fn fast(&self) -> bool {
        self.ascii && !self.escaped
    }
}

/// The first sixteen bytes of a key as a big-endian integer, zero-padded (a key holds no
/// NUL unescaped, so padding sorts before every byte, as a shorter key does).
fn prefix_of(key: &[u8]) -> u128 {
    let mut bytes = [0u8; 16];
    let n = key.len().min(16);
    bytes[..n].copy_from_slice(&key[..n]);
    u128::from_be_bytes(bytes)
}

/// A key as the object's members compare: its text.
fn key_text<'b>(out: &'b [u8], m: &Member) -> Cow<'b, str> {
    let Some(raw) = out.get(m.key.clone()) else {
        return Cow::Borrowed("");
    };
    if m.escaped {
        // Written here by `serde_json`, so it reads back.
        let quoted = out.get(m.key.start - 1..m.key.end + 1).unwrap_or_default();
        Cow::Owned(serde_json::from_slice::<String>(quoted).unwrap_or_default())
    } else {
        String::from_utf8_lossy(raw)
    }
}

/// RFC 8785 §3.2.3: keys compare by their UTF-16 code units; for ASCII keys that is their
/// byte order, and an unescaped key's bytes are the key.
fn order(out: &[u8], a: &Member, b: &Member) -> Ordering {
    if a.fast() && b.fast() {
        a.prefix
            .cmp(&b.prefix)
            .then_with(|| out.get(a.key.clone()).cmp(&out.get(b.key.clone())))
    } else {
        key_text(out, a)
            .encode_utf16()
            .cmp(key_text(out, b).encode_utf16())
    }
}

/// An object being written. Members go straight to the output, comma-separated, in the
/// order they come; `end` puts them in key order if they did not come in it.
struct Object<'a> {
    out: &'a mut Vec<u8>,
    /// Where the first member starts (just after `{`).
    body: usize,
    members: Vec<Member>,
    /// Whether the members came in key order so far.
    sorted: bool,
    /// The member whose key is written and whose value comes next.
    pending: Option<Member>,
    /// Closes the `{"variant":{…}}` around the object too.
    variant: bool,
}

impl<'a> Object<'a> {
    fn open(out: &'a mut Vec<u8>, len: usize, variant: bool) -> Self {
        out.push(b'{');
        let body = out.len();
        Self {
            out,
            body,
            // A bound on the first allocation: `len` comes from the value being written.
            members: Vec::with_capacity(len.min(64)),
            sorted: true,
            pending: None,
            variant,
        }
    }

    /// Writes a key (and the comma before it), given what writes it: its raw length and
    /// whether it is ASCII.
    fn key(
        &mut self,
        write: impl FnOnce(&mut Vec<u8>) -> Result<(usize, bool), CanonicalError>,
    ) -> Result<(), CanonicalError> {
        if !self.members.is_empty() {
            self.out.push(b',');
        }
        let start = self.out.len();
        let (raw, ascii) = write(self.out)?;
        let key = start + 1..self.out.len() - 1;
        let prefix = prefix_of(self.out.get(key.clone()).unwrap_or_default());
        self.out.push(b':');
        self.pending = Some(Member {
            escaped: key.len() != raw,
            key,
            ascii,
            prefix,
            start,
            end: start,
        });
        Ok(())
    }

    fn value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), CanonicalError> {
        let mut m = self
            .pending
            .take()
            .ok_or_else(|| CanonicalError("a map value came without its key".into()))?;
        value.serialize(Writer {
            out: &mut *self.out,
        })?;
        m.end = self.out.len();
        if let Some(last) = self.members.last() {
            match order(self.out, last, &m) {
                Ordering::Less => {}
                Ordering::Equal => return Err(duplicate(self.out, &m)),
                Ordering::Greater => self.sorted = false,
            }
        }
        self.members.push(m);
        Ok(())
    }

    fn field<T: Serialize + ?Sized>(&mut self, key: &str, v: &T) -> Result<(), CanonicalError> {
        self.key(|out| string(out, key).map(|()| (key.len(), key.is_ascii())))?;
        self.value(v)
    }

    /// Puts the members in key order, refusing a key given twice. When every key is
    /// unescaped ASCII (every record's are), the members are sorted by their prefixes with
    /// their indices, small integers, and the keys' bytes are read only where prefixes tie.
    fn sort(&mut self) -> Result<(), CanonicalError> {
        let out = &*self.out;
        if !self.members.iter().all(Member::fast) {
            self.members.sort_unstable_by(|a, b| order(out, a, b));
            if let Some(w) = self
                .members
                .windows(2)
                .find(|w| order(out, &w[0], &w[1]) == Ordering::Equal)
            {
                return Err(duplicate(out, &w[0]));
            }
            return Ok(());
        }
        let members = &self.members;
        let bytes = |i: usize| members.get(i).and_then(|m| out.get(m.key.clone()));
        let mut keys: Vec<(u128, usize)> = members
            .iter()
            .enumerate()
            .map(|(i, m)| (m.prefix, i))
            .collect();
        keys.sort_unstable_by(|a, b| a.0.cmp(&b.0).then_with(|| bytes(a.1).cmp(&bytes(b.1))));
        if let Some(w) = keys
            .windows(2)
            .find(|w| w[0].0 == w[1].0 && bytes(w[0].1) == bytes(w[1].1))
            && let Some(m) = members.get(w[0].1)
        {
            return Err(duplicate(out, m));
        }
        let mut slots: Vec<Option<Member>> = self.members.drain(..).map(Some).collect();
        self.members
            .extend(keys.iter().filter_map(|&(_, i)| slots.get_mut(i)?.take()));
        Ok(())
    }

    fn close(mut self) -> Result<(), CanonicalError> {
        if !self.sorted {
            self.sort()?;
            // Rewrite the members in order, from a copy of what was written.
            let written = self.out.split_off(self.body);
            self.out.reserve(written.len() + 2);
            for (i, m) in self.members.iter().enumerate() {
                if i > 0 {
                    self.out.push(b',');
                }
                let range = (m.start - self.body)..(m.end - self.body);
                self.out
                    .extend_from_slice(written.get(range).unwrap_or_default());
            }
        }
        self.out.push(b'}');
        if self.variant {
            self.out.push(b'}');
        }
        Ok(())
    }
}

fn duplicate(out: &[u8], m: &Member) -> CanonicalError {
    CanonicalError(format!("the member `{}` is given twice", key_text(out, m)))
}

impl ser::SerializeMap for Object<'_> {
    type Ok = ();
    type Error = CanonicalError;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), CanonicalError> {
        self.key(|out| key.serialize(KeyWriter { out }))
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), CanonicalError> {
        self.value(v)
    }
    fn end(self) -> Result<(), CanonicalError> {
        self.close()
    }
}

impl ser::SerializeStruct for Object<'_> {
    type Ok = ();
    type Error = CanonicalError;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        v: &T,
    ) -> Result<(), CanonicalError> {
        self.field(key, v)
    }
    fn end(self) -> Result<(), CanonicalError> {
        self.close()
    }
}

impl ser::SerializeStructVariant for Object<'_> {
    type Ok = ();
    type Error = CanonicalError;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        v: &T,
    ) -> Result<(), CanonicalError> {
        self.field(key, v)
    }
    fn end(self) -> Result<(), CanonicalError> {
        self.close()
    }
}

/// A map key: a string, or what `serde_json` turns into one (a character, an integer, a
/// boolean, a unit variant's name).
struct KeyWriter<'a> {
    out: &'a mut Vec<u8>,
}

impl KeyWriter<'_> {
    /// Writes the key as a JSON string: its raw length, and whether it is ASCII.
    fn text(self, key: &str) -> Result<(usize, bool), CanonicalError> {
        string(self.out, key)?;
        Ok((key.len(), key.is_ascii()))
    }

    fn number(self, n: impl std::fmt::Display) -> Result<(usize, bool), CanonicalError> {
        let start = self.out.len();
        self.out.push(b'"');
        std::io::Write::write_fmt(&mut *self.out, format_args!("{n}")).map_err(err)?;
        self.out.push(b'"');
        Ok((self.out.len() - start - 2, true))
    }
}

fn not_a_key() -> CanonicalError {
    CanonicalError("a map key must be a string".into())
}

impl ser::Serializer for KeyWriter<'_> {
    type Ok = (usize, bool);
    type Error = CanonicalError;
    type SerializeSeq = Impossible<(usize, bool), CanonicalError>;
    type SerializeTuple = Impossible<(usize, bool), CanonicalError>;
    type SerializeTupleStruct = Impossible<(usize, bool), CanonicalError>;
    type SerializeTupleVariant = Impossible<(usize, bool), CanonicalError>;
    type SerializeMap = Impossible<(usize, bool), CanonicalError>;
    type SerializeStruct = Impossible<(usize, bool), CanonicalError>;
    type SerializeStructVariant = Impossible<(usize, bool), CanonicalError>;

    fn serialize_str(self, v: &str) -> Result<(usize, bool), CanonicalError> {
        self.text(v)
    }
    fn serialize_char(self, v: char) -> Result<(usize, bool), CanonicalError> {
        self.text(v.encode_utf8(&mut [0; 4]))
    }
    fn serialize_bool(self, v: bool) -> Result<(usize, bool), CanonicalError> {
        self.number(v)
    }
    fn serialize_i8(self, v: i8) -> Result<(usize, bool), CanonicalError> {
        self.number(v)
    }
    fn serialize_i16(self, v: i16) -> Result<(usize, bool), CanonicalError> {
        self.number(v)
    }
    fn serialize_i32(self, v: i32) -> Result<(usize, bool), CanonicalError> {
        self.number(v)
    }
    fn serialize_i64(self, v: i64) -> Result<(usize, bool), CanonicalError> {
        self.number(v)
    }
    fn serialize_u8(self, v: u8) -> Result<(usize, bool), CanonicalError> {
        self.number(v)
    }
    fn serialize_u16(self, v: u16) -> Result<(usize, bool), CanonicalError> {
        self.number(v)
    }
    fn serialize_u32(self, v: u32) -> Result<(usize, bool), CanonicalError> {
        self.number(v)
    }
    fn serialize_u64(self, v: u64) -> Result<(usize, bool), CanonicalError> {
        self.number(v)
    }
    fn serialize_f32(self, _: f32) -> Result<(usize, bool), CanonicalError> {
        Err(not_a_key())
    }
    fn serialize_f64(self, _: f64) -> Result<(usize, bool), CanonicalError> {
        Err(not_a_key())
    }
    fn serialize_bytes(self, _: &[u8]) -> Result<(usize, bool), CanonicalError> {
        Err(not_a_key())
    }
    fn serialize_none(self) -> Result<(usize, bool), CanonicalError> {
        Err(not_a_key())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, _: &T) -> Result<(usize, bool), CanonicalError> {
        Err(not_a_key())
    }
    fn serialize_unit(self) -> Result<(usize, bool), CanonicalError> {
        Err(not_a_key())
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<(usize, bool), CanonicalError> {
        Err(not_a_key())
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<(usize, bool), CanonicalError> {
        self.text(variant)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<(usize, bool), CanonicalError> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<(usize, bool), CanonicalError> {
        Err(not_a_key())
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, CanonicalError> {
        Err(not_a_key())
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, CanonicalError> {
        Err(not_a_key())
    }
    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct, CanonicalError> {
        Err(not_a_key())
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, CanonicalError> {
        Err(not_a_key())
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, CanonicalError> {
        Err(not_a_key())
    }
    fn serialize_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStruct, CanonicalError> {
        Err(not_a_key())
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, CanonicalError> {
        Err(not_a_key())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_out_of_order_are_sorted_and_a_repeated_key_is_refused() {
        #[derive(Serialize)]
        struct Late {
            zeta: u8,
            alpha: Vec<u8>,
            #[serde(rename = "\u{e000}")]
            private_use: bool,
            #[serde(rename = "\u{1f600}")]
            astral: bool,
        }
        let v = Late {
            zeta: 1,
            alpha: vec![2, 3],
            private_use: true,
            astral: false,
        };
        // U+1F600 is the surrogate pair D83D DE00, before U+E000 in UTF-16 order.
        assert_eq!(
            String::from_utf8(canonical(&v).unwrap()).unwrap(),
            "{\"alpha\":[2,3],\"zeta\":1,\"\u{1f600}\":false,\"\u{e000}\":true}"
        );

        struct Twice;
        impl Serialize for Twice {
            fn serialize<S: ser::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                use ser::SerializeMap;
                let mut m = s.serialize_map(None)?;
                m.serialize_entry("b", &1)?;
                m.serialize_entry("a", &2)?;
                m.serialize_entry("b", &3)?;
                m.end()
            }
        }
        assert!(canonical(&Twice).unwrap_err().0.contains("`b`"));
    }

    #[test]
    fn every_byte_that_needs_an_escape_is_seen_wherever_it_is() {
        let text = "a\u{e9}z".repeat(8);
        for len in 0..=text.len() {
            if !text.is_char_boundary(len) {
                continue;
            }
            let plain = &text[..len];
            assert!(!needs_escape(plain.as_bytes()), "{plain:?}");
            for at in (0..=plain.len()).filter(|&i| plain.is_char_boundary(i)) {
                for bad in (0u8..0x20).chain([b'"', b'\\']) {
                    let mut s = plain.to_owned();
                    s.insert(at, char::from(bad));
                    assert!(needs_escape(s.as_bytes()), "{s:?}");
                    assert_eq!(
                        canonical(&s).unwrap(),
                        serde_json::to_vec(&s).unwrap(),
                        "{s:?}"
                    );
                }
            }
        }
        // Bytes next to the ones escaped, and UTF-8's high bytes, are no alarm.
        for s in [
            "\u{7f}!#[]\u{ff}\u{2028}",
            "                ",
            "\u{10ffff}\u{10ffff}",
        ] {
            assert!(!needs_escape(s.as_bytes()), "{s:?}");
        }
    }

    #[test]
    fn numbers_past_two_to_the_53_are_doubles_and_non_finite_floats_are_null() {
        assert_eq!(canonical(&(1u64 << 53)).unwrap(), b"9007199254740992");
        assert_eq!(canonical(&u64::MAX).unwrap(), b"18446744073709552000");
        assert_eq!(canonical(&-(1i64 << 53)).unwrap(), b"-9007199254740992");
        assert_eq!(canonical(&1.5e300f64).unwrap(), b"1.5e+300");
        assert_eq!(canonical(&f64::NAN).unwrap(), b"null");
        assert_eq!(canonical(&3.0f64).unwrap(), b"3");
        let mut keys = std::collections::HashMap::new();
        keys.insert(vec![1u8], 1);
        assert!(canonical(&keys).is_err());
    }
}

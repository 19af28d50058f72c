//! Matomo Tracking HTTP API parameters: one request's key/value pairs into a [`RawHit`].
//!
//! Values are bounded (cut, like Matomo does) and unknown parameters are ignored. Nothing here
//! is stored: [`crate::Analytics::prepare`] minimises a `RawHit` before it is queued.
//!
//! A `RawHit` borrows its values from the request (query string, form body or bulk JSON body)
//! whenever they need no decoding, so parsing a hit allocates only for percent-encoded values.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::url::truncate;

/// Longest query string or form body of one tracking request, in bytes.
pub const MAX_REQUEST_BYTES: usize = 16 * 1024;
/// Most requests in one bulk request.
pub const MAX_BULK_REQUESTS: usize = 1000;
/// Largest bulk request body, in bytes.
pub const MAX_BULK_BYTES: usize = 2 * 1024 * 1024;

const MAX_URL: usize = 4096;
const MAX_TEXT: usize = 512;
const MAX_EVENT: usize = 256;
const MAX_UID: usize = 512;
const MAX_TOKEN: usize = 256;
/// A consent id is a UUID (36 characters); anything longer is cut and then fails to parse.
const MAX_CONSENT_ID: usize = 64;

/// The parameter that carries the consent id of a hit (see `tutela-http`'s consent gate).
pub const CONSENT_PARAM: &str = "tutela_consent";

/// The parameters of one tracking request, bounded, not yet minimised. Values borrow from the
/// request when they needed no decoding.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RawHit<'a> {
    pub idsite: Option<Cow<'a, str>>,
    pub rec: bool,
    pub url: Option<Cow<'a, str>>,
    pub action_name: Option<Cow<'a, str>>,
    /// The tracker's visitor id (`_id`, from its `_pk_id` cookie).
    pub visitor_id: Option<Cow<'a, str>>,
    /// The site's user id (`uid`); only ever hashed.
    pub uid: Option<Cow<'a, str>>,
    pub res: Option<Cow<'a, str>>,
    pub ua: Option<Cow<'a, str>>,
    pub uadata: Option<Cow<'a, str>>,
    pub urlref: Option<Cow<'a, str>>,
    pub e_c: Option<Cow<'a, str>>,
    pub e_a: Option<Cow<'a, str>>,
    pub e_n: Option<Cow<'a, str>>,
    pub e_v: Option<Cow<'a, str>>,
    pub link: Option<Cow<'a, str>>,
    pub download: Option<Cow<'a, str>>,
    pub search: Option<Cow<'a, str>>,
    pub pv_id: Option<Cow<'a, str>>,
    pub new_visit: bool,
    /// `send_image=0` asks for a 204 instead of the GIF.
    pub send_image: bool,
    pub bots: bool,
    pub ping: bool,
    pub cip: Option<Cow<'a, str>>,
    pub cdt: Option<Cow<'a, str>>,
    pub token_auth: Option<Cow<'a, str>>,
    /// `tutela_consent`: the consent id the hit carries (read by the consent gate only; never
    /// stored with the hit).
    pub consent_id: Option<Cow<'a, str>>,
}

fn flag(v: &str) -> bool {
    matches!(v.trim(), "1" | "true")
}

/// The value trimmed and cut to `max` characters; None when empty. Borrowed values stay
/// borrowed; an owned value is kept as is when nothing was cut.
/// A user id (`uid`) as a hit carries it: trimmed and cut to its bound; None when empty. The
/// rights hooks read a user id given to them the same way, so both give the same pseudonym.
pub fn user_id(s: &str) -> Option<&str> {
    let t = truncate(s.trim(), MAX_UID);
    (!t.is_empty()).then_some(t)
}

fn text(v: Cow<'_, str>, max: usize) -> Option<Cow<'_, str>> {
    match v {
        Cow::Borrowed(s) => {
            let t = truncate(s.trim(), max);
            (!t.is_empty()).then_some(Cow::Borrowed(t))
        }
        Cow::Owned(s) => {
            let t = truncate(s.trim(), max);
            if t.is_empty() {
                None
            } else if t.len() == s.len() {
                Some(Cow::Owned(s))
            } else {
                Some(Cow::Owned(t.to_string()))
            }
        }
    }
}

fn owned(v: Option<Cow<'_, str>>) -> Option<Cow<'static, str>> {
    v.map(|c| Cow::Owned(c.into_owned()))
}

impl<'a> RawHit<'a> {
    fn empty() -> Self {
        RawHit {
            send_image: true,
            ..RawHit::default()
        }
    }

    /// Sets one parameter (unknown ones are ignored; a later value overrides an earlier one).
    fn set(&mut self, k: &str, v: Cow<'a, str>) {
        self.set_with(k, || v);
    }

    /// Same as [`RawHit::set`], the value produced (decoded) only for a known parameter.
    fn set_with(&mut self, k: &str, v: impl FnOnce() -> Cow<'a, str>) {
        let h = self;
        match k {
            "idsite" => h.idsite = text(v(), 32),
            "rec" => h.rec = flag(&v()),
            "url" => h.url = text(v(), MAX_URL),
            "action_name" => h.action_name = text(v(), MAX_TEXT),
            "_id" => h.visitor_id = text(v(), 64),
            "uid" => h.uid = text(v(), MAX_UID),
            "res" => h.res = text(v(), 32),
            "ua" => h.ua = text(v(), crate::ua::MAX_UA_CHARS),
            "uadata" => h.uadata = text(v(), crate::ua::MAX_UADATA_BYTES + 1),
            "urlref" => h.urlref = text(v(), MAX_URL),
            "e_c" => h.e_c = text(v(), MAX_EVENT),
            "e_a" => h.e_a = text(v(), MAX_EVENT),
            "e_n" => h.e_n = text(v(), MAX_EVENT),
            "e_v" => h.e_v = text(v(), 64),
            "link" => h.link = text(v(), MAX_URL),
            "download" => h.download = text(v(), MAX_URL),
            "search" => h.search = text(v(), MAX_TEXT),
            "pv_id" => h.pv_id = text(v(), 32),
            "new_visit" => h.new_visit = flag(&v()),
            "send_image" => h.send_image = flag(&v()),
            "bots" => h.bots = flag(&v()),
            "ping" => h.ping = flag(&v()),
            "cip" => h.cip = text(v(), 64),
            "cdt" => h.cdt = text(v(), 64),
            "token_auth" => h.token_auth = text(v(), MAX_TOKEN),
            CONSENT_PARAM => h.consent_id = text(v(), MAX_CONSENT_ID),
            _ => {}
        }
    }

    /// Builds a hit from key/value pairs (query string, form body or a bulk entry). Later
    /// values override earlier ones, so the body wins over the query string.
    pub fn from_pairs(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let mut h = RawHit::empty();
        for (k, v) in pairs {
            h.set(k, Cow::Borrowed(v));
        }
        h
    }

    /// Parses an `application/x-www-form-urlencoded` string (a query string, with or without
    /// its leading `?`). The caller bounds its length. Values that hold no escapes are borrowed
    /// from `query` (no copy).
    pub fn from_query(query: &'a str) -> Self {
        let query = query.strip_prefix('?').unwrap_or(query);
        let mut h = RawHit::empty();
        h.add_form(query);
        h
    }

    /// Merges the query-string hit with a form body: body values win, flags combine.
    pub fn merge_query_and_body(query: &'a str, body: &'a str) -> Self {
        let query = query.strip_prefix('?').unwrap_or(query);
        let mut h = RawHit::empty();
        h.add_form(query);
        h.add_form(body);
        h
    }

    /// Reads `application/x-www-form-urlencoded` pairs (the same splitting and decoding as
    /// `form_urlencoded::parse`: `&`-separated, empty pairs skipped, the name up to the first
    /// `=`, `+` is a space, `%XX` a byte, invalid UTF-8 replaced), but decodes only what is
    /// needed: a name only when it holds `%` or `+`, a value only for a known parameter and
    /// only when it holds `%` or `+`. Unknown parameters cost a comparison of their name.
    fn add_form(&mut self, form: &'a str) {
        for pair in form.split('&') {
            if pair.is_empty() {
                continue;
            }
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            self.set_with(&form_decode(k), || form_decode(v));
        }
    }

    /// The same hit, owning its values.
    pub fn into_owned(self) -> RawHit<'static> {
        RawHit {
            idsite: owned(self.idsite),
            rec: self.rec,
            url: owned(self.url),
            action_name: owned(self.action_name),
            visitor_id: owned(self.visitor_id),
            uid: owned(self.uid),
            res: owned(self.res),
            ua: owned(self.ua),
            uadata: owned(self.uadata),
            urlref: owned(self.urlref),
            e_c: owned(self.e_c),
            e_a: owned(self.e_a),
            e_n: owned(self.e_n),
            e_v: owned(self.e_v),
            link: owned(self.link),
            download: owned(self.download),
            search: owned(self.search),
            pv_id: owned(self.pv_id),
            new_visit: self.new_visit,
            send_image: self.send_image,
            bots: self.bots,
            ping: self.ping,
            cip: owned(self.cip),
            cdt: owned(self.cdt),
            token_auth: owned(self.token_auth),
            consent_id: owned(self.consent_id),
        }
    }

    /// Whether this request needs a trusted token (it overrides the client address or time).
    pub fn needs_token(&self) -> bool {
        self.cip.is_some() || self.cdt.is_some()
    }

    /// The screen resolution `WxH`, if well-formed and plausible.
    pub fn resolution(&self) -> Option<String> {
        let res = self.res.as_deref()?;
        let (w, h) = res.split_once('x')?;
        let w: u32 = w.trim().parse().ok()?;
        let h: u32 = h.trim().parse().ok()?;
        if !((1..=20_000).contains(&w) && (1..=20_000).contains(&h)) {
            return None;
        }
        // Already in canonical form (the usual case): one copy, no formatting.
        let canonical = res.len() == digits(w) + 1 + digits(h);
        Some(if canonical {
            res.to_string()
        } else {
            format!("{w}x{h}")
        })
    }
}

/// One form-encoded name or value: borrowed when it holds neither `%` nor `+`, else decoded
/// (`+` is a space, `%XX` a byte, a `%` not followed by two hex digits kept as is, invalid
/// UTF-8 replaced by U+FFFD).
fn form_decode(s: &str) -> Cow<'_, str> {
    let b = s.as_bytes();
    let Some(first) = b.iter().position(|&c| c == b'%' || c == b'+') else {
        return Cow::Borrowed(s);
    };
    let mut out = Vec::with_capacity(b.len());
    out.extend_from_slice(&b[..first]);
    let mut i = first;
    while i < b.len() {
        match b[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' => match (
                b.get(i + 1).and_then(|&c| hex_val(c)),
                b.get(i + 2).and_then(|&c| hex_val(c)),
            ) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 3;
                }
                _ => {
                    out.push(b'%');
                    i += 1;
                }
            },
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    Cow::Owned(match String::from_utf8(out) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    })
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Number of decimal digits of `n`.
fn digits(n: u32) -> usize {
    n.checked_ilog10().map_or(1, |l| l as usize + 1)
}

/// Why a bulk request body is refused as a whole.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BulkError {
    #[error("the bulk body is not JSON of the form {{\"requests\": [...]}}")]
    Malformed,
    #[error("a bulk request holds at most {MAX_BULK_REQUESTS} requests")]
    TooMany,
}

/// A parsed bulk request; its entries borrow from the body.
#[derive(Debug)]
pub struct Bulk<'a> {
    /// The entries, in order (each one read into a hit when it is used: see [`BulkEntry::hit`]).
    pub requests: Vec<BulkEntry<'a>>,
    pub token_auth: Option<Cow<'a, str>>,
}

/// One entry of a bulk request. A query string is kept as it is (32 bytes, borrowed from the
/// body) and read into a [`RawHit`] only when the hit is prepared, so that a 1,000-entry body
/// never holds a thousand 560-byte hits at once.
#[derive(Debug)]
pub enum BulkEntry<'a> {
    /// A query string entry: the part after its `?` (borrowed when it held no JSON escape).
    Query(Cow<'a, str>),
    /// An object of parameters.
    Object(Box<RawHit<'a>>),
    /// Neither a query string of at most [`MAX_REQUEST_BYTES`] bytes nor an object: counted
    /// invalid.
    Invalid,
}

impl BulkEntry<'_> {
    /// The entry's hit (exactly the hit its query string alone gives), or None when the entry
    /// is malformed.
    pub fn hit(&self) -> Option<Cow<'_, RawHit<'_>>> {
        match self {
            BulkEntry::Query(q) => Some(Cow::Owned(RawHit::from_query(q))),
            BulkEntry::Object(h) => Some(Cow::Borrowed(&**h)),
            BulkEntry::Invalid => None,
        }
    }
}

/// Whether a POST body is a bulk request (JSON with `requests`).
pub fn looks_like_bulk(body: &[u8]) -> bool {
    let start = body.iter().position(|b| !b.is_ascii_whitespace());
    start.is_some_and(|i| body[i] == b'{')
}

/// Parses `{"requests": ["?idsite=1&…", {"idsite": 1, …}], "token_auth": "…"}` in one pass,
/// straight into hits that borrow from `body` (no intermediate JSON tree).
pub fn parse_bulk(body: &[u8]) -> Result<Bulk<'_>, BulkError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let top = BulkBody::deserialize_from(&mut de).map_err(|_| BulkError::Malformed)?;
    de.end().map_err(|_| BulkError::Malformed)?;
    let requests = top.requests.ok_or(BulkError::Malformed)?;
    if requests.too_many {
        return Err(BulkError::TooMany);
    }
    Ok(Bulk {
        requests: requests.entries,
        token_auth: top.token_auth.and_then(|t| text(t, MAX_TOKEN)),
    })
}

/// The top-level object of a bulk body (other members are ignored; the last of a repeated
/// member wins).
struct BulkBody<'a> {
    requests: Option<Requests<'a>>,
    token_auth: Option<Cow<'a, str>>,
}

impl<'a> BulkBody<'a> {
    fn deserialize_from<D: Deserializer<'a>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'a> Visitor<'a> for V {
            type Value = BulkBody<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'a>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = BulkBody {
                    requests: None,
                    token_auth: None,
                };
                while let Some(Str(key)) = map.next_key::<Str<'a>>()? {
                    match &*key {
                        "requests" => out.requests = Some(map.next_value::<Requests<'a>>()?),
                        "token_auth" => out.token_auth = map.next_value::<AnyStr<'a>>()?.0,
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(out)
            }
        }
        d.deserialize_map(V)
    }
}

/// A JSON string, borrowed from the body when it holds no escapes.
struct Str<'a>(Cow<'a, str>);

impl<'de> de::Deserialize<'de> for Str<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Str<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Owned(v.to_string())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Str(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

/// Any JSON value: its text when it is a string, None otherwise.
struct AnyStr<'a>(Option<Cow<'a, str>>);

impl<'de> de::Deserialize<'de> for AnyStr<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Scalar::deserialize(d)? {
            Scalar::Str(s) => Ok(AnyStr(Some(s))),
            _ => Ok(AnyStr(None)),
        }
    }
}

/// A member value of an object entry: strings, numbers and booleans are parameters; anything
/// else is skipped.
enum Scalar<'a> {
    Str(Cow<'a, str>),
    /// A number or a boolean, as text (`true` is `1`).
    Other(String),
    Ignored,
}

impl<'de> de::Deserialize<'de> for Scalar<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Scalar<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Scalar::Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Scalar::Str(Cow::Owned(v.to_string())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Scalar::Str(Cow::Owned(v)))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
                Ok(Scalar::Other(if v { "1" } else { "0" }.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(Scalar::Other(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(Scalar::Other(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                Ok(Scalar::Other(
                    serde_json::Number::from_f64(v).map_or_else(String::new, |n| n.to_string()),
                ))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Scalar::Ignored)
            }
            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Scalar::Ignored)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Scalar::Ignored)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Scalar::Ignored)
            }
        }
        d.deserialize_any(V)
    }
}

/// The `requests` array: at most [`MAX_BULK_REQUESTS`] entries are parsed; beyond that the
/// rest is only skipped and the body is refused.
struct Requests<'a> {
    entries: Vec<BulkEntry<'a>>,
    too_many: bool,
}

impl<'de> de::Deserialize<'de> for Requests<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Requests<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array of requests")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut entries = Vec::with_capacity(seq.size_hint().unwrap_or(256).min(256));
                while entries.len() < MAX_BULK_REQUESTS {
                    match seq.next_element::<Entry<'de>>()? {
                        Some(Entry(e)) => entries.push(e),
                        None => {
                            return Ok(Requests {
                                entries,
                                too_many: false,
                            });
                        }
                    }
                }
                let mut too_many = false;
                while seq.next_element::<IgnoredAny>()?.is_some() {
                    too_many = true;
                }
                Ok(Requests { entries, too_many })
            }
        }
        d.deserialize_seq(V)
    }
}

/// One entry of `requests`: a query string (`"?idsite=1&…"`, the part before `?` ignored) or an
/// object of parameters; anything else is invalid.
struct Entry<'a>(BulkEntry<'a>);

/// The query part of a query-string entry, if the entry is not too long.
fn query_of_entry(s: &str) -> Option<&str> {
    (s.len() <= MAX_REQUEST_BYTES).then(|| s.split_once('?').map_or(s, |(_, q)| q))
}

impl<'de> de::Deserialize<'de> for Entry<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Entry<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a query string or an object")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Entry(query_of_entry(v).map_or(BulkEntry::Invalid, |q| {
                    BulkEntry::Query(Cow::Borrowed(q))
                })))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                // An escaped JSON string lives in a scratch buffer: own the query.
                Ok(Entry(query_of_entry(v).map_or(BulkEntry::Invalid, |q| {
                    BulkEntry::Query(Cow::Owned(q.to_string()))
                })))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut h = RawHit::empty();
                while let Some(Str(k)) = map.next_key::<Str<'de>>()? {
                    match map.next_value::<Scalar<'de>>()? {
                        Scalar::Str(v) => h.set(&k, v),
                        Scalar::Other(v) => h.set(&k, Cow::Owned(v)),
                        Scalar::Ignored => {}
                    }
                }
                Ok(Entry(BulkEntry::Object(Box::new(h))))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
                Ok(Entry(BulkEntry::Invalid))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
                Ok(Entry(BulkEntry::Invalid))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
                Ok(Entry(BulkEntry::Invalid))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
                Ok(Entry(BulkEntry::Invalid))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Entry(BulkEntry::Invalid))
            }
            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Entry(BulkEntry::Invalid))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Entry(BulkEntry::Invalid))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_known_parameters_and_ignores_the_rest() {
        let h = RawHit::from_query(
            "?idsite=3&rec=1&url=https%3A%2F%2Fex.com%2Fa%3Fb%3D1&action_name=Home&_id=0123456789abcdef\
             &res=1920x1080&e_c=Video&e_a=Play&e_v=1.5&send_image=0&unknown=zzz&bots=1&ping=1",
        );
        assert_eq!(h.idsite.as_deref(), Some("3"));
        assert!(h.rec && h.bots && h.ping && !h.send_image && !h.new_visit);
        assert_eq!(h.url.as_deref(), Some("https://ex.com/a?b=1"));
        assert_eq!(h.visitor_id.as_deref(), Some("0123456789abcdef"));
        assert_eq!(h.resolution().as_deref(), Some("1920x1080"));
        assert_eq!(
            (h.e_c.as_deref(), h.e_a.as_deref()),
            (Some("Video"), Some("Play"))
        );
        assert!(!h.needs_token());
        assert!(RawHit::from_query("cip=1.2.3.4").needs_token());
        assert!(RawHit::from_query("").send_image);
        assert_eq!(RawHit::from_query("res=99999x1").resolution(), None);
        assert_eq!(RawHit::from_query("res=abc").resolution(), None);
        let long = format!("action_name={}", "a".repeat(10_000));
        assert_eq!(
            RawHit::from_query(&long).action_name.unwrap().len(),
            MAX_TEXT
        );
    }

    #[test]
    fn values_without_escapes_are_borrowed_and_others_decoded() {
        let q = "idsite=1&action_name=Home&url=http%3A%2F%2Fa%2Fb&e_c=a+b&_id=%20%20";
        let h = RawHit::from_query(q);
        assert!(matches!(h.idsite, Some(Cow::Borrowed("1"))));
        assert!(matches!(h.action_name, Some(Cow::Borrowed("Home"))));
        assert_eq!(h.url.as_deref(), Some("http://a/b"));
        assert_eq!(h.e_c.as_deref(), Some("a b"));
        // Decoded to blanks only: absent, like an empty value.
        assert_eq!(h.visitor_id, None);
        // A decoded value is trimmed and cut like a borrowed one.
        let long = format!("url=%20{}%20", "%C3%A9".repeat(5000));
        let u = RawHit::from_query(&long).url.unwrap();
        assert_eq!(u.chars().count(), MAX_URL);
        assert!(u.chars().all(|c| c == 'é'));
        // Owned copies compare equal.
        assert_eq!(RawHit::from_query(q).into_owned(), h);
    }

    #[test]
    fn resolutions_are_canonical() {
        let r = |s: &str| RawHit::from_query(&format!("res={s}")).resolution();
        assert_eq!(r("1920x1080").as_deref(), Some("1920x1080"));
        assert_eq!(r("01920x1080").as_deref(), Some("1920x1080"));
        assert_eq!(r("1920x%201080").as_deref(), Some("1920x1080"));
        assert_eq!(r("%2B1920x108").as_deref(), Some("1920x108"));
        assert_eq!(r("1x1").as_deref(), Some("1x1"));
        assert_eq!(r("20000x20000").as_deref(), Some("20000x20000"));
        assert_eq!(r("0x10"), None);
        assert_eq!(r("10x"), None);
    }

    #[test]
    fn consent_ids_are_read_with_the_other_parameters() {
        let id = "3f2c1e9a-8b7d-4c6e-9f01-23456789abcd";
        let q = format!("idsite=1&{CONSENT_PARAM}={id}&rec=1");
        let h = RawHit::from_query(&q);
        assert_eq!(h.consent_id.as_deref(), Some(id));
        // The last one wins; the body wins over the query string.
        let q = format!("{CONSENT_PARAM}=a&{CONSENT_PARAM}=b");
        assert_eq!(RawHit::from_query(&q).consent_id.as_deref(), Some("b"));
        let h = RawHit::merge_query_and_body(&q, "tutela_consent=c");
        assert_eq!(h.consent_id.as_deref(), Some("c"));
        let h = RawHit::merge_query_and_body(&q, "idsite=1");
        assert_eq!(h.consent_id.as_deref(), Some("b"));
        assert_eq!(RawHit::from_query("idsite=1").consent_id, None);
        // Bounded.
        let long = format!("{CONSENT_PARAM}={}", "a".repeat(1000));
        assert_eq!(
            RawHit::from_query(&long).consent_id.unwrap().len(),
            MAX_CONSENT_ID
        );
    }

    #[test]
    fn form_values_decoded_only_when_escaped() {
        assert!(matches!(form_decode("abc"), Cow::Borrowed("abc")));
        assert_eq!(form_decode("a+b%20c"), "a b c");
        assert_eq!(form_decode("%zz%4"), "%zz%4");
        assert_eq!(form_decode("%41%4a%4A"), "AJJ");
        assert_eq!(form_decode("%E9t%C3%A9"), "\u{fffd}té");
        // An escaped name is decoded before it is looked up; unknown names are skipped.
        let h = RawHit::from_query("id%73ite=5&%5Fid=0123456789abcdef&nope=%41&=x&&rec");
        assert_eq!(h.idsite.as_deref(), Some("5"));
        assert_eq!(h.visitor_id.as_deref(), Some("0123456789abcdef"));
        assert!(!h.rec);
    }

    #[test]
    fn body_overrides_query() {
        let h = RawHit::merge_query_and_body("idsite=1&rec=1", "idsite=2&action_name=x");
        assert_eq!(h.idsite.as_deref(), Some("2"));
        assert!(h.rec);
    }

    #[test]
    fn bulk_strings_objects_and_bounds() {
        let b = parse_bulk(
            br#"{"requests":["?idsite=1&rec=1&url=http%3A%2F%2Fa","idsite=2",{"idsite":3,"rec":1,"url":"http://b"},42],"token_auth":"t"}"#,
        )
        .unwrap();
        assert_eq!(b.requests.len(), 4);
        assert_eq!(b.requests[0].hit().unwrap().idsite.as_deref(), Some("1"));
        assert_eq!(b.requests[1].hit().unwrap().idsite.as_deref(), Some("2"));
        let third = b.requests[2].hit().unwrap();
        assert_eq!((third.idsite.as_deref(), third.rec), (Some("3"), true));
        assert!(b.requests[3].hit().is_none());
        assert_eq!(b.token_auth.as_deref(), Some("t"));
        assert_eq!(parse_bulk(b"{}").unwrap_err(), BulkError::Malformed);
        assert_eq!(parse_bulk(b"[1]").unwrap_err(), BulkError::Malformed);
        let many = format!(
            "{{\"requests\":[{}]}}",
            vec!["\"idsite=1\""; MAX_BULK_REQUESTS + 1].join(",")
        );
        assert_eq!(parse_bulk(many.as_bytes()).unwrap_err(), BulkError::TooMany);
        let max = format!(
            "{{\"requests\":[{}]}}",
            vec!["\"idsite=1\""; MAX_BULK_REQUESTS].join(",")
        );
        assert_eq!(
            parse_bulk(max.as_bytes()).unwrap().requests.len(),
            MAX_BULK_REQUESTS
        );
        assert!(looks_like_bulk(b"  {\"requests\":[]}") && !looks_like_bulk(b"idsite=1"));
    }

    #[test]
    fn bulk_bodies_in_every_shape() {
        let id = "3f2c1e9a-8b7d-4c6e-9f01-23456789abcd";
        let body = format!(
            r#" {{"other": {{"x": [1, {{"y": null}}]}}, "requests": [
                "?idsite=1&tutela_consent={id}",
                "https:\/\/ex.com\/matomo.php?idsite=2&action_name=caf\u00e9&rec=1",
                {{"idsite": "4", "tutela_consent": "{id}", "e_v": 2.5, "rec": true, "bots": false,
                  "url": "http://a/\"q\"", "nested": {{"a": [1]}}, "list": [1, 2], "nothing": null}},
                [1, 2], null, true, 1.5, "{long}"
            ], "token_auth": 7}} "#,
            long = "a".repeat(MAX_REQUEST_BYTES + 1),
        );
        let b = parse_bulk(body.as_bytes()).unwrap();
        assert_eq!(b.requests.len(), 8);
        let first = b.requests[0].hit().unwrap();
        assert_eq!(first.consent_id.as_deref(), Some(id));
        assert!(matches!(first.idsite, Some(Cow::Borrowed("1"))));
        // An escaped JSON string: the part after `?` is the query, values are owned.
        let second = b.requests[1].hit().unwrap();
        assert_eq!(second.idsite.as_deref(), Some("2"));
        assert_eq!(second.action_name.as_deref(), Some("café"));
        assert!(second.rec);
        let third = b.requests[2].hit().unwrap();
        assert_eq!(third.idsite.as_deref(), Some("4"));
        assert_eq!(third.consent_id.as_deref(), Some(id));
        assert_eq!(third.e_v.as_deref(), Some("2.5"));
        assert!(third.rec && !third.bots);
        assert_eq!(third.url.as_deref(), Some("http://a/\"q\""));
        assert!(b.requests[3..].iter().all(|e| e.hit().is_none()));
        // A token that is not a string is no token.
        assert_eq!(b.token_auth, None);
        // Not JSON, trailing garbage, requests not an array.
        for bad in [
            &b"{\"requests\":[]} x"[..],
            b"{\"requests\":[",
            b"{\"requests\":{}}",
            b"{\"requests\":\"?idsite=1\"}",
            b"{\"requests\":[\"idsite=1\"],}",
            b"",
        ] {
            assert_eq!(parse_bulk(bad).unwrap_err(), BulkError::Malformed);
        }
        // The last of a repeated member wins, as with a JSON object.
        let b =
            parse_bulk(br#"{"requests":["idsite=1"],"requests":["idsite=2","idsite=3"]}"#).unwrap();
        assert_eq!(b.requests.len(), 2);
    }

    proptest::proptest! {
        /// Outside input never panics the parsers, and every kept value stays bounded.
        #[test]
        fn parsers_accept_anything_and_stay_bounded(query in ".{0,3000}", body in proptest::collection::vec(proptest::num::u8::ANY, 0..3000)) {
            let h = RawHit::from_query(&query);
            proptest::prop_assert!(h.url.as_ref().is_none_or(|u| u.chars().count() <= MAX_URL));
            proptest::prop_assert!(h.action_name.as_ref().is_none_or(|u| u.chars().count() <= MAX_TEXT));
            proptest::prop_assert!(h.uid.as_ref().is_none_or(|u| u.chars().count() <= MAX_UID));
            proptest::prop_assert!(h.consent_id.as_ref().is_none_or(|u| u.chars().count() <= MAX_CONSENT_ID));
            let _ = h.resolution();
            let _ = parse_bulk(&body);
            let _ = looks_like_bulk(&body);
            if let Some(u) = &h.url {
                let kept = crate::url::without_query(u, &["utm_campaign".to_string()]);
                proptest::prop_assert!(kept.is_none_or(|k| k.chars().count() <= crate::url::MAX_URL_CHARS && !k.contains('#')));
                let _ = crate::url::host(u);
            }
            let _ = crate::ua::ClientHints::parse(&query);
        }

        /// The hand-written form parser reads exactly what `form_urlencoded` would: the same
        /// pairs, split and decoded the same way (escaped names, `+`, broken escapes, bytes
        /// that are not UTF-8, repeated and empty pairs).
        #[test]
        fn form_parser_matches_form_urlencoded(pieces in proptest::collection::vec(proptest::sample::select(vec![
            "idsite", "url", "_id", "ua", "res", "rec", "e_c", "uid", "action_name", "tutela_consent",
            "%5Fid", "u%72l", "ur%6c", "id%73ite", "unknown", "=", "==", "&", "&&", "+", "%", "%2",
            "%20", "%2B", "%3D", "%26", "%C3%A9", "%E9", "%zz", "%%41", "1", "abc", "é", " ", "?",
        ]), 0..24)) {
            let q: String = pieces.concat();
            // `from_query` takes a query string with or without its leading `?`.
            let form = q.strip_prefix('?').unwrap_or(&q);
            let mut reference = RawHit::empty();
            for (k, v) in form_urlencoded::parse(form.as_bytes()) {
                reference.set(&k, v);
            }
            proptest::prop_assert_eq!(RawHit::from_query(&q), reference);
        }

        /// A bulk body of query strings gives the same hits as each query string alone.
        #[test]
        fn bulk_entries_match_single_hits(queries in proptest::collection::vec("[a-z_=&%0-9A-F+é\"\\\\]{0,60}", 0..8)) {
            let body = serde_json::json!({ "requests": queries }).to_string();
            let b = parse_bulk(body.as_bytes()).unwrap();
            proptest::prop_assert_eq!(b.requests.len(), queries.len());
            for (q, h) in queries.iter().zip(&b.requests) {
                let q = q.split_once('?').map_or(q.as_str(), |(_, q)| q);
                let hit = h.hit();
                proptest::prop_assert_eq!(hit.as_deref(), Some(&RawHit::from_query(q)));
            }
        }
    }
}

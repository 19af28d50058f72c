//! Matomo Tracking HTTP API parameters: one request's key/value pairs into a [`RawHit`].
//!
//! Values are bounded (cut, like Matomo does) and unknown parameters are ignored. Nothing here
//! is stored: [`crate::Analytics::prepare`] minimises a `RawHit` before it is queued.

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

/// The parameters of one tracking request, bounded, not yet minimised.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RawHit {
    pub idsite: Option<String>,
    pub rec: bool,
    pub url: Option<String>,
    pub action_name: Option<String>,
    /// The tracker's visitor id (`_id`, from its `_pk_id` cookie).
    pub visitor_id: Option<String>,
    /// The site's user id (`uid`); only ever hashed.
    pub uid: Option<String>,
    pub res: Option<String>,
    pub ua: Option<String>,
    pub uadata: Option<String>,
    pub urlref: Option<String>,
    pub e_c: Option<String>,
    pub e_a: Option<String>,
    pub e_n: Option<String>,
    pub e_v: Option<String>,
    pub link: Option<String>,
    pub download: Option<String>,
    pub search: Option<String>,
    pub pv_id: Option<String>,
    pub new_visit: bool,
    /// `send_image=0` asks for a 204 instead of the GIF.
    pub send_image: bool,
    pub bots: bool,
    pub ping: bool,
    pub cip: Option<String>,
    pub cdt: Option<String>,
    pub token_auth: Option<String>,
}

fn flag(v: &str) -> bool {
    matches!(v.trim(), "1" | "true")
}

fn text(v: &str, max: usize) -> Option<String> {
    let v = v.trim();
    (!v.is_empty()).then(|| truncate(v, max).to_string())
}

impl RawHit {
    fn empty() -> Self {
        RawHit {
            send_image: true,
            ..RawHit::default()
        }
    }

    /// Sets one parameter (unknown ones are ignored; a later value overrides an earlier one).
    fn set(&mut self, k: &str, v: &str) {
        let h = self;
        match k {
            "idsite" => h.idsite = text(v, 32),
            "rec" => h.rec = flag(v),
            "url" => h.url = text(v, MAX_URL),
            "action_name" => h.action_name = text(v, MAX_TEXT),
            "_id" => h.visitor_id = text(v, 64),
            "uid" => h.uid = text(v, MAX_UID),
            "res" => h.res = text(v, 32),
            "ua" => h.ua = text(v, crate::ua::MAX_UA_CHARS),
            "uadata" => h.uadata = text(v, crate::ua::MAX_UADATA_BYTES + 1),
            "urlref" => h.urlref = text(v, MAX_URL),
            "e_c" => h.e_c = text(v, MAX_EVENT),
            "e_a" => h.e_a = text(v, MAX_EVENT),
            "e_n" => h.e_n = text(v, MAX_EVENT),
            "e_v" => h.e_v = text(v, 64),
            "link" => h.link = text(v, MAX_URL),
            "download" => h.download = text(v, MAX_URL),
            "search" => h.search = text(v, MAX_TEXT),
            "pv_id" => h.pv_id = text(v, 32),
            "new_visit" => h.new_visit = flag(v),
            "send_image" => h.send_image = flag(v),
            "bots" => h.bots = flag(v),
            "ping" => h.ping = flag(v),
            "cip" => h.cip = text(v, 64),
            "cdt" => h.cdt = text(v, 64),
            "token_auth" => h.token_auth = text(v, MAX_TOKEN),
            _ => {}
        }
    }

    /// Builds a hit from key/value pairs (query string, form body or a bulk entry). Later
    /// values override earlier ones, so the body wins over the query string.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let mut h = RawHit::empty();
        for (k, v) in pairs {
            h.set(k, v);
        }
        h
    }

    /// Parses an `application/x-www-form-urlencoded` string (a query string, with or without
    /// its leading `?`). The caller bounds its length. Values are decoded in place when they
    /// hold no escapes (no intermediate copy).
    pub fn from_query(query: &str) -> Self {
        let query = query.strip_prefix('?').unwrap_or(query);
        let mut h = RawHit::empty();
        for (k, v) in form_urlencoded::parse(query.as_bytes()) {
            h.set(&k, &v);
        }
        h
    }

    /// Merges the query-string hit with a form body: body values win, flags combine.
    pub fn merge_query_and_body(query: &str, body: &str) -> Self {
        let query = query.strip_prefix('?').unwrap_or(query);
        let mut h = RawHit::empty();
        for (k, v) in
            form_urlencoded::parse(query.as_bytes()).chain(form_urlencoded::parse(body.as_bytes()))
        {
            h.set(&k, &v);
        }
        h
    }

    /// Whether this request needs a trusted token (it overrides the client address or time).
    pub fn needs_token(&self) -> bool {
        self.cip.is_some() || self.cdt.is_some()
    }

    /// The screen resolution `WxH`, if well-formed and plausible.
    pub fn resolution(&self) -> Option<String> {
        let (w, h) = self.res.as_deref()?.split_once('x')?;
        let w: u32 = w.trim().parse().ok()?;
        let h: u32 = h.trim().parse().ok()?;
        ((1..=20_000).contains(&w) && (1..=20_000).contains(&h)).then(|| format!("{w}x{h}"))
    }
}

/// Why a bulk request body is refused as a whole.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BulkError {
    #[error("the bulk body is not JSON of the form {{\"requests\": [...]}}")]
    Malformed,
    #[error("a bulk request holds at most {MAX_BULK_REQUESTS} requests")]
    TooMany,
}

/// A parsed bulk request.
#[derive(Debug)]
pub struct Bulk {
    /// Each entry: the hit, or None when the entry itself is malformed (counted invalid).
    pub requests: Vec<Option<RawHit>>,
    pub token_auth: Option<String>,
}

/// Whether a POST body is a bulk request (JSON with `requests`).
pub fn looks_like_bulk(body: &[u8]) -> bool {
    let start = body.iter().position(|b| !b.is_ascii_whitespace());
    start.is_some_and(|i| body[i] == b'{')
}

/// Parses `{"requests": ["?idsite=1&…", {"idsite": 1, …}], "token_auth": "…"}`.
pub fn parse_bulk(body: &[u8]) -> Result<Bulk, BulkError> {
    let v: serde_json::Value = serde_json::from_slice(body).map_err(|_| BulkError::Malformed)?;
    let list = v
        .get("requests")
        .and_then(|r| r.as_array())
        .ok_or(BulkError::Malformed)?;
    if list.len() > MAX_BULK_REQUESTS {
        return Err(BulkError::TooMany);
    }
    let token_auth = v
        .get("token_auth")
        .and_then(|t| t.as_str())
        .and_then(|t| text(t, MAX_TOKEN));
    let requests = list
        .iter()
        .map(|r| match r {
            serde_json::Value::String(s) if s.len() <= MAX_REQUEST_BYTES => {
                let q = s.split_once('?').map_or(s.as_str(), |(_, q)| q);
                Some(RawHit::from_query(q))
            }
            serde_json::Value::Object(map) => {
                let mut h = RawHit::empty();
                for (k, v) in map {
                    match v {
                        serde_json::Value::String(s) => h.set(k, s),
                        serde_json::Value::Number(n) => h.set(k, &n.to_string()),
                        serde_json::Value::Bool(b) => h.set(k, if *b { "1" } else { "0" }),
                        _ => {}
                    }
                }
                Some(h)
            }
            _ => None,
        })
        .collect();
    Ok(Bulk {
        requests,
        token_auth,
    })
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
        assert_eq!(b.requests[0].as_ref().unwrap().idsite.as_deref(), Some("1"));
        assert_eq!(b.requests[1].as_ref().unwrap().idsite.as_deref(), Some("2"));
        let third = b.requests[2].as_ref().unwrap();
        assert_eq!((third.idsite.as_deref(), third.rec), (Some("3"), true));
        assert!(b.requests[3].is_none());
        assert_eq!(b.token_auth.as_deref(), Some("t"));
        assert_eq!(parse_bulk(b"{}").unwrap_err(), BulkError::Malformed);
        assert_eq!(parse_bulk(b"[1]").unwrap_err(), BulkError::Malformed);
        let many = format!(
            "{{\"requests\":[{}]}}",
            vec!["\"idsite=1\""; MAX_BULK_REQUESTS + 1].join(",")
        );
        assert_eq!(parse_bulk(many.as_bytes()).unwrap_err(), BulkError::TooMany);
        assert!(looks_like_bulk(b"  {\"requests\":[]}") && !looks_like_bulk(b"idsite=1"));
    }

    proptest::proptest! {
        /// Outside input never panics the parsers, and every kept value stays bounded.
        #[test]
        fn parsers_accept_anything_and_stay_bounded(query in ".{0,3000}", body in proptest::collection::vec(proptest::num::u8::ANY, 0..3000)) {
            let h = RawHit::from_query(&query);
            proptest::prop_assert!(h.url.as_ref().is_none_or(|u| u.chars().count() <= MAX_URL));
            proptest::prop_assert!(h.action_name.as_ref().is_none_or(|u| u.chars().count() <= MAX_TEXT));
            proptest::prop_assert!(h.uid.as_ref().is_none_or(|u| u.chars().count() <= MAX_UID));
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
    }
}

//! The encoding of `analytics_event_chunks.data`: the events of one (site, day) written in one
//! batch.
//!
//! Layout (version 1): a version byte; the chunk's distinct strings (count, then each as length
//! and UTF-8 bytes), so that a browser name, an OS or a URL repeated on every event is stored once
//! per chunk; then the event count and each event: time (zigzag varint, delta from the previous
//! event), pseudonym (8 bytes), `ts - visit_start` (zigzag varint), kind (zigzag varint), a
//! presence bitmap (varint) of the optional fields, each present string as an index into the
//! chunk's strings, and the event value (8 bytes) when present. Integers are little-endian.
//!
//! Decoding checks every length and index and fails on malformed data rather than panic.

use std::collections::HashMap;

use crate::analytics::EventRow;

const VERSION: u8 = 1;
/// The optional text fields of an event, in their bitmap order.
pub const STR_FIELDS: usize = 13;
const VALUE_BIT: u32 = 1 << STR_FIELDS;

/// One event to encode, its text borrowed (from the minimised hit, its device summary…), in the
/// order url, title, ev_category, ev_action, ev_name, referrer, ip_prefix, browser,
/// browser_version, os, os_version, device, resolution.
#[derive(Clone, Debug, Default)]
pub struct EventRef<'a> {
    pub ts: i64,
    pub visitor: i64,
    pub visit_start: i64,
    pub kind: i16,
    pub ev_value: Option<f64>,
    pub strs: [Option<&'a str>; STR_FIELDS],
}

impl<'a> EventRef<'a> {
    /// The borrowed view of a stored event.
    pub fn of(e: &'a EventRow) -> Self {
        EventRef {
            ts: e.ts,
            visitor: e.visitor,
            visit_start: e.visit_start,
            kind: e.kind,
            ev_value: e.ev_value,
            strs: [
                e.url.as_deref(),
                e.title.as_deref(),
                e.ev_category.as_deref(),
                e.ev_action.as_deref(),
                e.ev_name.as_deref(),
                e.referrer.as_deref(),
                e.ip_prefix.as_deref(),
                e.browser.as_deref(),
                e.browser_version.as_deref(),
                e.os.as_deref(),
                e.os_version.as_deref(),
                e.device.as_deref(),
                e.resolution.as_deref(),
            ],
        }
    }
}

/// An encoded chunk, ready to store.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EncodedChunk {
    pub site_id: i64,
    pub day: i64,
    pub events: i64,
    /// Sorted distinct pseudonyms, 8 bytes each (little-endian).
    pub visitors: Vec<u8>,
    pub data: Vec<u8>,
}

/// Builds one chunk event by event.
#[derive(Debug)]
pub struct ChunkEncoder {
    site_id: i64,
    day: i64,
    dict: HashMap<Box<str>, u32, foldhash::fast::RandomState>,
    strings: Vec<u8>,
    body: Vec<u8>,
    n: u64,
    last_ts: i64,
    visitors: Vec<i64>,
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

impl ChunkEncoder {
    pub fn new(site_id: i64, day: i64) -> Self {
        ChunkEncoder {
            site_id,
            day,
            dict: HashMap::default(),
            strings: Vec::new(),
            body: Vec::with_capacity(4096),
            n: 0,
            last_ts: 0,
            visitors: Vec::new(),
        }
    }

    pub fn site_id(&self) -> i64 {
        self.site_id
    }

    pub fn day(&self) -> i64 {
        self.day
    }

    pub fn len(&self) -> usize {
        self.n as usize
    }

    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    fn string(&mut self, s: &str) -> u32 {
        if let Some(&i) = self.dict.get(s) {
            return i;
        }
        let i = self.dict.len() as u32;
        put_varint(&mut self.strings, s.len() as u64);
        self.strings.extend_from_slice(s.as_bytes());
        self.dict.insert(s.into(), i);
        i
    }

    pub fn push(&mut self, e: &EventRef<'_>) {
        put_varint(&mut self.body, zigzag(e.ts.wrapping_sub(self.last_ts)));
        self.last_ts = e.ts;
        self.body.extend_from_slice(&e.visitor.to_le_bytes());
        put_varint(&mut self.body, zigzag(e.ts.wrapping_sub(e.visit_start)));
        put_varint(&mut self.body, zigzag(i64::from(e.kind)));
        let mut bits = 0u32;
        for (k, s) in e.strs.iter().enumerate() {
            if s.is_some() {
                bits |= 1 << k;
            }
        }
        if e.ev_value.is_some() {
            bits |= VALUE_BIT;
        }
        put_varint(&mut self.body, u64::from(bits));
        for s in e.strs.iter().flatten() {
            let i = self.string(s);
            put_varint(&mut self.body, u64::from(i));
        }
        if let Some(v) = e.ev_value {
            self.body.extend_from_slice(&v.to_le_bytes());
        }
        self.visitors.push(e.visitor);
        self.n += 1;
    }

    pub fn finish(mut self) -> EncodedChunk {
        let mut data = Vec::with_capacity(self.strings.len() + self.body.len() + 16);
        data.push(VERSION);
        put_varint(&mut data, self.dict.len() as u64);
        data.extend_from_slice(&self.strings);
        put_varint(&mut data, self.n);
        data.extend_from_slice(&self.body);
        self.visitors.sort_unstable();
        self.visitors.dedup();
        let mut visitors = Vec::with_capacity(self.visitors.len() * 8);
        for v in &self.visitors {
            visitors.extend_from_slice(&v.to_le_bytes());
        }
        EncodedChunk {
            site_id: self.site_id,
            day: self.day,
            events: self.n as i64,
            visitors,
            data,
        }
    }
}

/// Encodes stored-event rows, one chunk per (site, day), in their order.
pub fn encode_rows(rows: &[EventRow]) -> Vec<EncodedChunk> {
    let mut by_day: Vec<ChunkEncoder> = Vec::new();
    for e in rows {
        let at = match by_day
            .iter()
            .position(|c| c.site_id == e.site_id && c.day == e.day)
        {
            Some(i) => i,
            None => {
                by_day.push(ChunkEncoder::new(e.site_id, e.day));
                by_day.len() - 1
            }
        };
        by_day[at].push(&EventRef::of(e));
    }
    by_day.into_iter().map(ChunkEncoder::finish).collect()
}

/// Whether a chunk's sorted visitor list holds `visitor`.
pub fn has_visitor(visitors: &[u8], visitor: i64) -> bool {
    let n = visitors.len() / 8;
    let at = |i: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&visitors[i * 8..i * 8 + 8]);
        i64::from_le_bytes(b)
    };
    let (mut lo, mut hi) = (0usize, n);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        match at(mid).cmp(&visitor) {
            std::cmp::Ordering::Less => lo = mid + 1,
            std::cmp::Ordering::Greater => hi = mid,
            std::cmp::Ordering::Equal => return true,
        }
    }
    false
}

/// Malformed chunk data.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("malformed analytics event chunk")]
pub struct ChunkError;

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Result<u8, ChunkError> {
        let v = *self.b.get(self.at).ok_or(ChunkError)?;
        self.at += 1;
        Ok(v)
    }

    fn varint(&mut self) -> Result<u64, ChunkError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(ChunkError)
    }

    fn bytes(&mut self, n: usize) -> Result<&'a [u8], ChunkError> {
        let end = self.at.checked_add(n).ok_or(ChunkError)?;
        let s = self.b.get(self.at..end).ok_or(ChunkError)?;
        self.at = end;
        Ok(s)
    }

    fn eight(&mut self) -> Result<[u8; 8], ChunkError> {
        let mut b = [0u8; 8];
        b.copy_from_slice(self.bytes(8)?);
        Ok(b)
    }
}

/// Decodes a chunk into its events (in the order written).
pub fn decode(site_id: i64, day: i64, data: &[u8]) -> Result<Vec<EventRow>, ChunkError> {
    let mut r = Reader { b: data, at: 0 };
    if r.byte()? != VERSION {
        return Err(ChunkError);
    }
    let nstrings = usize::try_from(r.varint()?).map_err(|_| ChunkError)?;
    // Each string takes at least one byte: a count beyond the data is malformed.
    if nstrings > data.len() {
        return Err(ChunkError);
    }
    let mut strings: Vec<&str> = Vec::with_capacity(nstrings);
    for _ in 0..nstrings {
        let len = usize::try_from(r.varint()?).map_err(|_| ChunkError)?;
        let s = std::str::from_utf8(r.bytes(len)?).map_err(|_| ChunkError)?;
        strings.push(s);
    }
    let n = usize::try_from(r.varint()?).map_err(|_| ChunkError)?;
    if n > data.len() {
        return Err(ChunkError);
    }
    let mut out = Vec::with_capacity(n);
    let mut ts = 0i64;
    for _ in 0..n {
        ts = ts.wrapping_add(unzigzag(r.varint()?));
        let visitor = i64::from_le_bytes(r.eight()?);
        let visit_start = ts.wrapping_sub(unzigzag(r.varint()?));
        let kind = i16::try_from(unzigzag(r.varint()?)).map_err(|_| ChunkError)?;
        let bits = u32::try_from(r.varint()?).map_err(|_| ChunkError)?;
        if bits >> (STR_FIELDS + 1) != 0 {
            return Err(ChunkError);
        }
        let mut strs: [Option<String>; STR_FIELDS] = Default::default();
        for (k, slot) in strs.iter_mut().enumerate() {
            if bits & (1 << k) != 0 {
                let i = usize::try_from(r.varint()?).map_err(|_| ChunkError)?;
                *slot = Some(strings.get(i).ok_or(ChunkError)?.to_string());
            }
        }
        let ev_value = if bits & VALUE_BIT != 0 {
            Some(f64::from_le_bytes(r.eight()?))
        } else {
            None
        };
        let [
            url,
            title,
            ev_category,
            ev_action,
            ev_name,
            referrer,
            ip_prefix,
            browser,
            browser_version,
            os,
            os_version,
            device,
            resolution,
        ] = strs;
        out.push(EventRow {
            site_id,
            day,
            ts,
            visitor,
            visit_start,
            kind,
            url,
            title,
            ev_category,
            ev_action,
            ev_name,
            ev_value,
            referrer,
            ip_prefix,
            browser,
            browser_version,
            os,
            os_version,
            device,
            resolution,
        });
    }
    if r.at != data.len() {
        return Err(ChunkError);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(i: i64) -> EventRow {
        EventRow {
            site_id: 2,
            day: 20261129,
            ts: 1_795_900_000 + i * 3 - (i % 4) * 5,
            visitor: if i % 3 == 0 { i64::MIN + i } else { -i * 7_919 },
            visit_start: 1_795_899_000 - i,
            kind: (i % 5) as i16 + 1,
            url: Some(format!("https://ex.com/p{}", i % 4)),
            title: (i % 2 == 0).then(|| "Ünïcode title".to_string()),
            ev_category: (i % 3 == 1).then(|| "Video".into()),
            ev_action: (i % 3 == 1).then(|| "Play".into()),
            ev_name: None,
            ev_value: (i % 3 == 1).then_some(-1.5e300 + i as f64),
            referrer: Some(String::new()),
            ip_prefix: Some("203.0.0.0".into()),
            browser: Some("Firefox".into()),
            browser_version: Some("121.0".into()),
            os: Some("Ubuntu".into()),
            os_version: None,
            device: Some("desktop".into()),
            resolution: Some("1920x1080".into()),
        }
    }

    #[test]
    fn round_trips_and_lists_visitors() {
        let rows: Vec<EventRow> = (0..50).map(row).collect();
        let chunks = encode_rows(&rows);
        assert_eq!(chunks.len(), 1);
        let c = &chunks[0];
        assert_eq!(c.events, 50);
        assert_eq!(decode(c.site_id, c.day, &c.data).unwrap(), rows);
        for r in &rows {
            assert!(has_visitor(&c.visitors, r.visitor));
        }
        assert!(!has_visitor(&c.visitors, 12_345));
        assert!(!has_visitor(&[], 0));
        // Repeated strings are stored once: far smaller than the text of the rows.
        let text: usize = rows
            .iter()
            .map(|r| r.url.as_ref().unwrap().len() + r.browser.as_ref().unwrap().len() + 40)
            .sum();
        assert!(c.data.len() < text, "{} >= {text}", c.data.len());
    }

    #[test]
    fn one_chunk_per_site_and_day() {
        let mut rows: Vec<EventRow> = (0..10).map(row).collect();
        rows[3].day = 20261130;
        rows[7].site_id = 9;
        let chunks = encode_rows(&rows);
        assert_eq!(chunks.len(), 3);
        let total: i64 = chunks.iter().map(|c| c.events).sum();
        assert_eq!(total, 10);
        let other = chunks.iter().find(|c| c.site_id == 9).unwrap();
        assert_eq!(
            decode(9, other.day, &other.data).unwrap(),
            vec![rows[7].clone()]
        );
    }

    #[test]
    fn malformed_data_is_an_error_not_a_panic() {
        let rows: Vec<EventRow> = (0..5).map(row).collect();
        let data = encode_rows(&rows).remove(0).data;
        for cut in 0..data.len() {
            assert_eq!(decode(2, 1, &data[..cut]), Err(ChunkError));
        }
        let mut extra = data.clone();
        extra.push(0);
        assert_eq!(decode(2, 1, &extra), Err(ChunkError));
        let mut bad = data.clone();
        bad[0] = 9;
        assert_eq!(decode(2, 1, &bad), Err(ChunkError));
        // Every single-byte corruption decodes or fails, never panics.
        for i in 0..data.len() {
            for x in [0x00, 0x7f, 0x80, 0xff] {
                let mut d = data.clone();
                d[i] = x;
                let _ = decode(2, 1, &d);
            }
        }
        assert_eq!(decode(2, 1, &[1, 0xff, 0xff, 0xff]), Err(ChunkError));
    }
}

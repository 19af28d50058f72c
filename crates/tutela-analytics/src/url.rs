//! URL minimisation (`url_without_query`): no query string except declared campaign parameters,
//! no fragment, bounded length.

/// Longest URL kept (characters); longer ones are cut at a character boundary.
pub const MAX_URL_CHARS: usize = 1024;

/// The URL without fragment and query, except the `keep` parameters (campaign parameters), in
/// their original order. Returns None for an empty URL.
pub fn without_query(raw: &str, keep: &[String]) -> Option<String> {
    let raw = raw.trim();
    let raw = raw.split('#').next().unwrap_or_default();
    if raw.is_empty() {
        return None;
    }
    let (base, query) = match raw.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (raw, None),
    };
    let mut out = truncate(base, MAX_URL_CHARS).to_string();
    if let Some(q) = query
        && !keep.is_empty()
    {
        let kept: Vec<&str> = q
            .split('&')
            .filter(|pair| {
                let name = pair.split('=').next().unwrap_or_default();
                keep.iter().any(|k| k.eq_ignore_ascii_case(name))
            })
            .collect();
        if !kept.is_empty() {
            out.push('?');
            out.push_str(&kept.join("&"));
        }
    }
    Some(truncate(&out, MAX_URL_CHARS).to_string())
}

/// The host of an absolute `http(s)://` URL, lower-cased, without port or credentials.
pub fn host(raw: &str) -> Option<String> {
    let rest = raw
        .trim()
        .split_once("://")
        .filter(|(scheme, _)| {
            scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https")
        })?
        .1;
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit('@').next()?;
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next()?
    } else {
        authority.split(':').next()?
    };
    (!host.is_empty()).then(|| host.to_ascii_lowercase())
}

/// Cuts `s` to at most `max` characters.
pub fn truncate(s: &str, max: usize) -> &str {
    // A string of at most `max` bytes has at most `max` characters: nothing to count.
    if s.len() <= max {
        return s;
    }
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_query_and_fragment_but_keeps_campaigns() {
        let keep = vec!["utm_campaign".to_string(), "mtm_source".to_string()];
        assert_eq!(
            without_query(
                "https://ex.com/a/b?email=x@y.z&utm_campaign=winter#top",
                &keep
            )
            .unwrap(),
            "https://ex.com/a/b?utm_campaign=winter"
        );
        assert_eq!(
            without_query("https://ex.com/?q=secret", &keep).unwrap(),
            "https://ex.com/"
        );
        assert_eq!(
            without_query("https://ex.com/p#frag", &[]).unwrap(),
            "https://ex.com/p"
        );
        assert_eq!(without_query("  ", &keep), None);
        let long = format!("https://ex.com/{}", "é".repeat(5000));
        assert_eq!(
            without_query(&long, &[]).unwrap().chars().count(),
            MAX_URL_CHARS
        );
    }

    #[test]
    fn hosts() {
        assert_eq!(
            host("https://User:pw@WWW.Example.com:8443/x?y").as_deref(),
            Some("www.example.com")
        );
        assert_eq!(host("http://[::1]:8080/").as_deref(), Some("::1"));
        assert_eq!(host("http://localhost").as_deref(), Some("localhost"));
        assert_eq!(host("ftp://example.com/"), None);
        assert_eq!(host("/relative"), None);
    }
}

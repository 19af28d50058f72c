//! URL minimisation (`url_without_query`): no query string except declared campaign parameters,
//! no fragment, bounded length.

use std::borrow::Cow;

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
    let base = without_userinfo(base);
    let base = truncate(&base, MAX_URL_CHARS);
    let Some(q) = query.filter(|_| !keep.is_empty()) else {
        // The usual case: one copy of the base, nothing else.
        return Some(base.to_string());
    };
    let mut out = base.to_string();
    let mut first = true;
    for pair in q.split('&') {
        let name = pair.split('=').next().unwrap_or_default();
        if keep.iter().any(|k| k.eq_ignore_ascii_case(name)) {
            out.push(if first { '?' } else { '&' });
            out.push_str(pair);
            first = false;
        }
    }
    let cut = truncate(&out, MAX_URL_CHARS).len();
    out.truncate(cut);
    Some(out)
}

/// `base` (a URL without query or fragment) without the `user:password@` of its authority:
/// credentials are never stored. Borrowed when there are none (the usual case).
pub fn without_userinfo(base: &str) -> Cow<'_, str> {
    let Some(at) = base.find("://").map(|i| i + 3) else {
        return Cow::Borrowed(base);
    };
    let authority_end = base[at..].find('/').map_or(base.len(), |i| at + i);
    match base[at..authority_end].rfind('@') {
        Some(i) => {
            let mut out = String::with_capacity(base.len());
            out.push_str(&base[..at]);
            out.push_str(&base[at + i + 1..]);
            Cow::Owned(out)
        }
        None => Cow::Borrowed(base),
    }
}

/// The host of an absolute `http(s)://` URL, lower-cased, without port or credentials
/// (borrowed from `raw` when it is already in lower case).
pub fn host(raw: &str) -> Option<Cow<'_, str>> {
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
    if host.is_empty() {
        None
    } else if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Some(Cow::Owned(host.to_ascii_lowercase()))
    } else {
        Some(Cow::Borrowed(host))
    }
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
        assert_eq!(
            without_query("https://ex.com/?mtm_source=a&x=1&utm_campaign=b", &keep).unwrap(),
            "https://ex.com/?mtm_source=a&utm_campaign=b"
        );
        assert_eq!(
            without_query("https://ex.com/p?x=1", &keep).unwrap(),
            "https://ex.com/p"
        );
        let long_kept = format!("https://ex.com/?utm_campaign={}", "é".repeat(2000));
        assert_eq!(
            without_query(&long_kept, &keep).unwrap().chars().count(),
            MAX_URL_CHARS
        );
        let long = format!("https://ex.com/{}", "é".repeat(5000));
        assert_eq!(
            without_query(&long, &[]).unwrap().chars().count(),
            MAX_URL_CHARS
        );
    }

    #[test]
    fn credentials_are_stripped() {
        assert_eq!(
            without_query("https://user:pa%40ss@ex.com:8443/a?b=1#c", &[]).unwrap(),
            "https://ex.com:8443/a"
        );
        assert_eq!(
            without_query("http://a@b@ex.com", &[]).unwrap(),
            "http://ex.com"
        );
        assert_eq!(
            without_query(
                "https://u:p@ex.com/x?utm_campaign=c",
                &["utm_campaign".into()]
            )
            .unwrap(),
            "https://ex.com/x?utm_campaign=c"
        );
        // An `@` in the path is not a credential.
        assert_eq!(
            without_query("https://ex.com/@someone", &[]).unwrap(),
            "https://ex.com/@someone"
        );
        assert!(matches!(
            without_userinfo("https://ex.com/a"),
            Cow::Borrowed("https://ex.com/a")
        ));
    }

    proptest::proptest! {
        /// Whatever the credentials, host and path, the stored URL holds no userinfo: it is the
        /// URL written without them.
        #[test]
        fn no_userinfo_survives(
            user in "[a-zA-Z0-9%:._~!$&'()*+,;=-]{0,12}",
            pass in proptest::option::of("[a-zA-Z0-9%:@._~!$&'()*+,;=-]{0,12}"),
            host in "[a-z0-9.-]{1,20}(:[0-9]{1,5})?",
            path in "(/[a-zA-Z0-9@%._~:-]{0,10}){0,4}",
            scheme in "(http|https)",
        ) {
            let userinfo = match &pass {
                Some(p) => format!("{user}:{p}@"),
                None => format!("{user}@"),
            };
            let raw = format!("{scheme}://{userinfo}{host}{path}?q=1#f");
            let kept = without_query(&raw, &[]).unwrap();
            proptest::prop_assert_eq!(kept, format!("{scheme}://{host}{path}"));
        }
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
        assert!(matches!(
            host("https://ex.com/a"),
            Some(Cow::Borrowed("ex.com"))
        ));
        assert_eq!(host("https://@:80/"), None);
    }
}

//! User-agent summary (`user_agent_summary`): browser and version, OS and version, device type.
//! The raw user-agent string is dropped once summarised.
//!
//! Rules: uap-core's `regexes.yaml` (vendored data, Apache-2.0, see `data/README.md`) through the
//! `ua-parser` crate, compiled once per process; a device-type rule layer on top (uap-core names
//! devices, not their type); then the client hints Matomo's tracker sends as `uadata`, which win
//! where present. Summaries are cached per user-agent string (bounded).

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};

use serde::{Deserialize, Serialize};

const REGEXES: &str = include_str!("../data/regexes.yaml");
/// Longest user-agent string looked at (characters); longer ones are cut before parsing.
pub const MAX_UA_CHARS: usize = 1024;
/// Longest `uadata` JSON accepted (bytes); larger ones are ignored.
pub const MAX_UADATA_BYTES: usize = 4096;
const CACHE_CAPACITY: usize = 20_000;

/// The kind of device a visitor used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceType {
    Desktop,
    Smartphone,
    Tablet,
    Tv,
    Console,
    Wearable,
    Bot,
    Unknown,
}

impl DeviceType {
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceType::Desktop => "desktop",
            DeviceType::Smartphone => "smartphone",
            DeviceType::Tablet => "tablet",
            DeviceType::Tv => "tv",
            DeviceType::Console => "console",
            DeviceType::Wearable => "wearable",
            DeviceType::Bot => "bot",
            DeviceType::Unknown => "unknown",
        }
    }
}

/// What is kept of a user agent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DeviceSummary {
    pub browser: Option<String>,
    pub browser_version: Option<String>,
    pub os: Option<String>,
    pub os_version: Option<String>,
    pub device: DeviceType,
}

/// User-agent client hints as Matomo's tracker sends them in `uadata`
/// (`navigator.userAgentData.getHighEntropyValues`).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientHints {
    #[serde(default)]
    pub full_version_list: Vec<Brand>,
    #[serde(default)]
    pub brands: Vec<Brand>,
    #[serde(default)]
    pub mobile: Option<bool>,
    #[serde(default)]
    pub platform: Option<String>,
    #[serde(default)]
    pub platform_version: Option<String>,
    #[serde(default)]
    pub form_factors: Vec<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct Brand {
    #[serde(default)]
    pub brand: String,
    #[serde(default)]
    pub version: String,
}

impl ClientHints {
    /// Parses `uadata`; None when it is too large or not the expected JSON.
    pub fn parse(json: &str) -> Option<Self> {
        if json.len() > MAX_UADATA_BYTES {
            return None;
        }
        serde_json::from_str(json).ok()
    }
}

fn extractor() -> &'static ua_parser::Extractor<'static> {
    static EXTRACTOR: OnceLock<ua_parser::Extractor<'static>> = OnceLock::new();
    EXTRACTOR.get_or_init(|| {
        let regexes: ua_parser::Regexes<'static> =
            serde_yaml_ng::from_str(REGEXES).expect("the vendored regexes.yaml parses");
        ua_parser::Extractor::try_from(regexes).expect("the vendored regexes.yaml compiles")
    })
}

/// Compiles the rules now (they are otherwise compiled on first use, which takes a moment).
pub fn warm_up() {
    let _ = extractor();
}

/// Summaries cached per user-agent string (a fast seeded hash: the key is hashed on every hit;
/// the map is bounded, so a flood of colliding keys cannot grow its chains without limit).
#[derive(Default)]
pub struct UaCache {
    map: RwLock<HashMap<String, Arc<DeviceSummary>, foldhash::fast::RandomState>>,
}

impl UaCache {
    /// The summary of `ua`, refined by client hints when present.
    pub fn summarise(&self, ua: &str, hints: Option<&ClientHints>) -> Arc<DeviceSummary> {
        let ua = crate::url::truncate(ua, MAX_UA_CHARS);
        let cached = self.map.read().expect("cache lock").get(ua).cloned();
        let base = match cached {
            Some(s) => s,
            None => {
                let s = Arc::new(summarise_uncached(ua));
                let mut map = self.map.write().expect("cache lock");
                if map.len() >= CACHE_CAPACITY {
                    map.clear();
                }
                map.insert(ua.to_string(), s.clone());
                s
            }
        };
        match hints {
            Some(h) => Arc::new(apply_hints((*base).clone(), h)),
            None => base,
        }
    }
}

fn version(major: Option<&str>, minor: Option<&str>) -> Option<String> {
    let major = major.filter(|m| !m.is_empty())?;
    Some(match minor.filter(|m| !m.is_empty()) {
        Some(minor) => format!("{major}.{minor}"),
        None => major.to_string(),
    })
}

fn known(s: &str) -> Option<String> {
    (!s.is_empty() && s != "Other").then(|| s.to_string())
}

/// Summarises a user agent with the uap-core rules and the device-type layer.
pub fn summarise_uncached(ua: &str) -> DeviceSummary {
    let ex = extractor();
    let (browser, browser_version) = match ex.ua.extract(ua) {
        Some(v) => (known(&v.family), version(v.major, v.minor)),
        None => (None, None),
    };
    let (os, os_version) = match ex.os.extract(ua) {
        Some(v) => (
            known(&v.os),
            version(v.major.as_deref(), v.minor.as_deref()),
        ),
        None => (None, None),
    };
    let device_family = ex.dev.extract(ua).map(|d| d.device.into_owned());
    let device = device_type(
        ua,
        browser.as_deref(),
        os.as_deref(),
        device_family.as_deref(),
    );
    DeviceSummary {
        browser,
        browser_version,
        os,
        os_version,
        device,
    }
}

/// The device-type rule layer: uap-core's device family and a few well-known markers.
pub fn device_type(
    ua: &str,
    browser: Option<&str>,
    os: Option<&str>,
    device_family: Option<&str>,
) -> DeviceType {
    let has = |needle: &str| ua.contains(needle);
    let lower = ua.to_ascii_lowercase();
    if device_family == Some("Spider")
        || browser == Some("Spider")
        || ["bot/", "bot;", "crawler", "spider", "headlesschrome-bot"]
            .iter()
            .any(|m| lower.contains(m))
    {
        return DeviceType::Bot;
    }
    if ["PlayStation", "Xbox", "Nintendo"].iter().any(|m| has(m)) {
        return DeviceType::Console;
    }
    if [
        "SmartTV",
        "SMART-TV",
        "Smart-TV",
        "HbbTV",
        "Web0S",
        "CrKey",
        "AppleTV",
        "BRAVIA",
        "GoogleTV",
        "Android TV",
        "AndroidTV",
        "Roku",
        "AFTB",
        "AFTS",
        "AFTM",
        "AFTT",
    ]
    .iter()
    .any(|m| has(m))
        || (has("Tizen") && has("TV"))
    {
        return DeviceType::Tv;
    }
    if has("Watch") && (has("Wear OS") || has("watchOS")) {
        return DeviceType::Wearable;
    }
    if has("iPad")
        || has("Tablet")
        || has("Kindle")
        || has("Silk/")
        || device_family == Some("Generic Tablet")
        || (has("Android") && !has("Mobile"))
    {
        return DeviceType::Tablet;
    }
    if has("iPhone")
        || has("iPod")
        || has("Windows Phone")
        || (has("Android") && has("Mobile"))
        || has("Mobile Safari")
        || device_family == Some("Generic Smartphone")
        || device_family == Some("Generic Feature Phone")
    {
        return DeviceType::Smartphone;
    }
    match os {
        Some(
            "Windows" | "Mac OS X" | "Linux" | "Ubuntu" | "Chrome OS" | "ChromeOS" | "Fedora"
            | "Debian" | "FreeBSD" | "OpenBSD" | "NetBSD",
        ) => DeviceType::Desktop,
        _ if has("X11;") || has("Macintosh") || has("Windows NT") => DeviceType::Desktop,
        _ => DeviceType::Unknown,
    }
}

/// Client hints refine the summary: platform and its version, the browser's real brand and
/// version (the user-agent string is frozen in Chromium), mobile and form factor.
pub fn apply_hints(mut s: DeviceSummary, h: &ClientHints) -> DeviceSummary {
    if s.device == DeviceType::Bot {
        return s;
    }
    let brands = if h.full_version_list.is_empty() {
        &h.brands
    } else {
        &h.full_version_list
    };
    let real: Vec<&Brand> = brands
        .iter()
        .filter(|b| {
            let n = b.brand.to_ascii_lowercase();
            !(b.brand.trim().is_empty() || (n.contains("not") && n.contains("brand")))
        })
        .collect();
    let pick = real
        .iter()
        .find(|b| b.brand != "Chromium")
        .or_else(|| real.first());
    if let Some(b) = pick {
        let name = match b.brand.as_str() {
            "Google Chrome" => "Chrome",
            "Microsoft Edge" => "Edge",
            "Opera" | "Opera GX" => "Opera",
            other => other,
        };
        s.browser = Some(crate::url::truncate(name, 64).to_string());
        let mut parts = b.version.split('.');
        s.browser_version =
            version(parts.next(), parts.next()).map(|v| crate::url::truncate(&v, 32).to_string());
    }
    if let Some(p) = h.platform.as_deref().filter(|p| !p.is_empty()) {
        let pv = h.platform_version.as_deref().unwrap_or_default();
        let mut parts = pv.split('.');
        let major = parts.next().and_then(|m| m.parse::<u32>().ok());
        let minor = parts.next();
        let (os, ver) = match p {
            // Windows 11 reports platformVersion 13 or higher; 1 to 10 are Windows 10.
            "Windows" => (
                "Windows",
                major.map(|m| {
                    if m >= 13 {
                        "11".to_string()
                    } else if m > 0 {
                        "10".to_string()
                    } else {
                        "7/8".to_string()
                    }
                }),
            ),
            "macOS" => (
                "Mac OS X",
                major.map(|m| version(Some(&m.to_string()), minor).unwrap_or_default()),
            ),
            "Chrome OS" | "ChromeOS" => ("Chrome OS", major.map(|m| m.to_string())),
            other => (
                other,
                major.map(|m| version(Some(&m.to_string()), minor).unwrap_or_default()),
            ),
        };
        s.os = Some(crate::url::truncate(os, 64).to_string());
        if ver.is_some() {
            s.os_version = ver;
        }
    }
    let factors: Vec<String> = h
        .form_factors
        .iter()
        .map(|f| f.to_ascii_lowercase())
        .collect();
    if factors.iter().any(|f| f == "tablet") {
        s.device = DeviceType::Tablet;
    } else if factors.iter().any(|f| f == "watch") {
        s.device = DeviceType::Wearable;
    } else if factors.iter().any(|f| f == "mobile") || h.mobile == Some(true) {
        s.device = DeviceType::Smartphone;
    } else if h.mobile == Some(false)
        && matches!(s.device, DeviceType::Unknown | DeviceType::Smartphone)
    {
        s.device = DeviceType::Desktop;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHROME_WIN: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.6099.109 Safari/537.36";
    const IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1";
    const IPAD: &str = "Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/16.6 Mobile/15E148 Safari/604.1";
    const ANDROID_TABLET: &str = "Mozilla/5.0 (Linux; Android 13; SM-X700) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/119.0.0.0 Safari/537.36";
    const GOOGLEBOT: &str =
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";
    const PS5: &str = "Mozilla/5.0 (PlayStation; PlayStation 5/2.26) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/13.0 Safari/605.1.15";
    const TIZEN_TV: &str = "Mozilla/5.0 (SMART-TV; LINUX; Tizen 6.0) AppleWebKit/537.36 (KHTML, like Gecko) 76.0.3809.146/6.0 TV Safari/537.36";
    const FIREFOX_LINUX: &str =
        "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0";

    #[test]
    fn summaries_of_common_agents() {
        let c = UaCache::default();
        let s = c.summarise(CHROME_WIN, None);
        assert_eq!(s.browser.as_deref(), Some("Chrome"));
        assert_eq!(s.browser_version.as_deref(), Some("120.0"));
        assert_eq!(s.os.as_deref(), Some("Windows"));
        assert_eq!(s.device, DeviceType::Desktop);
        let s = c.summarise(IPHONE, None);
        assert_eq!(s.os.as_deref(), Some("iOS"));
        assert_eq!(s.os_version.as_deref(), Some("17.1"));
        assert_eq!(s.device, DeviceType::Smartphone);
        assert_eq!(c.summarise(IPAD, None).device, DeviceType::Tablet);
        assert_eq!(c.summarise(ANDROID_TABLET, None).device, DeviceType::Tablet);
        assert_eq!(c.summarise(GOOGLEBOT, None).device, DeviceType::Bot);
        assert_eq!(c.summarise(PS5, None).device, DeviceType::Console);
        assert_eq!(c.summarise(TIZEN_TV, None).device, DeviceType::Tv);
        let s = c.summarise(FIREFOX_LINUX, None);
        assert_eq!(
            (s.browser.as_deref(), s.device),
            (Some("Firefox"), DeviceType::Desktop)
        );
        assert_eq!(c.summarise("", None).device, DeviceType::Unknown);
    }

    #[test]
    fn client_hints_win() {
        let hints = ClientHints::parse(
            r#"{"fullVersionList":[{"brand":"Not_A Brand","version":"8.0.0.0"},{"brand":"Chromium","version":"120.0.6099.109"},{"brand":"Microsoft Edge","version":"120.0.2210.77"}],"mobile":false,"model":"","platform":"Windows","platformVersion":"15.0.0"}"#,
        )
        .unwrap();
        let s = UaCache::default().summarise(CHROME_WIN, Some(&hints));
        assert_eq!(s.browser.as_deref(), Some("Edge"));
        assert_eq!(s.browser_version.as_deref(), Some("120.0"));
        assert_eq!(
            (s.os.as_deref(), s.os_version.as_deref()),
            (Some("Windows"), Some("11"))
        );
        assert_eq!(s.device, DeviceType::Desktop);
        let mobile = ClientHints::parse(
            r#"{"mobile":true,"platform":"Android","platformVersion":"14.0.0"}"#,
        )
        .unwrap();
        let s = apply_hints(summarise_uncached(CHROME_WIN), &mobile);
        assert_eq!(s.device, DeviceType::Smartphone);
        assert_eq!(s.os.as_deref(), Some("Android"));
        assert!(ClientHints::parse("not json").is_none());
        assert!(ClientHints::parse(&"x".repeat(MAX_UADATA_BYTES + 1)).is_none());
    }
}

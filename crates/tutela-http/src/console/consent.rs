//! The console's consent page (`/console/consent`):
//!
//! * consent rates per cookie category over a period, as an SVG chart and a table — aggregated
//!   figures, no consent id: `ViewConsentRates` (analyst, DPO, administrator);
//! * a receipt looked up by consent id, and the proof export of a period (JSON lines or CSV) —
//!   records keyed by pseudonymous ids, the DPO's proof of consent (GDPR art. 7(1)):
//!   `ReadConsentRecords` (DPO only). Both are POSTed forms (CSRF-checked; the consent id never
//!   appears in a URL or an access log) and both are written to the audit log (counts and the
//!   period only, no consent id).

use std::fmt::Write as _;

use askama::Template;
use axum::extract::{Query, State};
use axum::response::Response;
use serde::Deserialize;
use tutela_domain::consent::is_uuid;
use tutela_domain::operator::Permission;
use tutela_domain::register::CookieCategory;
use tutela_store::ConsentCategory;

use super::i18n::Text;
use super::web::{Chrome, CsrfForm, Flash, Result, Signed, render};
use crate::AppState;

/// Longest period the page charts or exports in one go (days).
pub const MAX_DAYS: i64 = 366;
/// Records shown on a receipt (the newest).
const RECEIPT_RECORDS: i64 = 200;

macro_rules! strings {
    ($($key:ident: $en:literal, $fr:literal;)*) => {
        /// The consent page's wording (kept here, next to the page).
        pub(crate) struct ConsentText { $(pub $key: &'static str,)* }
        static EN: ConsentText = ConsentText { $($key: $en,)* };
        static FR: ConsentText = ConsentText { $($key: $fr,)* };
    };
}

strings! {
    nav_consent: "Consent", "Consentement";
    nav_analytics: "Analytics", "Statistiques";
    title: "Consent", "Consentement";
    intro: "How visitors answered the cookie banner, per category and per day (UTC). Each choice, change of mind or withdrawal is a record; the rate is the share of records that granted the category among those that answered for it.", "Les réponses des visiteurs au bandeau cookies, par catégorie et par jour (UTC). Chaque choix, changement d’avis ou retrait est un enregistrement ; le taux est la part des enregistrements qui acceptent la catégorie parmi ceux qui y répondent.";
    period: "Period", "Période";
    from: "From", "Du";
    to: "To (included)", "Au (inclus)";
    show: "Show", "Afficher";
    rates_title: "Consent rate per category", "Taux de consentement par catégorie";
    no_records: "No consent record in this period.", "Aucun enregistrement de consentement sur cette période.";
    col_day: "Day", "Jour";
    col_records: "Records", "Enregistrements";
    col_gpc: "With GPC", "Avec GPC";
    total: "Period", "Période";
    granted: "granted", "accepté";
    refused: "refused", "refusé";
    receipt_title: "Receipt lookup", "Retrouver un reçu";
    receipt_intro: "The consent id is the random identifier the visitor’s browser keeps (window.tutela.consent.get().consentId, or the receipt link of the banner). It identifies no one.", "L’identifiant de consentement est l’identifiant aléatoire conservé par le navigateur du visiteur (window.tutela.consent.get().consentId, ou le lien de reçu du bandeau). Il n’identifie personne.";
    consent_id: "Consent id", "Identifiant de consentement";
    look_up: "Look up", "Rechercher";
    bad_id: "A consent id is a UUID such as 3f2c1e9a-8b7d-4c6e-9f01-23456789abcd.", "Un identifiant de consentement est un UUID, par exemple 3f2c1e9a-8b7d-4c6e-9f01-23456789abcd.";
    no_receipt: "No record has this consent id (records are deleted when their retention period ends).", "Aucun enregistrement ne porte cet identifiant (les enregistrements sont supprimés à la fin de leur durée de conservation).";
    receipt_of: "Records of consent id", "Enregistrements de l’identifiant";
    col_when: "Recorded (UTC)", "Enregistré (UTC)";
    col_method: "Method", "Méthode";
    col_source: "Source", "Source";
    col_revision: "Register revision", "Révision du registre";
    col_site: "Site", "Site";
    col_deleted: "Deleted after", "Supprimé après";
    yes: "yes", "oui";
    unanswered: "—", "—";
    export_title: "Proof export", "Export de la preuve";
    export_intro: "Every record of the period, to prove consent to an authority or an auditor (GDPR art. 7(1)). The export is written to the audit log.", "Tous les enregistrements de la période, pour prouver le consentement à une autorité ou un auditeur (art. 7(1) du RGPD). L’export est inscrit au journal d’audit.";
    format: "Format", "Format";
    download: "Download", "Télécharger";
    bad_period: "The period could not be read; the last 30 days are shown.", "La période n’a pas pu être lue ; les 30 derniers jours sont affichés.";
    period_too_long: "A period is at most 366 days.", "Une période compte au plus 366 jours.";
    records_dpo_only: "Receipts and the proof export are for the DPO.", "Les reçus et l’export de la preuve sont réservés au DPO.";
}

/// The consent page's wording in the console's language.
pub(crate) fn text(t: &Text) -> &'static ConsentText {
    if t.code == "fr" { &FR } else { &EN }
}

/// The category's label for the page.
fn label(c: ConsentCategory, fr: bool) -> &'static str {
    match (c, fr) {
        (ConsentCategory::Functional, false) => "Functional",
        (ConsentCategory::Functional, true) => "Fonctionnels",
        (ConsentCategory::Analytics, false) => "Analytics",
        (ConsentCategory::Analytics, true) => "Statistiques",
        (ConsentCategory::Targeting, false) => "Targeting",
        (ConsentCategory::Targeting, true) => "Ciblage",
    }
}

/// Chart colours (SVG presentation attributes: allowed under the console's CSP), chosen for
/// contrast on light and dark backgrounds and told apart by dash pattern too.
fn stroke(c: ConsentCategory) -> (&'static str, &'static str) {
    match c {
        ConsentCategory::Functional => ("#2f6fed", ""),
        ConsentCategory::Analytics => ("#0f8a5f", "6 4"),
        ConsentCategory::Targeting => ("#c2410c", "2 4"),
    }
}

struct Cell {
    granted: i64,
    refused: i64,
    rate: String,
}

fn cell(granted: i64, refused: i64) -> Cell {
    let rate = if granted + refused > 0 {
        format!(
            "{:.0} %",
            granted as f64 * 100.0 / (granted + refused) as f64
        )
    } else {
        "—".to_string()
    };
    Cell {
        granted,
        refused,
        rate,
    }
}

struct DayRow {
    date: String,
    records: i64,
    gpc: i64,
    cells: Vec<Cell>,
}

struct Category {
    label: &'static str,
    colour: &'static str,
}

struct RecordRow {
    when: String,
    method: String,
    source: String,
    revision: String,
    site: String,
    gpc: bool,
    answers: Vec<&'static str>,
    delete_after: String,
}

struct Receipt {
    consent_id: String,
    rows: Vec<RecordRow>,
    more: bool,
}

#[derive(Template)]
#[template(path = "console/consent.html")]
struct ConsentPage {
    chrome: Chrome,
    x: &'static ConsentText,
    from: String,
    to: String,
    categories: Vec<Category>,
    days: Vec<DayRow>,
    totals: DayRow,
    chart: String,
    can_records: bool,
    receipt: Option<Receipt>,
    lookup_id: String,
}

#[derive(Deserialize, Default)]
pub(crate) struct PeriodQuery {
    from: Option<String>,
    to: Option<String>,
}

#[derive(Deserialize)]
pub(crate) struct LookupForm {
    #[serde(default)]
    consent_id: String,
    from: Option<String>,
    to: Option<String>,
}

#[derive(Deserialize)]
pub(crate) struct ExportForm {
    from: Option<String>,
    to: Option<String>,
    #[serde(default)]
    format: String,
}

fn date_of(secs: i64) -> String {
    jiff::Timestamp::from_second(secs)
        .map(|t| {
            t.to_zoned_datetime(jiff::tz::TimeZone::UTC)
                .date()
                .to_string()
        })
        .unwrap_or_default()
}

/// `[from, to)` in unix seconds from two dates (the last included); the last 30 days by default.
fn period(from: Option<&str>, to: Option<&str>) -> std::result::Result<(i64, i64), bool> {
    fn blank(s: Option<&str>) -> Option<&str> {
        s.map(str::trim).filter(|s| !s.is_empty())
    }
    let (from, to) = (blank(from), blank(to));
    let today_end = {
        let now = jiff::Timestamp::now().as_second();
        now - now.rem_euclid(86_400) + 86_400
    };
    let to = crate::consent::bound(to, true, today_end).map_err(|_| false)?;
    let from = crate::consent::bound(from, false, to - 30 * 86_400).map_err(|_| false)?;
    if from >= to {
        return Err(false);
    }
    if to - from > MAX_DAYS * 86_400 {
        return Err(true);
    }
    Ok((from, to))
}

/// The asked categories, in the register's banner order.
fn asked(state: &AppState) -> Vec<ConsentCategory> {
    tutela_domain::consent::banner_categories(&state.register.register)
        .iter()
        .filter_map(|c| match c {
            CookieCategory::Functional => Some(ConsentCategory::Functional),
            CookieCategory::Analytics => Some(ConsentCategory::Analytics),
            CookieCategory::Targeting => Some(ConsentCategory::Targeting),
            CookieCategory::Unknown(_) => None,
        })
        .collect()
}

/// One line per category: the daily grant rate, 0–100 %, over the period.
fn chart(
    from: i64,
    to: i64,
    cats: &[ConsentCategory],
    days: &[tutela_store::ConsentDay],
    fr: bool,
) -> String {
    const W: f64 = 720.0;
    const H: f64 = 240.0;
    const L: f64 = 44.0;
    const R: f64 = 12.0;
    const T: f64 = 12.0;
    const B: f64 = 28.0;
    let n = ((to - from) / 86_400).max(1) as f64;
    let first = from.div_euclid(86_400);
    let x = |day: i64| L + (W - L - R) * ((day - first) as f64 + 0.5) / n;
    let y = |rate: f64| T + (H - T - B) * (1.0 - rate);
    let mut s = String::with_capacity(4096);
    let title = if fr {
        "Taux de consentement par jour"
    } else {
        "Consent rate per day"
    };
    let _ = write!(
        s,
        "<svg class=\"consent-chart\" id=\"consent-chart\" viewBox=\"0 0 {W} {H}\" role=\"img\" aria-labelledby=\"consent-chart-title\" width=\"100%\">\
         <title id=\"consent-chart-title\">{title}</title>"
    );
    for pct in [0, 25, 50, 75, 100] {
        let yy = y(f64::from(pct) / 100.0);
        let _ = write!(
            s,
            "<line x1=\"{L}\" x2=\"{}\" y1=\"{yy:.1}\" y2=\"{yy:.1}\" stroke=\"currentColor\" stroke-opacity=\"0.15\"/>\
             <text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\" font-size=\"11\" fill=\"currentColor\" fill-opacity=\"0.7\">{pct} %</text>",
            W - R,
            L - 6.0,
            yy + 4.0
        );
    }
    // First and last day under the axis.
    for (day, anchor) in [(first, "start"), (first + n as i64 - 1, "end")] {
        let xx = if anchor == "start" { L } else { W - R };
        let _ = write!(
            s,
            "<text x=\"{xx:.1}\" y=\"{}\" text-anchor=\"{anchor}\" font-size=\"11\" fill=\"currentColor\" fill-opacity=\"0.7\">{}</text>",
            H - 8.0,
            date_of(day * 86_400)
        );
    }
    for c in cats {
        let idx = ConsentCategory::ALL
            .iter()
            .position(|a| a == c)
            .unwrap_or(0);
        let (colour, dash) = stroke(*c);
        let points: Vec<(f64, f64, i64, i64)> = days
            .iter()
            .filter_map(|d| {
                let (g, r) = d.categories[idx];
                (g + r > 0).then(|| (x(d.day), y(g as f64 / (g + r) as f64), g, r))
            })
            .collect();
        if points.is_empty() {
            continue;
        }
        let line: Vec<String> = points
            .iter()
            .map(|(px, py, _, _)| format!("{px:.1},{py:.1}"))
            .collect();
        let dash = if dash.is_empty() {
            String::new()
        } else {
            format!(" stroke-dasharray=\"{dash}\"")
        };
        let _ = write!(
            s,
            "<polyline class=\"rate-{}\" points=\"{}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"2.2\"{dash}/>",
            c.as_str(),
            line.join(" ")
        );
        for (px, py, g, r) in &points {
            let _ = write!(
                s,
                "<circle cx=\"{px:.1}\" cy=\"{py:.1}\" r=\"3\" fill=\"{colour}\"><title>{}: {g} / {}</title></circle>",
                label(*c, fr),
                g + r
            );
        }
    }
    s.push_str("</svg>");
    s
}

async fn page(
    state: &AppState,
    signed: &Signed,
    from: Option<&str>,
    to: Option<&str>,
    receipt: Option<Receipt>,
    lookup_id: String,
    mut flash: Option<Flash>,
) -> Result<Response> {
    let x = text(signed.t);
    let fr = signed.t.code == "fr";
    let (from, to) = match period(from, to) {
        Ok(p) => p,
        Err(too_long) => {
            flash = flash.or(Flash::error(if too_long {
                x.period_too_long
            } else {
                x.bad_period
            }));
            period(None, None).map_err(|_| signed.internal("consent period", "default period"))?
        }
    };
    let cats = asked(state);
    let days = state
        .store
        .consent_days(from, to)
        .await
        .map_err(|e| signed.internal("consent stats", e))?;
    let idx = |c: &ConsentCategory| {
        ConsentCategory::ALL
            .iter()
            .position(|a| a == c)
            .unwrap_or(0)
    };
    let rows: Vec<DayRow> = days
        .iter()
        .map(|d| DayRow {
            date: date_of(d.day * 86_400),
            records: d.records,
            gpc: d.gpc,
            cells: cats
                .iter()
                .map(|c| {
                    let (g, r) = d.categories[idx(c)];
                    cell(g, r)
                })
                .collect(),
        })
        .collect();
    let totals = DayRow {
        date: String::new(),
        records: days.iter().map(|d| d.records).sum(),
        gpc: days.iter().map(|d| d.gpc).sum(),
        cells: cats
            .iter()
            .map(|c| {
                let i = idx(c);
                cell(
                    days.iter().map(|d| d.categories[i].0).sum(),
                    days.iter().map(|d| d.categories[i].1).sum(),
                )
            })
            .collect(),
    };
    let mut chrome = signed.chrome(state, x.title, "/console/consent");
    chrome.flash = flash;
    let page = ConsentPage {
        chrome,
        x,
        from: date_of(from),
        to: date_of(to - 1),
        categories: cats
            .iter()
            .map(|c| Category {
                label: label(*c, fr),
                colour: stroke(*c).0,
            })
            .collect(),
        chart: chart(from, to, &cats, &days, fr),
        days: rows,
        totals,
        can_records: signed.can(Permission::ReadConsentRecords),
        receipt,
        lookup_id,
    };
    Ok(render(&page))
}

/// `GET /console/consent?from=…&to=…`: rates per category over the period.
pub(crate) async fn consent_page(
    State(state): State<AppState>,
    signed: Signed,
    Query(q): Query<PeriodQuery>,
) -> Result<Response> {
    signed.require(Permission::ViewConsentRates)?;
    page(
        &state,
        &signed,
        q.from.as_deref(),
        q.to.as_deref(),
        None,
        String::new(),
        None,
    )
    .await
}

fn answer(v: Option<bool>, x: &'static ConsentText) -> &'static str {
    match v {
        Some(true) => x.granted,
        Some(false) => x.refused,
        None => x.unanswered,
    }
}

/// `POST /console/consent/receipt`: the records of one consent id (DPO).
pub(crate) async fn receipt(
    State(state): State<AppState>,
    signed: Signed,
    CsrfForm(form): CsrfForm<LookupForm>,
) -> Result<Response> {
    signed.require(Permission::ReadConsentRecords)?;
    let x = text(signed.t);
    let id = form.consent_id.trim().to_ascii_lowercase();
    let (from, to) = (form.from.as_deref(), form.to.as_deref());
    if !is_uuid(&id) {
        let shown = form.consent_id.chars().take(64).collect();
        return page(
            &state,
            &signed,
            from,
            to,
            None,
            shown,
            Flash::error(x.bad_id),
        )
        .await;
    }
    let records = state
        .store
        .consent_records(&id, RECEIPT_RECORDS + 1)
        .await
        .map_err(|e| signed.internal("consent receipt", e))?;
    audit(
        &state,
        &signed,
        "consent_receipt_viewed",
        serde_json::json!({ "records": records.len().min(RECEIPT_RECORDS as usize) }),
    )
    .await;
    if records.is_empty() {
        return page(
            &state,
            &signed,
            from,
            to,
            None,
            id,
            Flash::error(x.no_receipt),
        )
        .await;
    }
    let more = records.len() as i64 > RECEIPT_RECORDS;
    let cats = asked(&state);
    let rows = records
        .iter()
        .rev()
        .take(RECEIPT_RECORDS as usize)
        .map(|r| RecordRow {
            when: super::web::fmt_time(Some(r.recorded_at)),
            method: r.method.clone(),
            source: r.source.clone(),
            revision: r.revision.clone(),
            site: r.site.clone().unwrap_or_default(),
            gpc: r.gpc,
            answers: cats
                .iter()
                .map(|c| {
                    answer(
                        match c {
                            ConsentCategory::Functional => r.functional,
                            ConsentCategory::Analytics => r.analytics,
                            ConsentCategory::Targeting => r.targeting,
                        },
                        x,
                    )
                })
                .collect(),
            delete_after: date_of(r.delete_after),
        })
        .collect();
    let receipt = Receipt {
        consent_id: id.clone(),
        rows,
        more,
    };
    page(&state, &signed, from, to, Some(receipt), id, None).await
}

/// `POST /console/consent/export`: every record of the period as a download (DPO).
pub(crate) async fn export(
    State(state): State<AppState>,
    signed: Signed,
    CsrfForm(form): CsrfForm<ExportForm>,
) -> Result<Response> {
    signed.require(Permission::ReadConsentRecords)?;
    let x = text(signed.t);
    let csv = match form.format.as_str() {
        "csv" => true,
        "" | "jsonl" => false,
        _ => {
            return page(
                &state,
                &signed,
                None,
                None,
                None,
                String::new(),
                Flash::error(x.bad_period),
            )
            .await;
        }
    };
    let (from, to) = match period(form.from.as_deref(), form.to.as_deref()) {
        Ok(p) => p,
        Err(too_long) => {
            let msg = if too_long {
                x.period_too_long
            } else {
                x.bad_period
            };
            return page(
                &state,
                &signed,
                None,
                None,
                None,
                String::new(),
                Flash::error(msg),
            )
            .await;
        }
    };
    audit(
        &state,
        &signed,
        "consent_proof_exported",
        serde_json::json!({
            "from": date_of(from),
            "to": date_of(to - 1),
            "format": if csv { "csv" } else { "jsonl" },
        }),
    )
    .await;
    Ok(crate::consent::export_response(&state, from, to, csv))
}

/// Writes a console action on consent records to the tamper-evident audit log (no consent id).
async fn audit(state: &AppState, signed: &Signed, action: &str, mut details: serde_json::Value) {
    details["operator"] = serde_json::Value::from(signed.operator.id.clone());
    tracing::info!(target: "tutela::console", action, operator = %signed.operator.id, "consent records read");
    if let Err(err) = state
        .vault
        .audit_event(&tutela_vault::Actor::new("console"), action, details)
        .await
    {
        tracing::error!(error = %err, action, "could not append a consent action to the audit log");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_are_bounded_and_read_as_whole_days() {
        let (f, t) = period(Some("2026-11-01"), Some("2026-11-30")).unwrap();
        assert_eq!(t - f, 30 * 86_400);
        assert_eq!(date_of(f), "2026-11-01");
        assert_eq!(date_of(t - 1), "2026-11-30");
        assert_eq!(period(Some("2026-11-30"), Some("2026-11-01")), Err(false));
        assert_eq!(period(Some("yesterday"), None), Err(false));
        assert_eq!(period(Some("2020-01-01"), Some("2026-01-01")), Err(true));
        let (f, t) = period(Some(""), None).unwrap();
        assert_eq!(t - f, 30 * 86_400);
    }

    #[test]
    fn the_chart_draws_one_line_per_answered_category() {
        let day = 20_000;
        let days = vec![
            tutela_store::ConsentDay {
                day,
                records: 4,
                gpc: 1,
                categories: [(1, 1), (3, 1), (0, 0)],
            },
            tutela_store::ConsentDay {
                day: day + 2,
                records: 2,
                gpc: 0,
                categories: [(2, 0), (0, 2), (0, 0)],
            },
        ];
        let svg = chart(
            day * 86_400,
            (day + 3) * 86_400,
            &ConsentCategory::ALL,
            &days,
            false,
        );
        assert!(svg.contains("class=\"rate-functional\""));
        assert!(svg.contains("class=\"rate-analytics\""));
        // Nobody answered for targeting: no line.
        assert!(!svg.contains("rate-targeting"));
        assert_eq!(svg.matches("<circle").count(), 4);
        assert!(svg.contains("Analytics: 3 / 4"));
        assert_eq!(cell(3, 1).rate, "75 %");
        assert_eq!(cell(0, 0).rate, "—");
    }
}

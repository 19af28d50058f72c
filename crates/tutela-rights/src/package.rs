//! The response package: a zip with the data as JSON and CSV and a human-readable HTML
//! summary — for access, the art. 15 report (purposes, categories, recipients, retention,
//! source, rights, complaint route), from the register like the notice; for erasure, what was
//! erased and what was kept, why and until when.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;

use tutela_domain::Register;
use tutela_domain::rights::RightKind;

use crate::service::RequestView;
use crate::source::{Erased, SourceRecord};

/// What the execution produced, per source.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Results {
    /// Records found (access, portability), with the source they came from.
    pub records: Vec<(String, SourceRecord)>,
    /// Erasure outcomes per source.
    pub erased: Vec<(String, Erased)>,
    /// Steps that failed for good, with their (non-personal) error.
    pub failed: Vec<(String, String)>,
}

fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

struct Words {
    title: &'static str,
    request: &'static str,
    due: &'static str,
    purposes: &'static str,
    basis: &'static str,
    categories: &'static str,
    recipients: &'static str,
    nobody: &'static str,
    retention: &'static str,
    source: &'static str,
    your_data: &'static str,
    records: &'static str,
    no_data: &'static str,
    rights: &'static str,
    complaint: &'static str,
    kept: &'static str,
    erased: &'static str,
    reason: &'static str,
    until: &'static str,
    failed: &'static str,
    files: &'static str,
}

const EN: Words = Words {
    title: "Answer to your request",
    request: "Request",
    due: "Answered on",
    purposes: "Why we process your data",
    basis: "Legal basis",
    categories: "Categories of data",
    recipients: "Recipients",
    nobody: "nobody outside our company",
    retention: "How long we keep it",
    source: "Where the data comes from",
    your_data: "Your data",
    records: "records",
    no_data: "We found no data about you in this system.",
    rights: "Your rights",
    complaint: "You may lodge a complaint with",
    kept: "What we had to keep",
    erased: "What we erased",
    reason: "why",
    until: "until",
    failed: "Systems we could not reach (we keep trying and will write to you)",
    files: "The files data.json and the .csv files in this archive hold the data itself.",
};

const FR: Words = Words {
    title: "Réponse à votre demande",
    request: "Demande",
    due: "Répondue le",
    purposes: "Pourquoi nous traitons vos données",
    basis: "Base légale",
    categories: "Catégories de données",
    recipients: "Destinataires",
    nobody: "personne en dehors de notre société",
    retention: "Durée de conservation",
    source: "Origine des données",
    your_data: "Vos données",
    records: "enregistrements",
    no_data: "Nous n'avons trouvé aucune donnée vous concernant dans ce système.",
    rights: "Vos droits",
    complaint: "Vous pouvez introduire une réclamation auprès de",
    kept: "Ce que nous devons conserver",
    erased: "Ce que nous avons effacé",
    reason: "motif",
    until: "jusqu'à",
    failed: "Systèmes non joignables (nous réessayons et vous écrirons)",
    files: "Le fichier data.json et les fichiers .csv de cette archive contiennent les données elles-mêmes.",
};

/// The HTML summary (self-contained: no script, no external resource, inline CSS not needed).
pub fn report_html(reg: &Register, lang: &str, view: &RequestView, results: &Results) -> String {
    let w = if lang == "fr" { &FR } else { &EN };
    let mut h = String::new();
    h.push_str(&format!(
        "<!DOCTYPE html>\n<html lang=\"{}\">\n<head><meta charset=\"utf-8\"><title>{} · {}</title></head>\n<body>\n",
        esc(lang),
        w.title,
        esc(&reg.controller.name)
    ));
    h.push_str(&format!(
        "<h1>{}</h1>\n<p>{}: {} ({}) — <code>{}</code></p>\n",
        w.title,
        w.request,
        esc(view.kind.label(lang)),
        view.kind.article(),
        esc(&view.id)
    ));
    if let Some(replied) = view.replied_at {
        h.push_str(&format!(
            "<p>{}: {}</p>\n",
            w.due,
            replied.to_zoned_datetime(jiff::tz::TimeZone::UTC).date()
        ));
    }
    let with_report = matches!(view.kind, RightKind::Access | RightKind::Portability);
    if with_report {
        // Purposes concerned: those the found records name; all when none does.
        let named: BTreeSet<&str> = results
            .records
            .iter()
            .filter_map(|(_, r)| r.purpose.as_deref())
            .collect();
        h.push_str(&format!("<h2>{}</h2>\n", w.purposes));
        for p in reg
            .purposes
            .iter()
            .filter(|p| named.is_empty() || named.contains(p.id.as_str()))
        {
            h.push_str(&format!(
                "<section>\n<h3>{}</h3>\n<p>{}</p>\n<dl>\n",
                esc(p.label.get(lang)),
                esc(p.description.get(lang))
            ));
            h.push_str(&format!(
                "<dt>{}</dt><dd>{} ({})</dd>\n",
                w.basis,
                esc(p.legal_basis.as_str()),
                p.legal_basis.article()
            ));
            let cats: Vec<String> = p
                .categories
                .iter()
                .map(|c| {
                    reg.category(c)
                        .map_or(c.clone(), |c| c.label.get(lang).to_string())
                })
                .collect();
            h.push_str(&format!(
                "<dt>{}</dt><dd>{}</dd>\n",
                w.categories,
                esc(&cats.join(", "))
            ));
            let recips: Vec<String> = p
                .recipients
                .iter()
                .map(|r| {
                    reg.recipient(r).map_or(r.clone(), |r| {
                        format!("{} — {}", r.name, r.service.get(lang))
                    })
                })
                .collect();
            h.push_str(&format!(
                "<dt>{}</dt><dd>{}</dd>\n",
                w.recipients,
                esc(&if recips.is_empty() {
                    w.nobody.to_string()
                } else {
                    recips.join("; ")
                })
            ));
            let ret: Vec<String> = p
                .retention
                .iter()
                .map(|r| {
                    let keep = r.keep.as_ref().map(|k| k.canonical()).unwrap_or_default();
                    let note = r
                        .note
                        .as_ref()
                        .map(|n| format!(" — {}", n.get(lang)))
                        .unwrap_or_default();
                    format!("{keep} ({}){note}", r.from.as_str())
                })
                .collect();
            h.push_str(&format!(
                "<dt>{}</dt><dd>{}</dd>\n",
                w.retention,
                esc(&ret.join("; "))
            ));
            h.push_str(&format!(
                "<dt>{}</dt><dd>{}</dd>\n</dl>\n</section>\n",
                w.source,
                esc(p.source.get(lang))
            ));
        }
        h.push_str(&format!("<h2>{}</h2>\n", w.your_data));
        let mut counts: BTreeMap<(String, String), usize> = BTreeMap::new();
        for (src, r) in &results.records {
            *counts
                .entry((src.clone(), r.collection.clone()))
                .or_default() += 1;
        }
        if counts.is_empty() {
            h.push_str(&format!("<p>{}</p>\n", w.no_data));
        } else {
            h.push_str("<ul>\n");
            for ((src, coll), n) in &counts {
                h.push_str(&format!(
                    "<li>{} / {}: {n} {}</li>\n",
                    esc(src),
                    esc(coll),
                    w.records
                ));
            }
            h.push_str(&format!("</ul>\n<p>{}</p>\n", w.files));
        }
    }
    if !results.erased.is_empty() {
        let deleted: u64 = results
            .erased
            .iter()
            .map(|(_, e)| e.deleted + e.masked)
            .sum();
        h.push_str(&format!(
            "<h2>{}</h2>\n<p>{deleted} {}</p>\n",
            w.erased, w.records
        ));
        let kept: Vec<_> = results
            .erased
            .iter()
            .flat_map(|(s, e)| e.kept.iter().map(move |k| (s, k)))
            .collect();
        if !kept.is_empty() {
            h.push_str(&format!("<h2>{}</h2>\n<ul>\n", w.kept));
            for (s, k) in kept {
                h.push_str(&format!(
                    "<li>{} / {}: {} {} — {}: {}{}</li>\n",
                    esc(s),
                    esc(&k.collection),
                    k.count,
                    w.records,
                    w.reason,
                    esc(&k.reason),
                    k.until
                        .as_ref()
                        .map(|u| format!(" — {}: {}", w.until, esc(u)))
                        .unwrap_or_default()
                ));
            }
            h.push_str("</ul>\n");
        }
    }
    if !results.failed.is_empty() {
        h.push_str(&format!("<h2>{}</h2>\n<ul>\n", w.failed));
        for (s, _) in &results.failed {
            h.push_str(&format!("<li>{}</li>\n", esc(s)));
        }
        h.push_str("</ul>\n");
    }
    h.push_str(&format!("<h2>{}</h2>\n<ul>\n", w.rights));
    for k in RightKind::ALL
        .iter()
        .filter(|k| **k != RightKind::DeathNotice)
    {
        h.push_str(&format!(
            "<li>{} ({})</li>\n",
            esc(k.label(lang)),
            k.article()
        ));
    }
    h.push_str(&format!(
        "</ul>\n<p>{} {}: <a href=\"{}\">{}</a></p>\n<p>{} — {}</p>\n</body>\n</html>\n",
        w.complaint,
        esc(reg.authority.name.get(lang)),
        esc(&reg.authority.complaint_url),
        esc(&reg.authority.complaint_url),
        esc(&reg.controller.name),
        esc(&reg.controller.dpo.email)
    ));
    h
}

fn csv_name(source: &str, collection: &str) -> String {
    let clean = |s: &str| {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect::<String>()
    };
    format!("{}-{}.csv", clean(source), clean(collection))
}

/// Builds the zip: `report.html`, `data.json` and one CSV per source and collection. For
/// portability only what the subject provided goes in.
pub fn build_zip(
    reg: &Register,
    lang: &str,
    view: &RequestView,
    results: &Results,
) -> Result<Vec<u8>, std::io::Error> {
    let portability = view.kind == RightKind::Portability;
    let records: Vec<&(String, SourceRecord)> = results
        .records
        .iter()
        .filter(|(_, r)| !portability || r.provided_by_subject)
        .collect();
    let filtered = Results {
        records: records.iter().map(|r| (*r).clone()).collect(),
        erased: results.erased.clone(),
        failed: results.failed.clone(),
    };

    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    let io = |e: zip::result::ZipError| std::io::Error::other(e.to_string());

    zip.start_file("report.html", opts).map_err(io)?;
    zip.write_all(report_html(reg, lang, view, &filtered).as_bytes())?;

    let data = serde_json::json!({
        "request": {"id": view.id, "kind": view.kind, "article": view.kind.article(), "received_at": view.received_at, "replied_at": view.replied_at},
        "controller": reg.controller.name,
        "records": filtered.records.iter().map(|(s, r)| serde_json::json!({
            "source": s, "collection": r.collection, "purpose": r.purpose, "category": r.category,
            "provided_by_subject": r.provided_by_subject, "fields": r.fields,
        })).collect::<Vec<_>>(),
        "erasure": filtered.erased.iter().map(|(s, e)| serde_json::json!({"source": s, "deleted": e.deleted, "masked": e.masked, "kept": e.kept})).collect::<Vec<_>>(),
    });
    zip.start_file("data.json", opts).map_err(io)?;
    zip.write_all(
        serde_json::to_string_pretty(&data)
            .expect("serialisable")
            .as_bytes(),
    )?;

    let mut groups: BTreeMap<(String, String), Vec<&SourceRecord>> = BTreeMap::new();
    for (s, r) in &filtered.records {
        groups
            .entry((s.clone(), r.collection.clone()))
            .or_default()
            .push(r);
    }
    for ((s, c), rows) in groups {
        let columns: BTreeSet<&String> = rows.iter().flat_map(|r| r.fields.keys()).collect();
        let mut w = csv::Writer::from_writer(Vec::new());
        w.write_record(columns.iter().map(|c| c.as_str()))?;
        for r in rows {
            w.write_record(columns.iter().map(|c| match r.fields.get(*c) {
                None | Some(serde_json::Value::Null) => String::new(),
                Some(serde_json::Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
            }))?;
        }
        let bytes = w
            .into_inner()
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        zip.start_file(csv_name(&s, &c), opts).map_err(io)?;
        zip.write_all(&bytes)?;
    }
    Ok(zip.finish().map_err(io)?.into_inner())
}

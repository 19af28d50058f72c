//! The record of processing activities of GDPR art. 30(1), computed from the register.
//!
//! [`ropa_json`] is the complete, machine-readable record (every language of the register, the
//! DPV term of each legal basis, retention rules as data); [`ropa_csv`] is the same record as a
//! spreadsheet in one language, one row per purpose × category of data, for the DPO and auditors.
//!
//! The register has no place for the general description of security measures
//! (art. 30(1)(g)); it comes from [`SECURITY_MEASURES`] (the measures the reference customer's
//! policy promises) or from the caller through [`ropa_json_with`].

use serde_json::{Value, json};

use crate::notice::{
    is_eea, legal_basis_label, period_text, recipient_role_label, resolve_language, retention_text,
};
use crate::register::{LegalBasis, Purpose, Recipient, Register, Text};

/// One technical or organisational security measure (art. 30(1)(g), art. 32), in English and
/// French.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SecurityMeasure {
    pub id: &'static str,
    pub en: &'static str,
    pub fr: &'static str,
}

impl SecurityMeasure {
    /// The description in `lang` (English for any language other than French).
    pub fn get(&self, lang: &str) -> &'static str {
        if lang.eq_ignore_ascii_case("fr") {
            self.fr
        } else {
            self.en
        }
    }
}

/// The security measures the reference customer's policy promises (SPEC, "Security measures
/// promised" and "Accounts"), plus minimisation and retention, which Tutela itself enforces.
pub const SECURITY_MEASURES: &[SecurityMeasure] = &[
    SecurityMeasure {
        id: "encryption",
        en: "Encryption used as systematically as possible, at rest and in transit.",
        fr: "Chiffrement utilisé aussi systématiquement que possible, au repos et en transit.",
    },
    SecurityMeasure {
        id: "need_to_know_access",
        en: "Access to personal data limited to the staff and processors who need it for their task.",
        fr: "Accès aux données personnelles limité aux personnels et sous-traitants qui en ont besoin pour leur mission.",
    },
    SecurityMeasure {
        id: "own_servers",
        en: "Data hosted only on the controller's own servers, in the data centre the customer chooses.",
        fr: "Données hébergées uniquement sur les propres serveurs du responsable du traitement, dans le centre de données choisi par le client.",
    },
    SecurityMeasure {
        id: "security_by_design",
        en: "Security requirements built into every service from the start and reviewed continuously.",
        fr: "Exigences de sécurité intégrées à chaque service dès sa conception et réexaminées en continu.",
    },
    SecurityMeasure {
        id: "passwords",
        en: "Passwords never stored in clear (salted hashes only) and only ever typed on the platform's own login page; two-factor authentication offered and encouraged.",
        fr: "Mots de passe jamais conservés en clair (empreintes salées uniquement) et saisis uniquement sur la page de connexion de la plateforme ; authentification à deux facteurs proposée et encouragée.",
    },
    SecurityMeasure {
        id: "minimisation",
        en: "Data minimised when collected (for example only half of a visitor's IP address is kept); data the register does not declare is dropped.",
        fr: "Données minimisées dès la collecte (par exemple, seule la moitié de l'adresse IP d'un visiteur est conservée) ; les données que le registre ne déclare pas sont écartées.",
    },
    SecurityMeasure {
        id: "retention",
        en: "Every stored datum carries its deletion deadline, computed from the register, and is deleted when it passes.",
        fr: "Chaque donnée conservée porte sa date d'effacement, calculée à partir du registre, et est supprimée à cette date.",
    },
];

fn text(t: &Text) -> Value {
    serde_json::to_value(t).unwrap_or(Value::Null)
}

fn opt_text(t: Option<&Text>) -> Value {
    t.map(text).unwrap_or(Value::Null)
}

fn basis_json(b: &LegalBasis) -> Value {
    json!({
        "basis": b.as_str(),
        "article": b.article(),
        "dpv": b.dpv(),
    })
}

/// Whether data sent to this recipient leaves the European Economic Area (as far as the register
/// tells: a non-EEA country, or declared transfer safeguards).
fn transfers_outside_eea(r: &Recipient) -> bool {
    r.country.as_deref().is_some_and(|c| !is_eea(c)) || r.transfer_safeguards.is_some()
}

/// The languages of the register, for per-language values.
fn per_language(reg: &Register, f: impl Fn(&str) -> String) -> Value {
    let mut map = serde_json::Map::new();
    for lang in &reg.notice.languages {
        map.insert(lang.clone(), Value::String(f(lang)));
    }
    Value::Object(map)
}

fn purpose_json(reg: &Register, p: &Purpose) -> Value {
    let subjects: Vec<Value> = p
        .subjects
        .iter()
        .map(|id| {
            json!({
                "id": id,
                "label": opt_text(reg.subject_type(id).map(|s| &s.label)),
            })
        })
        .collect();

    let categories: Vec<Value> = p
        .categories
        .iter()
        .map(|id| {
            let rule_index = p
                .retention_for(id)
                .and_then(|rule| p.retention.iter().position(|r| std::ptr::eq(r, rule)));
            match reg.category(id) {
                Some(c) => json!({
                    "id": c.id,
                    "label": text(&c.label),
                    "sensitivity": c.sensitivity.as_str(),
                    "never_store": c.never_store,
                    "minimisation": c.minimise.as_ref().map(|m| m.as_str()),
                    "provided_by_subject": c.provided_by_subject,
                    "retention_rule": rule_index,
                }),
                None => json!({ "id": id, "retention_rule": rule_index }),
            }
        })
        .collect();

    let recipients: Vec<Value> = p
        .recipients
        .iter()
        .map(|id| match reg.recipient(id) {
            Some(r) => json!({
                "id": r.id,
                "name": r.name,
                "role": r.role.as_str(),
                "service": text(&r.service),
                "country": r.country,
                "in_eea": r.country.as_deref().map(is_eea),
                "policy_url": r.policy_url,
                "transfer_safeguards": opt_text(r.transfer_safeguards.as_ref()),
            }),
            None => json!({ "id": id }),
        })
        .collect();

    let transfers: Vec<Value> = p
        .recipients
        .iter()
        .filter_map(|id| reg.recipient(id))
        .filter(|r| transfers_outside_eea(r))
        .map(|r| {
            json!({
                "recipient": r.id,
                "name": r.name,
                "country": r.country,
                "safeguards": opt_text(r.transfer_safeguards.as_ref()),
            })
        })
        .collect();

    let retention: Vec<Value> = p
        .retention
        .iter()
        .map(|r| {
            json!({
                "categories": r.categories,
                "from": r.from.as_str(),
                "start_event": r.from.event(),
                "keep": r.keep.as_ref().map(|k| k.canonical()),
                "basis": r.basis.as_ref().map(basis_json),
                "legal_obligation": r.is_legal_obligation(&p.legal_basis),
                "law": opt_text(r.law.as_ref()),
                "extendable_with_consent": r.extendable_with_consent,
                "note": opt_text(r.note.as_ref()),
                "statement": per_language(reg, |l| retention_text(r, &p.legal_basis, l)),
            })
        })
        .collect();

    let cookies: Vec<Value> = p
        .cookies
        .iter()
        .map(|c| {
            json!({
                "name": c.name,
                "category": c.category.as_str(),
                "lifetime": c.lifetime.canonical(),
                "provider": c.provider,
                "description": text(&c.description),
            })
        })
        .collect();

    json!({
        "id": p.id,
        "name": text(&p.label),
        "description": text(&p.description),
        "legal_basis": basis_json(&p.legal_basis),
        "legitimate_interest": opt_text(p.legitimate_interest.as_ref()),
        "consent_category": p.consent_category.as_ref().map(|c| c.as_str()),
        "data_subjects": subjects,
        "categories": categories,
        "recipients": recipients,
        "transfers_outside_eea": transfers,
        "retention": retention,
        "cookies": cookies,
        "source": text(&p.source),
    })
}

/// The art. 30(1) record as JSON, with [`SECURITY_MEASURES`] as the description of security
/// measures.
pub fn ropa_json(reg: &Register) -> Value {
    ropa_json_with(reg, SECURITY_MEASURES)
}

/// The art. 30(1) record as JSON, with the caller's description of security measures.
pub fn ropa_json_with(reg: &Register, measures: &[SecurityMeasure]) -> Value {
    let c = &reg.controller;
    let a = &reg.authority;
    let r = &reg.rights;
    json!({
        "record": "GDPR art. 30(1) record of processing activities",
        "schema": reg.schema,
        "register_hash": reg.content_hash(),
        "last_revision": reg.latest_revision().map(|rev| json!({"id": rev.id, "date": rev.date})),
        "languages": reg.notice.languages,
        "controller": {
            "name": c.name,
            "legal_entity": c.legal_entity,
            "postal_address": c.postal_address,
            "email": c.email,
            "website": c.website,
        },
        "dpo": {
            "name": c.dpo.name,
            "email": c.dpo.email,
            "postal_address": c.dpo.postal_address,
        },
        "supervisory_authority": {
            "name": text(&a.name),
            "website": a.website,
            "complaint_url": a.complaint_url,
            "authorities_list_url": a.authorities_list_url,
        },
        "rights_requests": {
            "reply_within": r.reply_within.canonical(),
            "max_extension": r.max_extension.canonical(),
            "request_records_kept": r.request_records_kept.canonical(),
            "after_death": r.after_death.as_str(),
            "email": r.email,
            "postal_address": r.postal_address,
            "identity_proof": text(&r.identity_proof),
        },
        "processing_activities": reg.purposes.iter().map(|p| purpose_json(reg, p)).collect::<Vec<_>>(),
        "security_measures": measures.iter().map(|m| json!({
            "id": m.id,
            "description": { "en": m.en, "fr": m.fr },
        })).collect::<Vec<_>>(),
    })
}

const CSV_HEADERS_EN: [&str; 20] = [
    "Purpose id",
    "Purpose",
    "Description",
    "Legal basis",
    "GDPR article",
    "DPV term",
    "Legitimate interest",
    "Data subjects",
    "Category id",
    "Category of data",
    "Sensitivity",
    "Never stored",
    "Minimisation",
    "Retention",
    "Law",
    "Recipients",
    "Transfers outside the EEA",
    "Cookies",
    "Source",
    "Consent category",
];

const CSV_HEADERS_FR: [&str; 20] = [
    "Identifiant du traitement",
    "Traitement",
    "Description",
    "Base légale",
    "Article du RGPD",
    "Terme DPV",
    "Intérêt légitime",
    "Personnes concernées",
    "Identifiant de la catégorie",
    "Catégorie de données",
    "Sensibilité",
    "Jamais conservée",
    "Minimisation",
    "Durée de conservation",
    "Texte applicable",
    "Destinataires",
    "Transferts hors EEE",
    "Cookies",
    "Origine des données",
    "Catégorie de consentement",
];

/// The art. 30(1) record as CSV in `lang` (falling back to the register's default language): a
/// header row, then one row per purpose × category of data (a purpose without categories gets
/// one row with empty category columns).
pub fn ropa_csv(reg: &Register, lang: &str) -> String {
    let lang = resolve_language(reg, lang);
    let lang = lang.as_str();
    let fr = lang.eq_ignore_ascii_case("fr");
    let (yes, no) = if fr { ("oui", "non") } else { ("yes", "no") };
    let sep = "; ";

    let mut w = csv::Writer::from_writer(Vec::new());
    let headers = if fr { CSV_HEADERS_FR } else { CSV_HEADERS_EN };
    w.write_record(headers)
        .expect("writing to a Vec cannot fail");

    for p in &reg.purposes {
        let subjects = p
            .subjects
            .iter()
            .map(|id| {
                reg.subject_type(id)
                    .map(|s| s.label.get(lang).to_string())
                    .unwrap_or_else(|| id.clone())
            })
            .collect::<Vec<_>>()
            .join(sep);
        let recipients = p
            .recipients
            .iter()
            .map(|id| match reg.recipient(id) {
                Some(r) => {
                    let mut s = format!("{} ({})", r.name, recipient_role_label(&r.role, lang));
                    if let Some(c) = &r.country {
                        s.push_str(&format!(" [{c}]"));
                    }
                    s
                }
                None => id.clone(),
            })
            .collect::<Vec<_>>()
            .join(sep);
        let transfers = p
            .recipients
            .iter()
            .filter_map(|id| reg.recipient(id))
            .filter(|r| transfers_outside_eea(r))
            .map(|r| match &r.transfer_safeguards {
                Some(g) => format!("{}: {}", r.name, g.get(lang)),
                None => r.name.clone(),
            })
            .collect::<Vec<_>>()
            .join(sep);
        let cookies = p
            .cookies
            .iter()
            .map(|c| format!("{} ({})", c.name, period_text(&c.lifetime, lang)))
            .collect::<Vec<_>>()
            .join(sep);
        let legitimate_interest = p
            .legitimate_interest
            .as_ref()
            .map(|t| t.get(lang).to_string())
            .unwrap_or_default();
        let consent = p
            .consent_category
            .as_ref()
            .map(|c| c.as_str().to_string())
            .unwrap_or_default();

        let mut row = |cat_id: &str, cat: Option<&crate::register::Category>| {
            let rule = if cat_id.is_empty() {
                p.retention.first()
            } else {
                p.retention_for(cat_id)
            };
            let record: [String; 20] = [
                p.id.clone(),
                p.label.get(lang).to_string(),
                p.description.get(lang).to_string(),
                legal_basis_label(&p.legal_basis, lang),
                p.legal_basis.article().to_string(),
                p.legal_basis.dpv().to_string(),
                legitimate_interest.clone(),
                subjects.clone(),
                cat_id.to_string(),
                cat.map(|c| c.label.get(lang).to_string())
                    .unwrap_or_else(|| cat_id.to_string()),
                cat.map(|c| c.sensitivity.as_str().to_string())
                    .unwrap_or_default(),
                match cat {
                    Some(c) if c.never_store => yes,
                    Some(_) => no,
                    None => "",
                }
                .to_string(),
                cat.and_then(|c| c.minimise.as_ref())
                    .map(|m| m.as_str().to_string())
                    .unwrap_or_default(),
                rule.map(|r| retention_text(r, &p.legal_basis, lang))
                    .unwrap_or_default(),
                rule.and_then(|r| r.law.as_ref())
                    .map(|l| l.get(lang).to_string())
                    .unwrap_or_default(),
                recipients.clone(),
                transfers.clone(),
                cookies.clone(),
                p.source.get(lang).to_string(),
                consent.clone(),
            ];
            w.write_record(&record)
                .expect("writing to a Vec cannot fail");
        };
        if p.categories.is_empty() {
            row("", None);
        } else {
            for id in &p.categories {
                row(id, reg.category(id));
            }
        }
    }
    let bytes = w.into_inner().expect("flushing a Vec cannot fail");
    String::from_utf8(bytes).expect("the CSV is built from UTF-8 strings")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notice::tests::{fixture, registers};

    #[test]
    fn json_has_every_purpose_with_its_facts() {
        for (name, reg) in registers() {
            let v = ropa_json(&reg);
            let acts = v["processing_activities"].as_array().unwrap();
            assert_eq!(acts.len(), reg.purposes.len(), "{name}");
            for (p, a) in reg.purposes.iter().zip(acts) {
                assert_eq!(a["id"], p.id.as_str(), "{name}");
                for lang in &reg.notice.languages {
                    assert_eq!(a["name"][lang], p.label.get(lang), "{name}/{}", p.id);
                }
                assert_eq!(a["legal_basis"]["article"], p.legal_basis.article());
                assert_eq!(a["legal_basis"]["dpv"], p.legal_basis.dpv());
                let cats = a["categories"].as_array().unwrap();
                assert_eq!(cats.len(), p.categories.len());
                for (id, c) in p.categories.iter().zip(cats) {
                    let cat = reg.category(id).unwrap();
                    assert_eq!(c["id"], id.as_str());
                    assert_eq!(c["sensitivity"], cat.sensitivity.as_str());
                    assert_eq!(c["never_store"], cat.never_store);
                    assert!(c["retention_rule"].is_u64(), "{name}/{}/{id}", p.id);
                }
                let rets = a["retention"].as_array().unwrap();
                assert_eq!(rets.len(), p.retention.len());
                for (r, j) in p.retention.iter().zip(rets) {
                    assert_eq!(
                        j["keep"].as_str(),
                        r.keep.as_ref().map(|k| k.canonical()).as_deref()
                    );
                    assert_eq!(j["from"], r.from.as_str());
                }
                assert_eq!(
                    a["recipients"].as_array().unwrap().len(),
                    p.recipients.len()
                );
            }
            assert_eq!(v["controller"]["name"], reg.controller.name.as_str());
            assert_eq!(v["dpo"]["email"], reg.controller.dpo.email.as_str());
            assert_eq!(
                v["security_measures"].as_array().unwrap().len(),
                SECURITY_MEASURES.len()
            );
            assert_eq!(v["register_hash"], reg.content_hash().as_str());
        }
    }

    #[test]
    fn json_lists_transfers_outside_the_eea() {
        let reg = fixture();
        let v = ropa_json(&reg);
        let accounts = &v["processing_activities"][2];
        assert_eq!(accounts["id"], "accounts");
        let transfers = accounts["transfers_outside_eea"].as_array().unwrap();
        assert_eq!(transfers.len(), 1, "PayCo (US) only, not ChatCo (FR)");
        assert_eq!(transfers[0]["recipient"], "payco");
        assert_eq!(
            transfers[0]["safeguards"]["en"],
            "Standard contractual clauses"
        );
        assert_eq!(accounts["retention"][0]["legal_obligation"], true);
        let security = &v["processing_activities"][1];
        assert_eq!(
            security["categories"][0]["retention_rule"], 1,
            "ip → its own rule"
        );
        assert_eq!(
            security["categories"][1]["retention_rule"], 0,
            "email → default"
        );
        let custom = ropa_json_with(
            &reg,
            &[SecurityMeasure {
                id: "x",
                en: "X",
                fr: "X",
            }],
        );
        assert_eq!(custom["security_measures"][0]["id"], "x");
    }

    #[test]
    fn csv_has_one_row_per_purpose_and_category() {
        for (name, reg) in registers() {
            for lang in ["en", "fr"] {
                let text = ropa_csv(&reg, lang);
                let mut rd = csv::Reader::from_reader(text.as_bytes());
                let headers = rd.headers().unwrap().clone();
                assert_eq!(headers.len(), 20);
                let rows: Vec<csv::StringRecord> = rd.records().map(|r| r.unwrap()).collect();
                let expected: usize = reg.purposes.iter().map(|p| p.categories.len().max(1)).sum();
                assert_eq!(rows.len(), expected, "{name}/{lang}");
                let mut i = 0;
                for p in &reg.purposes {
                    for c in &p.categories {
                        let row = &rows[i];
                        assert_eq!(&row[0], p.id.as_str());
                        assert_eq!(&row[1], p.label.get(lang));
                        assert_eq!(&row[4], p.legal_basis.article());
                        assert_eq!(&row[8], c.as_str());
                        assert_eq!(&row[9], reg.category(c).unwrap().label.get(lang));
                        let rule = p.retention_for(c).unwrap();
                        if let Some(k) = &rule.keep {
                            assert!(
                                row[13].contains(&crate::notice::period_text(k, lang)),
                                "{name}/{lang}: {} {c}: {}",
                                p.id,
                                &row[13]
                            );
                        }
                        for r in &p.recipients {
                            assert!(row[15].contains(&reg.recipient(r).unwrap().name));
                        }
                        i += 1;
                    }
                }
            }
        }
    }

    #[test]
    fn csv_quotes_awkward_text() {
        let mut reg = fixture();
        reg.purposes[0]
            .label
            .0
            .insert("en".into(), "Stats, \"quoted\"\nand multi-line".into());
        let text = ropa_csv(&reg, "en");
        let mut rd = csv::Reader::from_reader(text.as_bytes());
        let first = rd.records().next().unwrap().unwrap();
        assert_eq!(&first[1], "Stats, \"quoted\"\nand multi-line");
        let fr = ropa_csv(&reg, "fr");
        assert!(fr.starts_with("Identifiant du traitement,"));
        let unknown = ropa_csv(&reg, "de");
        assert!(
            unknown.starts_with("Purpose id,"),
            "falls back to the default language"
        );
    }
}

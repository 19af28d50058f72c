//! Rights requests in the console, for the roles that handle them (DPO, admin): the list of open
//! requests soonest due first (overdue and due-soon marked), one request's detail with its
//! hash-chained history and execution steps, the DPO's actions (verify by hand or ask for more
//! information, extend with reasons within the first month, execute and retry, finish and reply,
//! reject, close), and the entry of a request received by e-mail or post.
//!
//! Server-rendered, no script. Every form is CSRF-checked ([`CsrfForm`]); every action is checked
//! again by the state machine, written to the request's history under `operator:<id>`, and
//! recorded in the security log and the audit chain (request id and action only, never personal
//! data). Identifiers entered for a paper request travel in the POST body and are never echoed.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use jiff::Timestamp;
use serde::Deserialize;
use tutela_crypto::IdentifierKind;
use tutela_domain::operator::Permission;
use tutela_domain::rights::{Event, RejectionGround, RequestState, RightKind, Urgency};
use tutela_rights::{
    AfterDeathDirective, AfterDeathInstructions, Channel, RequestDetails, RightsError,
    RightsService, Submission,
};

use super::i18n::Text;
use super::web::{Chrome, CsrfForm, Flash, Result, SecretField, Signed, fmt_time, record, render};
use crate::AppState;

macro_rules! words {
    ($($key:ident: $en:literal, $fr:literal;)*) => {
        /// The wording of the rights pages, English and French side by side.
        pub(crate) struct Words {
            $(pub $key: &'static str,)*
        }
        static EN: Words = Words { $($key: $en,)* };
        static FR: Words = Words { $($key: $fr,)* };
    };
}

words! {
    nav: "Rights requests", "Demandes de droits";
    title: "Rights requests", "Demandes d’exercice des droits";
    intro: "Open requests, soonest due first. The deadline is one month from receipt; it can be extended by up to two months, with reasons told to the requester within the first month.", "Demandes en cours, la plus proche de son échéance d’abord. Le délai est d’un mois à compter de la réception ; il peut être prolongé de deux mois au plus, avec des motifs communiqués au demandeur dans le premier mois.";
    none_open: "No open request.", "Aucune demande en cours.";
    col_ref: "Reference", "Référence";
    col_kind: "Request", "Demande";
    col_state: "State", "État";
    col_channel: "Channel", "Canal";
    col_received: "Received", "Reçue le";
    col_due: "Due", "Échéance";
    overdue: "overdue", "en retard";
    due_soon: "due soon", "échéance proche";
    on_time: "on time", "dans les délais";
    record_title: "Record a request received by e-mail or post", "Enregistrer une demande reçue par courriel ou courrier";
    record_intro: "The identifier is sealed at once and never shown again. Do not keep a copy of an identity document: verify, then destroy it.", "L’identifiant est scellé aussitôt et n’est plus jamais affiché. Ne conservez pas de copie de pièce d’identité : vérifiez, puis détruisez-la.";
    field_kind: "Right", "Droit";
    field_channel: "Received by", "Reçue par";
    channel_email: "e-mail", "courriel";
    channel_post: "post", "courrier";
    field_received_on: "Received on (empty: today)", "Reçue le (vide : aujourd’hui)";
    field_id_kind: "Identifier kind", "Type d’identifiant";
    field_identifier: "Identifier", "Identifiant";
    field_contact: "E-mail address to answer (optional)", "Adresse électronique de réponse (facultatif)";
    field_visitor: "Analytics visitor id (optional)", "Identifiant de visiteur des statistiques (facultatif)";
    field_consent: "Consent id (optional)", "Identifiant de consentement (facultatif)";
    field_text: "What the requester wrote", "Ce que le demandeur a écrit";
    field_directive: "After-death directive", "Directive pour après le décès";
    field_executor_name: "Executor (name)", "Personne chargée de l’exécution (nom)";
    field_executor_contact: "Executor (contact)", "Personne chargée de l’exécution (contact)";
    record_button: "Record the request", "Enregistrer la demande";
    recorded: "Request recorded.", "Demande enregistrée.";
    merged: "The same person already had an open request of this kind: this one was added to it.", "La même personne avait déjà une demande de ce type en cours : celle-ci y a été ajoutée.";
    detail_title: "Request", "Demande";
    back: "All requests", "Toutes les demandes";
    facts_verified: "Identity verified", "Identité vérifiée";
    facts_method: "how", "comment";
    facts_extended: "Extended until", "Prolongée jusqu’au";
    facts_reasons: "Reasons", "Motifs";
    facts_replied: "Replied", "Réponse envoyée";
    facts_purge: "Record deleted on", "Dossier supprimé le";
    facts_repeats: "Repeated submissions merged", "Envois répétés fusionnés";
    facts_identifiers: "Identifiers given (kinds only)", "Identifiants fournis (types seulement)";
    facts_rejection: "Rejected", "Refusée";
    messages_title: "What the requester wrote", "Ce que le demandeur a écrit";
    after_death_title: "Instructions for after death", "Directives pour après le décès";
    directive_erase: "erase the data", "effacer les données";
    directive_communicate: "give the executor a copy, then erase", "remettre une copie à la personne désignée, puis effacer";
    directive_keep: "keep the data", "conserver les données";
    executor: "Executor", "Personne désignée";
    actions_title: "Actions", "Actions";
    action_verify: "Identity verified by hand", "Identité vérifiée manuellement";
    action_ask: "Ask for more information", "Demander des informations complémentaires";
    action_info_received: "Information received", "Informations reçues";
    action_send_code: "E-mail a verification code", "Envoyer un code de vérification";
    action_start: "Execute across every source", "Exécuter sur toutes les sources";
    action_run: "Run due steps now", "Lancer maintenant les étapes dues";
    action_retry: "Retry failed steps", "Relancer les étapes en échec";
    action_finish: "Build the answer package and reply", "Préparer le paquet de réponse et répondre";
    action_reply: "Mark as replied (answer sent another way)", "Marquer comme répondue (réponse envoyée autrement)";
    action_close: "Close", "Clore";
    extend_title: "Extend the deadline", "Prolonger le délai";
    extend_hint: "Up to two more months, only within the first month, with reasons: the requester is told at once.", "Deux mois de plus au maximum, seulement pendant le premier mois, avec des motifs : le demandeur en est informé aussitôt.";
    field_until: "New due date", "Nouvelle échéance";
    field_reasons: "Reasons (told to the requester)", "Motifs (communiqués au demandeur)";
    action_extend: "Extend", "Prolonger";
    reject_title: "Reject", "Refuser";
    field_ground: "Ground", "Motif légal";
    ground_unfounded: "manifestly unfounded (art. 12(5))", "manifestement infondée (art. 12(5))";
    ground_excessive: "manifestly excessive (art. 12(5))", "manifestement excessive (art. 12(5))";
    ground_identity: "identity not established (art. 12(6))", "identité non établie (art. 12(6))";
    action_reject: "Reject", "Refuser";
    steps_title: "Execution steps", "Étapes d’exécution";
    no_steps: "No step planned yet.", "Aucune étape planifiée.";
    col_source: "Source", "Source";
    col_action: "Action", "Action";
    col_status: "Status", "Statut";
    col_attempts: "Attempts", "Tentatives";
    col_outcome: "Outcome", "Résultat";
    history_title: "History", "Historique";
    col_at: "When", "Quand";
    col_event: "Event", "Événement";
    col_actor: "By", "Par";
    chain_ok: "History chain intact: {n} entries, head {head}.", "Chaîne de l’historique intacte : {n} entrées, tête {head}.";
    chain_broken: "History chain BROKEN at entry {seq}: the history was changed after it was written.", "Chaîne de l’historique ROMPUE à l’entrée {seq} : l’historique a été modifié après son écriture.";
    done: "Done.", "C’est fait.";
    package_ready: "The answer package is ready; the requester was sent the download link (or it must go by post).", "Le paquet de réponse est prêt ; le lien de téléchargement a été envoyé au demandeur (ou doit partir par courrier).";
    steps_ran: "Steps run: {done} done, {retried} to retry, {failed} failed.", "Étapes lancées : {done} terminées, {retried} à relancer, {failed} en échec.";
    no_engine: "The rights engine is not configured on this server.", "Le moteur des droits n’est pas configuré sur ce serveur.";
    not_found: "No such request.", "Demande introuvable.";
    bad_date: "Give a date as YYYY-MM-DD, not in the future and at most one month ago.", "Indiquez une date AAAA-MM-JJ, pas dans le futur et d’un mois au plus.";
    unknown_action: "Unknown action.", "Action inconnue.";
}

fn words(t: &Text) -> &'static Words {
    if t.code == "fr" { &FR } else { &EN }
}

/// The navigation label of the rights pages.
pub(crate) fn nav_label(t: &Text) -> &'static str {
    words(t).nav
}

fn lang(t: &Text) -> &'static str {
    if t.code == "fr" { "fr" } else { "en" }
}

struct Row {
    id: String,
    kind: &'static str,
    state: &'static str,
    channel: String,
    received: String,
    due: String,
    urgency_class: &'static str,
    urgency: &'static str,
}

#[derive(Template)]
#[template(path = "console/rights.html")]
struct ListPage {
    chrome: Chrome,
    w: &'static Words,
    rows: Vec<Row>,
    kinds: Vec<(&'static str, &'static str)>,
    id_kinds: Vec<&'static str>,
    directives: Vec<(&'static str, &'static str)>,
}

struct StepRow {
    source: String,
    action: String,
    status: String,
    attempts: i64,
    outcome: String,
}

struct HistoryRow {
    at: String,
    event: String,
    state: String,
    actor: String,
}

struct AfterDeathView {
    directive: &'static str,
    particular: String,
    executor: String,
}

#[derive(Template)]
#[template(path = "console/rights_request.html")]
struct DetailPage {
    chrome: Chrome,
    w: &'static Words,
    id: String,
    kind: &'static str,
    article: &'static str,
    state: &'static str,
    channel: String,
    received: String,
    due: String,
    urgency_class: &'static str,
    urgency: &'static str,
    verified: Option<String>,
    verification: String,
    extended: Option<String>,
    extension_reasons: String,
    replied: Option<String>,
    purge: Option<String>,
    repeats: i64,
    rejection: Option<String>,
    identifier_kinds: Vec<&'static str>,
    messages: Vec<(String, String)>,
    after_death: Option<AfterDeathView>,
    steps: Vec<StepRow>,
    history: Vec<HistoryRow>,
    chain: String,
    chain_ok: bool,
    open: bool,
    executing: bool,
}

fn urgency(u: Option<Urgency>, w: &'static Words) -> (&'static str, &'static str) {
    match u {
        Some(Urgency::Overdue) => ("badge badge-warn", w.overdue),
        Some(Urgency::DueSoon) => ("badge badge-warn", w.due_soon),
        Some(Urgency::OnTime) => ("badge", w.on_time),
        None => ("", ""),
    }
}

fn directive_label(d: AfterDeathDirective, w: &'static Words) -> &'static str {
    match d {
        AfterDeathDirective::Erase => w.directive_erase,
        AfterDeathDirective::CommunicateThenErase => w.directive_communicate,
        AfterDeathDirective::Keep => w.directive_keep,
    }
}

/// The rights service, or a page saying it is not configured.
fn service<'a>(state: &'a AppState, signed: &Signed) -> Result<&'a RightsService> {
    state.rights.as_ref().ok_or_else(|| {
        signed.internal(
            "rights console",
            "the rights engine is not configured on this server",
        )
    })
}

fn valid_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

fn list_page(state: &AppState, signed: &Signed, rows: Vec<Row>, flash: Option<Flash>) -> Response {
    let w = words(signed.t);
    let l = lang(signed.t);
    let mut chrome = signed.chrome(state, w.title, "/console/rights");
    chrome.flash = flash;
    render(&ListPage {
        chrome,
        w,
        rows,
        kinds: RightKind::ALL
            .iter()
            .map(|k| (k.as_str(), k.label(l)))
            .collect(),
        id_kinds: IdentifierKind::ALL.iter().map(|k| k.as_str()).collect(),
        directives: AfterDeathDirective::ALL
            .iter()
            .map(|d| (d.as_str(), directive_label(*d, w)))
            .collect(),
    })
}

async fn open_rows(svc: &RightsService, signed: &Signed, w: &'static Words) -> Result<Vec<Row>> {
    let now = Timestamp::now();
    let l = lang(signed.t);
    let list = svc
        .due(now, i64::MAX / 4, 500)
        .await
        .map_err(|e| signed.internal("rights requests", e))?;
    Ok(list
        .into_iter()
        .map(|v| {
            let (class, label) = urgency(v.urgency, w);
            Row {
                kind: v.kind.label(l),
                state: v.state.as_str(),
                channel: v.channel.clone(),
                received: fmt_time(Some(v.received_at.as_second())),
                due: fmt_time(Some(v.due_at.as_second())),
                urgency_class: class,
                urgency: label,
                id: v.id,
            }
        })
        .collect())
}

/// `GET /console/rights`: open requests and the form for a paper or e-mail request.
pub(crate) async fn list(State(state): State<AppState>, signed: Signed) -> Result<Response> {
    signed.require(Permission::HandleRightsRequests)?;
    let svc = service(&state, &signed)?;
    let w = words(signed.t);
    let rows = open_rows(svc, &signed, w).await?;
    Ok(list_page(&state, &signed, rows, None))
}

#[derive(Deserialize)]
pub(crate) struct RecordForm {
    #[serde(default)]
    kind: String,
    #[serde(default)]
    channel: String,
    #[serde(default)]
    received_on: String,
    #[serde(default)]
    identifier_kind: String,
    #[serde(default)]
    identifier: SecretField,
    #[serde(default)]
    contact_email: SecretField,
    #[serde(default)]
    visitor_id: SecretField,
    #[serde(default)]
    consent_id: SecretField,
    #[serde(default)]
    text: SecretField,
    #[serde(default)]
    directive: String,
    #[serde(default)]
    executor_name: SecretField,
    #[serde(default)]
    executor_contact: SecretField,
}

/// The receipt time of a paper request: today (now), or noon UTC of an earlier day within a
/// month (a letter read late still counts from its receipt).
fn received_at(s: &str, now: Timestamp) -> Option<Timestamp> {
    let s = s.trim();
    if s.is_empty() {
        return Some(now);
    }
    let day: jiff::civil::Date = s.parse().ok()?;
    let today = now.to_zoned_datetime(jiff::tz::TimeZone::UTC).date();
    if day == today {
        return Some(now);
    }
    if day > today || day < today.checked_sub(jiff::Span::new().months(1)).ok()? {
        return None;
    }
    day.at(12, 0, 0, 0)
        .to_zoned_datetime(jiff::tz::TimeZone::UTC)
        .ok()
        .map(|z| z.timestamp())
}

/// `POST /console/rights`: records a request received by e-mail or post.
pub(crate) async fn record_request(
    State(state): State<AppState>,
    signed: Signed,
    CsrfForm(form): CsrfForm<RecordForm>,
) -> Result<Response> {
    signed.require(Permission::HandleRightsRequests)?;
    let svc = service(&state, &signed)?;
    let w = words(signed.t);
    let refuse = async |text: String| -> Result<Response> {
        let rows = open_rows(svc, &signed, w).await?;
        let mut res = list_page(&state, &signed, rows, Flash::error(text));
        *res.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
        Ok(res)
    };
    let Some(kind) = RightKind::parse(&form.kind) else {
        return refuse(w.unknown_action.to_string()).await;
    };
    let channel = match Channel::parse(&form.channel) {
        Some(c @ (Channel::Email | Channel::Post)) => c,
        _ => return refuse(w.unknown_action.to_string()).await,
    };
    let Ok(identifier_kind) = form.identifier_kind.parse::<IdentifierKind>() else {
        return refuse(signed.t.bad_identifier.to_string()).await;
    };
    let now = Timestamp::now();
    let Some(at) = received_at(&form.received_on, now) else {
        return refuse(w.bad_date.to_string()).await;
    };
    let filled = |f: &SecretField| {
        let v = f.as_str().trim();
        (!v.is_empty()).then(|| v.to_string())
    };
    let mut extra = Vec::new();
    if let Some(v) = filled(&form.visitor_id) {
        extra.push((IdentifierKind::VisitorId, v));
    }
    if let Some(v) = filled(&form.consent_id) {
        extra.push((IdentifierKind::ConsentId, v));
    }
    let after_death = (kind == RightKind::AfterDeathInstructions).then(|| AfterDeathInstructions {
        directive: AfterDeathDirective::parse(&form.directive)
            .unwrap_or(AfterDeathDirective::Erase),
        particular: form.text.as_str().trim().to_string(),
        executor_name: filled(&form.executor_name).unwrap_or_default(),
        executor_contact: filled(&form.executor_contact).unwrap_or_default(),
    });
    let sub = Submission {
        kind,
        channel,
        lang: state.register.register.notice.default_language.clone(),
        details: RequestDetails {
            extra_identifiers: extra,
            after_death,
        },
        identifier_kind,
        identifier: form.identifier.as_str().to_string(),
        contact_email: filled(&form.contact_email),
        text: form.text.as_str().to_string(),
    };
    let actor = format!("operator:{}", signed.operator.id);
    let receipt = match svc.file_received(sub, &actor, at, now).await {
        Ok(r) => r,
        Err(RightsError::Invalid(m)) => return refuse(m).await,
        Err(e) => return Err(signed.internal("record rights request", e)),
    };
    record(
        &state,
        Some(&signed.operator.id),
        "rights_request_recorded",
        Some(&receipt.request.id),
    )
    .await;
    let flag = if receipt.merged { "merged" } else { "recorded" };
    Ok(Redirect::to(&format!("/console/rights/{}?ok={flag}", receipt.request.id)).into_response())
}

#[derive(Deserialize)]
pub(crate) struct OkQuery {
    ok: Option<String>,
}

async fn detail_page(
    state: &AppState,
    signed: &Signed,
    id: &str,
    flash: Option<Flash>,
) -> Result<Response> {
    let svc = service(state, signed)?;
    let w = words(signed.t);
    let l = lang(signed.t);
    let now = Timestamp::now();
    let internal = |e: RightsError| signed.internal("rights request", e);
    let Some(v) = svc.status(id, now).await.map_err(internal)? else {
        let mut res = list_page(
            state,
            signed,
            open_rows(svc, signed, w).await?,
            Flash::error(w.not_found),
        );
        *res.status_mut() = StatusCode::NOT_FOUND;
        return Ok(res);
    };
    let details = svc.details(id).await.map_err(internal)?;
    let kinds = svc.identifier_kinds(id).await.map_err(internal)?;
    let messages = svc
        .messages(id)
        .await
        .map_err(internal)?
        .into_iter()
        .filter(|(_, text)| !text.is_empty())
        .map(|(at, text)| (fmt_time(Some(at.as_second())), text))
        .collect();
    let steps = svc
        .steps(id)
        .await
        .map_err(internal)?
        .into_iter()
        .map(|s| StepRow {
            source: s.source,
            action: s.action,
            status: s.status,
            attempts: s.attempts,
            outcome: s.outcome.or(s.last_error).unwrap_or_default(),
        })
        .collect();
    let history = svc
        .history(id)
        .await
        .map_err(internal)?
        .into_iter()
        .map(|h| HistoryRow {
            at: fmt_time(Some(h.at)),
            event: h.event,
            state: h.state,
            actor: h.actor,
        })
        .collect();
    let check = svc.verify_history(id).await.map_err(internal)?;
    let chain = match check.broken_at {
        None => super::i18n::fill(
            w.chain_ok,
            &[
                ("n", &check.entries.to_string()),
                ("head", check.head.as_deref().map_or("-", |h| &h[..16])),
            ],
        ),
        Some(seq) => super::i18n::fill(w.chain_broken, &[("seq", &seq.to_string())]),
    };
    let (class, label) = urgency(v.urgency, w);
    let mut chrome = signed.chrome(
        state,
        &format!("{} {}", w.detail_title, v.id),
        "/console/rights",
    );
    chrome.flash = flash;
    let page = DetailPage {
        chrome,
        w,
        kind: v.kind.label(l),
        article: v.kind.article(),
        state: v.state.as_str(),
        channel: v.channel.clone(),
        received: fmt_time(Some(v.received_at.as_second())),
        due: fmt_time(Some(v.due_at.as_second())),
        urgency_class: class,
        urgency: label,
        verified: v.verified_at.map(|t| fmt_time(Some(t.as_second()))),
        verification: v.verification.clone().unwrap_or_default(),
        extended: v.extended_until.map(|t| fmt_time(Some(t.as_second()))),
        extension_reasons: v.extension_reasons.clone().unwrap_or_default(),
        replied: v.replied_at.map(|t| fmt_time(Some(t.as_second()))),
        purge: v.purge_after.map(|t| fmt_time(Some(t.as_second()))),
        repeats: v.repeats,
        rejection: v.rejection_ground.map(|g| {
            format!(
                "{} — {}",
                g.as_str(),
                v.rejection_reasons.clone().unwrap_or_default()
            )
        }),
        identifier_kinds: kinds.into_iter().map(|k| k.as_str()).collect(),
        messages,
        after_death: details.after_death.map(|a| AfterDeathView {
            directive: directive_label(a.directive, w),
            particular: a.particular,
            executor: if a.executor_name.is_empty() {
                String::new()
            } else {
                format!("{} — {}", a.executor_name, a.executor_contact)
            },
        }),
        steps,
        history,
        chain,
        chain_ok: check.intact(),
        open: v.state.is_open(),
        executing: matches!(v.state, RequestState::InProgress | RequestState::Extended),
        id: v.id,
    };
    Ok(render(&page))
}

/// `GET /console/rights/{id}`.
pub(crate) async fn detail(
    State(state): State<AppState>,
    signed: Signed,
    Path(id): Path<String>,
    Query(q): Query<OkQuery>,
) -> Result<Response> {
    signed.require(Permission::HandleRightsRequests)?;
    let w = words(signed.t);
    if !valid_id(&id) {
        let svc = service(&state, &signed)?;
        let mut res = list_page(
            &state,
            &signed,
            open_rows(svc, &signed, w).await?,
            Flash::error(w.not_found),
        );
        *res.status_mut() = StatusCode::NOT_FOUND;
        return Ok(res);
    }
    let flash = match q.ok.as_deref() {
        Some("recorded") => Flash::ok(w.recorded),
        Some("merged") => Flash::ok(w.merged),
        Some("package") => Flash::ok(w.package_ready),
        Some(_) => Flash::ok(w.done),
        None => None,
    };
    detail_page(&state, &signed, &id, flash).await
}

#[derive(Deserialize)]
pub(crate) struct ActionForm {
    #[serde(default)]
    action: String,
    #[serde(default)]
    until: String,
    #[serde(default)]
    reasons: String,
    #[serde(default)]
    ground: String,
}

/// The end of the day `s` (YYYY-MM-DD) in UTC.
fn end_of_day(s: &str) -> Option<Timestamp> {
    let day: jiff::civil::Date = s.trim().parse().ok()?;
    day.at(23, 59, 59, 0)
        .to_zoned_datetime(jiff::tz::TimeZone::UTC)
        .ok()
        .map(|z| z.timestamp())
}

/// `POST /console/rights/{id}`: one of the DPO's actions on a request.
pub(crate) async fn act(
    State(state): State<AppState>,
    signed: Signed,
    Path(id): Path<String>,
    CsrfForm(form): CsrfForm<ActionForm>,
) -> Result<Response> {
    signed.require(Permission::HandleRightsRequests)?;
    let svc = service(&state, &signed)?;
    let w = words(signed.t);
    if !valid_id(&id)
        || svc
            .status(&id, Timestamp::now())
            .await
            .ok()
            .flatten()
            .is_none()
    {
        let mut res = list_page(
            &state,
            &signed,
            open_rows(svc, &signed, w).await?,
            Flash::error(w.not_found),
        );
        *res.status_mut() = StatusCode::NOT_FOUND;
        return Ok(res);
    }
    let now = Timestamp::now();
    let actor = format!("operator:{}", signed.operator.id);
    let exec = state.executor.as_ref();
    let no_engine = || RightsError::Invalid(w.no_engine.to_string());
    let mut done = "done";
    let outcome: std::result::Result<Option<String>, RightsError> = match form.action.as_str() {
        "verify" => svc
            .transition(
                &id,
                &Event::Verified,
                Some(&format!("dpo:{}", signed.operator.id)),
                &actor,
                now,
            )
            .await
            .map(|_| None),
        "ask_more_information" => svc
            .transition(&id, &Event::AskMoreInformation, None, &actor, now)
            .await
            .map(|_| None),
        "information_received" => svc
            .transition(&id, &Event::InformationReceived, None, &actor, now)
            .await
            .map(|_| None),
        "send_challenge" => svc.send_challenge(&id, now).await.map(|_| None),
        "start" => match exec {
            Some(e) => e.start(&id, &actor, now).await.map(|_| None),
            None => Err(no_engine()),
        },
        "run" => match exec {
            Some(e) => e.run_due(now).await.map(|r| {
                Some(super::i18n::fill(
                    w.steps_ran,
                    &[
                        ("done", &r.done.to_string()),
                        ("retried", &r.retried.to_string()),
                        ("failed", &r.failed.to_string()),
                    ],
                ))
            }),
            None => Err(no_engine()),
        },
        "retry" => match exec {
            Some(e) => match svc.retry_failed_steps(&id, &actor, now).await {
                Ok(_) => e.run_due(now).await.map(|_| None),
                Err(err) => Err(err),
            },
            None => Err(no_engine()),
        },
        "finish" => match exec {
            Some(e) => {
                done = "package";
                e.finish(&id, &actor, now).await.map(|_| None)
            }
            None => Err(no_engine()),
        },
        "reply" => svc
            .transition(&id, &Event::Reply, None, &actor, now)
            .await
            .map(|_| None),
        "close" => svc
            .transition(&id, &Event::Close, None, &actor, now)
            .await
            .map(|_| None),
        "extend" => match end_of_day(&form.until) {
            Some(until) => svc
                .extend(&id, until, &form.reasons, &actor, now)
                .await
                .map(|_| None),
            None => Err(RightsError::Invalid(w.bad_date.to_string())),
        },
        "reject" => match RejectionGround::parse(&form.ground) {
            Some(ground) => svc
                .transition(
                    &id,
                    &Event::Reject {
                        ground,
                        reasons: form.reasons.clone(),
                    },
                    None,
                    &actor,
                    now,
                )
                .await
                .map(|_| None),
            None => Err(RightsError::Invalid(w.unknown_action.to_string())),
        },
        _ => Err(RightsError::Invalid(w.unknown_action.to_string())),
    };
    match outcome {
        Ok(message) => {
            let action = format!("rights_{}", form.action);
            record(&state, Some(&signed.operator.id), &action, Some(&id)).await;
            match message {
                Some(m) => detail_page(&state, &signed, &id, Flash::ok(m)).await,
                None => {
                    Ok(Redirect::to(&format!("/console/rights/{id}?ok={done}")).into_response())
                }
            }
        }
        Err(
            e @ (RightsError::Invalid(_)
            | RightsError::Transition(_)
            | RightsError::Conflict
            | RightsError::Verification(_)),
        ) => {
            let mut res = detail_page(&state, &signed, &id, Flash::error(e.to_string())).await?;
            *res.status_mut() = StatusCode::CONFLICT;
            Ok(res)
        }
        Err(e) => Err(signed.internal("rights action", e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paper_receipt_dates_are_bounded() {
        let now: Timestamp = "2026-03-31T15:00:00Z".parse().unwrap();
        assert_eq!(received_at("", now), Some(now));
        assert_eq!(received_at("2026-03-31", now), Some(now), "today: now");
        assert_eq!(
            received_at("2026-03-02", now),
            Some("2026-03-02T12:00:00Z".parse().unwrap())
        );
        // One month back from 31 March is 28 February (month ends clamp).
        assert!(received_at("2026-02-28", now).is_some());
        assert_eq!(received_at("2026-02-27", now), None, "older than a month");
        assert_eq!(received_at("2026-04-01", now), None, "in the future");
        assert_eq!(received_at("31/03/2026", now), None);
        assert_eq!(
            end_of_day("2026-05-01"),
            Some("2026-05-01T23:59:59Z".parse().unwrap())
        );
        assert_eq!(end_of_day("soon"), None);
    }
}

//! The rights portal (`/rights`, English and French, no JavaScript) and the rights API
//! (`/api/v1/rights/…`).
//!
//! The portal has no session: its forms carry a signed, expiring token (CSRF protection), and
//! cross-site posts are refused by the `Origin` check when a browser sends one. Every field is
//! bounded; the pages never echo an identifier back except into the form the person is filling.

use askama::Template;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use jiff::Timestamp;
use serde::Deserialize;
use tutela_crypto::IdentifierKind;
use tutela_domain::notice;
use tutela_domain::rights::{Event, RejectionGround, RequestState, RightKind};
use tutela_domain::scope::Scope;
use tutela_rights::{
    AfterDeathDirective, AfterDeathInstructions, Channel, RequestDetails, RequestView, RightsError,
    RightsService, Submission, VerificationRoute,
};

use crate::AppState;
use crate::auth::Caller;
use crate::error::{ApiError, ErrorCode};

pub(crate) const RIGHTS_CSS: &str = include_str!("../assets/rights.css");

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/rights", get(portal_form).post(portal_submit))
        .route("/assets/rights.css", get(rights_css))
        .route("/rights/requests/{id}", get(portal_status))
        .route("/rights/requests/{id}/verify", post(portal_verify_code))
        .route("/rights/requests/{id}/resend", post(portal_resend))
        .route(
            "/rights/verify/{token}",
            get(portal_link_page).post(portal_link_confirm),
        )
        .route("/api/v1/rights/requests", post(api_file).get(api_due))
        .route("/api/v1/rights/requests/{id}", get(api_get))
        .route("/api/v1/rights/requests/{id}/events", post(api_event))
        .route("/api/v1/rights/steps/run", post(api_run_steps))
        .route("/rights/packages/{token}", get(package_page))
        .route("/rights/packages/{token}/code", post(package_code))
        .route("/rights/packages/{token}/download", post(package_download))
}

fn service(state: &AppState) -> Result<&RightsService, ApiError> {
    state.rights.as_ref().ok_or_else(|| {
        ApiError::new(
            ErrorCode::Unavailable,
            "the rights engine is not configured on this server",
        )
    })
}

impl From<RightsError> for ApiError {
    fn from(e: RightsError) -> Self {
        match e {
            RightsError::Invalid(m) => ApiError::new(ErrorCode::BadRequest, m),
            RightsError::NotFound => ApiError::new(ErrorCode::NotFound, "no such request"),
            RightsError::Transition(t) => ApiError::new(ErrorCode::Conflict, t.to_string()),
            RightsError::Conflict => ApiError::new(ErrorCode::Conflict, e.to_string()),
            RightsError::Verification(m) => ApiError::new(ErrorCode::VerificationFailed, m),
            RightsError::Mail(err) => {
                tracing::error!(error = %err, "mail failed");
                ApiError::new(
                    ErrorCode::Unavailable,
                    "could not send the e-mail; try again later",
                )
            }
            other => ApiError::internal("rights", other),
        }
    }
}

// ---- portal ------------------------------------------------------------------------------

/// Portal wording. Facts (controller, addresses, identity proof) come from the register.
struct PortalText {
    language_nav: &'static str,
    title: &'static str,
    intro: &'static str,
    choose_right: &'static str,
    email_label: &'static str,
    email_hint: &'static str,
    text_label: &'static str,
    text_hint: &'static str,
    submit: &'static str,
    other_ways: &'static str,
    by_email: &'static str,
    by_post: &'static str,
    notice_link: &'static str,
    received_title: &'static str,
    status_title: &'static str,
    reference: &'static str,
    right: &'static str,
    state: &'static str,
    received: &'static str,
    due: &'static str,
    extended: &'static str,
    confirm_title: &'static str,
    confirm_text: &'static str,
    code_label: &'static str,
    confirm_button: &'static str,
    resend_button: &'static str,
    next_steps: &'static str,
    bookmark: &'static str,
    link_text: &'static str,
    sent: &'static str,
    recently_sent: &'static str,
    merged: &'static str,
    verified: &'static str,
    waiting_dpo: &'static str,
    expired_form: &'static str,
    cross_site: &'static str,
    choose_a_right: &'static str,
    package_title: &'static str,
    package_text: &'static str,
    send_code_button: &'static str,
    download_button: &'static str,
    package_expired: &'static str,
    more_ids: &'static str,
    visitor_label: &'static str,
    visitor_hint: &'static str,
    consent_label: &'static str,
    consent_hint: &'static str,
    after_death_title: &'static str,
    after_death_hint: &'static str,
    directive_label: &'static str,
    directives: [&'static str; 3],
    executor_name_label: &'static str,
    executor_contact_label: &'static str,
}

const EN: PortalText = PortalText {
    language_nav: "Language",
    title: "Exercise your rights",
    intro: "Choose what you want, give the e-mail address we know you by, and add anything that helps us. We will send you a code to confirm it is you; nothing is done before that. We answer within one month of receiving your request.",
    choose_right: "What do you want?",
    email_label: "Your e-mail address",
    email_hint: "We use it only to confirm your identity, find your data and answer you.",
    text_label: "Details (optional)",
    text_hint: "For example what to correct, or which processing you object to. Do not send a copy of an identity document.",
    submit: "Send my request",
    other_ways: "Other ways to reach us",
    by_email: "By e-mail:",
    by_post: "By post:",
    notice_link: "Privacy notice",
    received_title: "Your request was received",
    status_title: "Your request",
    reference: "Reference",
    right: "Request",
    state: "Status",
    received: "Received on",
    due: "Answer due by",
    extended: "extended to",
    confirm_title: "Confirm it is you",
    confirm_text: "Enter the 6-digit code we e-mailed you, or open the link in that e-mail.",
    code_label: "Code",
    confirm_button: "Confirm",
    resend_button: "Send me a new code",
    next_steps: "Once your identity is confirmed, we handle your request across all our systems and write to you by the due date at the latest. If we need more time (up to two more months for complex requests) we will tell you why before the first month ends.",
    bookmark: "Link to this page (keep it to follow your request)",
    link_text: "Confirm that you made this request.",
    sent: "We sent a code to your e-mail address.",
    recently_sent: "A code was sent a few minutes ago; please check your mailbox (and spam folder).",
    merged: "You already had a request of this kind under way: we added this message to it.",
    verified: "Thank you: your identity is confirmed. We are handling your request.",
    waiting_dpo: "Our data-protection officer will contact you to confirm your identity.",
    expired_form: "This form has expired; please send it again.",
    cross_site: "This form must be sent from our own site.",
    choose_a_right: "Choose what you want to do.",
    package_title: "Our answer to your request",
    package_text: "For your security we e-mail you a code before the download. This link works until",
    send_code_button: "E-mail me a code",
    download_button: "Download (zip)",
    package_expired: "This link has expired. Write to us and we will send the answer again.",
    more_ids: "Other identifiers (optional)",
    visitor_label: "Your audience-statistics visitor identifier",
    visitor_hint: "Shown on our statistics opt-out page (/optout): 16 characters. With it we can find, send or erase your statistics data, and stop counting your visits if you object.",
    consent_label: "Your cookie-consent identifier",
    consent_hint: "Shown with your cookie choices: with it we can send you the record of your choices, or withdraw your consent.",
    after_death_title: "Instructions for after your death",
    after_death_hint: "Only for the request \"instructions for after my death\": what we should do with your data, and who carries it out.",
    directive_label: "What should we do with your data?",
    directives: [
        "Erase it",
        "Give a copy to the person below, then erase it",
        "Keep it as it is (the person below may ask later)",
    ],
    executor_name_label: "Person who carries out these instructions (name)",
    executor_contact_label: "How to reach them (e-mail or postal address)",
};

const FR: PortalText = PortalText {
    language_nav: "Langue",
    title: "Exercer vos droits",
    intro: "Choisissez votre demande, indiquez l'adresse électronique sous laquelle nous vous connaissons et ajoutez ce qui peut nous aider. Nous vous enverrons un code pour confirmer que c'est bien vous ; rien n'est fait avant. Nous répondons dans un délai d'un mois à compter de la réception de votre demande.",
    choose_right: "Que souhaitez-vous ?",
    email_label: "Votre adresse électronique",
    email_hint: "Elle sert uniquement à confirmer votre identité, retrouver vos données et vous répondre.",
    text_label: "Précisions (facultatif)",
    text_hint: "Par exemple ce qu'il faut corriger, ou le traitement auquel vous vous opposez. N'envoyez pas de copie de pièce d'identité.",
    submit: "Envoyer ma demande",
    other_ways: "Autres moyens de nous écrire",
    by_email: "Par courriel :",
    by_post: "Par courrier :",
    notice_link: "Politique de confidentialité",
    received_title: "Votre demande a bien été reçue",
    status_title: "Votre demande",
    reference: "Référence",
    right: "Demande",
    state: "État",
    received: "Reçue le",
    due: "Réponse au plus tard le",
    extended: "prolongé jusqu'au",
    confirm_title: "Confirmez que c'est vous",
    confirm_text: "Saisissez le code à 6 chiffres reçu par courriel, ou ouvrez le lien de ce message.",
    code_label: "Code",
    confirm_button: "Confirmer",
    resend_button: "M'envoyer un nouveau code",
    next_steps: "Une fois votre identité confirmée, nous traitons votre demande dans tous nos systèmes et vous répondons au plus tard à la date indiquée. S'il nous faut plus de temps (jusqu'à deux mois de plus pour une demande complexe), nous vous dirons pourquoi avant la fin du premier mois.",
    bookmark: "Lien vers cette page (conservez-le pour suivre votre demande)",
    link_text: "Confirmez que vous êtes à l'origine de cette demande.",
    sent: "Nous avons envoyé un code à votre adresse électronique.",
    recently_sent: "Un code vous a été envoyé il y a quelques minutes ; vérifiez votre messagerie (et les indésirables).",
    merged: "Vous aviez déjà une demande de ce type en cours : nous y avons ajouté ce message.",
    verified: "Merci : votre identité est confirmée. Nous traitons votre demande.",
    waiting_dpo: "Notre délégué à la protection des données vous contactera pour confirmer votre identité.",
    expired_form: "Ce formulaire a expiré ; merci de l'envoyer à nouveau.",
    cross_site: "Ce formulaire doit être envoyé depuis notre propre site.",
    choose_a_right: "Choisissez ce que vous souhaitez faire.",
    package_title: "Notre réponse à votre demande",
    package_text: "Pour votre sécurité, nous vous envoyons un code par courriel avant le téléchargement. Ce lien est valable jusqu'au",
    send_code_button: "M'envoyer un code",
    download_button: "Télécharger (zip)",
    package_expired: "Ce lien a expiré. Écrivez-nous et nous vous enverrons à nouveau la réponse.",
    more_ids: "Autres identifiants (facultatif)",
    visitor_label: "Votre identifiant de visiteur (statistiques d'audience)",
    visitor_hint: "Affiché sur notre page d'opposition aux statistiques (/optout) : 16 caractères. Il nous permet de retrouver, vous transmettre ou effacer vos données statistiques, et de ne plus compter vos visites si vous vous y opposez.",
    consent_label: "Votre identifiant de consentement aux cookies",
    consent_hint: "Affiché avec vos choix de cookies : il nous permet de vous transmettre la trace de vos choix ou de retirer votre consentement.",
    after_death_title: "Directives pour après votre décès",
    after_death_hint: "Uniquement pour la demande « directives pour après mon décès » : ce que nous devons faire de vos données, et qui s'en charge.",
    directive_label: "Que devons-nous faire de vos données ?",
    directives: [
        "Les effacer",
        "En remettre une copie à la personne ci-dessous, puis les effacer",
        "Les conserver telles quelles (la personne ci-dessous pourra les demander)",
    ],
    executor_name_label: "Personne chargée d'exécuter ces directives (nom)",
    executor_contact_label: "Comment la joindre (courriel ou adresse postale)",
};

fn texts(lang: &str) -> &'static PortalText {
    if lang == "fr" { &FR } else { &EN }
}

fn state_label(state: RequestState, lang: &str) -> &'static str {
    let fr = lang == "fr";
    match state {
        RequestState::Received => {
            if fr {
                "reçue"
            } else {
                "received"
            }
        }
        RequestState::AwaitingVerification => {
            if fr {
                "en attente de confirmation de votre identité"
            } else {
                "waiting for you to confirm your identity"
            }
        }
        RequestState::NeedMoreInformation => {
            if fr {
                "informations complémentaires demandées"
            } else {
                "more information requested"
            }
        }
        RequestState::Verified => {
            if fr {
                "identité confirmée"
            } else {
                "identity confirmed"
            }
        }
        RequestState::InProgress => {
            if fr {
                "en cours de traitement"
            } else {
                "being handled"
            }
        }
        RequestState::Extended => {
            if fr {
                "en cours, délai prolongé"
            } else {
                "being handled, deadline extended"
            }
        }
        RequestState::Replied => {
            if fr {
                "réponse envoyée"
            } else {
                "answered"
            }
        }
        RequestState::Closed => {
            if fr {
                "close"
            } else {
                "closed"
            }
        }
        RequestState::Rejected => {
            if fr {
                "refusée (motifs communiqués)"
            } else {
                "refused (reasons sent to you)"
            }
        }
        RequestState::Withdrawn => {
            if fr {
                "retirée"
            } else {
                "withdrawn"
            }
        }
    }
}

struct FormView {
    token: String,
    rights: Vec<(&'static str, &'static str, bool)>,
    email: String,
    text: String,
    visitor_id: String,
    consent_id: String,
    directives: Vec<(&'static str, &'static str, bool)>,
    executor_name: String,
    executor_contact: String,
    identity_proof: String,
    email_alt: String,
    postal_alt: String,
}

struct PackageView {
    expires: String,
    code_sent: bool,
    token: String,
    code_action: String,
    download_action: String,
}

struct StatusView {
    id: String,
    right_label: &'static str,
    state_label: &'static str,
    received: String,
    due: String,
    extended: Option<String>,
    code_form: bool,
    token: String,
}

#[derive(Template)]
#[template(path = "rights.html")]
struct Page<'a> {
    lang: &'a str,
    t: &'static PortalText,
    controller: &'a str,
    title: &'static str,
    notice_href: String,
    other_langs: Vec<(String, String)>,
    error: Option<&'static str>,
    info: Option<&'static str>,
    form: Option<FormView>,
    status: Option<StatusView>,
    link_confirm: Option<String>,
    link_token: String,
    package: Option<PackageView>,
}

#[derive(Deserialize)]
struct LangQuery {
    lang: Option<String>,
}

fn language(state: &AppState, headers: &HeaderMap, query: &LangQuery) -> String {
    let accept = headers
        .get(header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok());
    notice::negotiate_language(&state.register.register, accept, query.lang.as_deref())
}

fn date(t: Timestamp) -> String {
    t.to_zoned_datetime(jiff::tz::TimeZone::UTC)
        .date()
        .to_string()
}

impl<'a> Page<'a> {
    fn new(state: &'a AppState, lang: &'a str, path: &str, title: &'static str) -> Page<'a> {
        let reg = &state.register.register;
        Page {
            lang,
            t: texts(lang),
            controller: &reg.controller.name,
            title,
            notice_href: format!("/privacy?lang={lang}"),
            other_langs: reg
                .notice
                .languages
                .iter()
                .filter(|l| l.as_str() != lang)
                .map(|l| (l.clone(), format!("{path}?lang={l}")))
                .collect(),
            error: None,
            info: None,
            form: None,
            status: None,
            link_confirm: None,
            link_token: String::new(),
            package: None,
        }
    }

    fn respond(&self, status: StatusCode) -> Response {
        match self.render() {
            Ok(html) => (
                status,
                [
                    (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                    (header::CACHE_CONTROL, "no-store"),
                    (header::VARY, "Accept-Language"),
                ],
                html,
            )
                .into_response(),
            Err(e) => ApiError::internal("rights page", e).into_response(),
        }
    }
}

fn form_view(
    state: &AppState,
    svc: &RightsService,
    lang: &str,
    input: Option<&PortalForm>,
) -> Result<FormView, ApiError> {
    let reg = &state.register.register;
    let chosen = input.and_then(|f| f.right.as_deref());
    Ok(FormView {
        token: svc.form_token(Timestamp::now())?.0,
        rights: RightKind::ALL
            .iter()
            .map(|k| (k.as_str(), k.label(lang), chosen == Some(k.as_str())))
            .collect(),
        email: input.and_then(|f| f.email.clone()).unwrap_or_default(),
        text: input.and_then(|f| f.text.clone()).unwrap_or_default(),
        visitor_id: input.and_then(|f| f.visitor_id.clone()).unwrap_or_default(),
        consent_id: input.and_then(|f| f.consent_id.clone()).unwrap_or_default(),
        directives: AfterDeathDirective::ALL
            .iter()
            .zip(texts(lang).directives)
            .map(|(d, label)| {
                let chosen = input.and_then(|f| f.directive.as_deref());
                (
                    d.as_str(),
                    label,
                    chosen.map_or(*d == AfterDeathDirective::Erase, |c| c == d.as_str()),
                )
            })
            .collect(),
        executor_name: input
            .and_then(|f| f.executor_name.clone())
            .unwrap_or_default(),
        executor_contact: input
            .and_then(|f| f.executor_contact.clone())
            .unwrap_or_default(),
        identity_proof: reg.rights.identity_proof.get(lang).to_string(),
        email_alt: reg.rights.email.clone(),
        postal_alt: reg.rights.postal_address.clone(),
    })
}

fn status_view(
    svc: &RightsService,
    view: &RequestView,
    lang: &str,
) -> Result<StatusView, ApiError> {
    Ok(StatusView {
        id: view.id.clone(),
        right_label: view.kind.label(lang),
        state_label: state_label(view.state, lang),
        received: date(view.received_at),
        due: date(view.original_due_at),
        extended: view.extended_until.map(date),
        code_form: matches!(
            view.state,
            RequestState::Received | RequestState::AwaitingVerification
        ),
        token: svc.form_token(Timestamp::now())?.0,
    })
}

async fn portal_form(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<LangQuery>,
) -> Response {
    let lang = language(&state, &headers, &q);
    let svc = match service(&state) {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    let mut page = Page::new(&state, &lang, "/rights", texts(&lang).title);
    match form_view(&state, svc, &lang, None) {
        Ok(f) => page.form = Some(f),
        Err(e) => return e.into_response(),
    }
    page.respond(StatusCode::OK)
}

async fn rights_css() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        RIGHTS_CSS,
    )
        .into_response()
}

#[derive(Deserialize)]
struct PortalForm {
    form_token: Option<String>,
    right: Option<String>,
    email: Option<String>,
    text: Option<String>,
    visitor_id: Option<String>,
    consent_id: Option<String>,
    directive: Option<String>,
    executor_name: Option<String>,
    executor_contact: Option<String>,
}

/// Further identifiers and after-death instructions from the portal form (empty fields ignored).
fn portal_details(kind: RightKind, f: &PortalForm) -> RequestDetails {
    fn filled(v: &Option<String>) -> Option<&str> {
        v.as_deref().map(str::trim).filter(|v| !v.is_empty())
    }
    let mut extra = Vec::new();
    if let Some(v) = filled(&f.visitor_id) {
        extra.push((IdentifierKind::VisitorId, v.to_string()));
    }
    if let Some(v) = filled(&f.consent_id) {
        extra.push((IdentifierKind::ConsentId, v.to_string()));
    }
    let after_death = (kind == RightKind::AfterDeathInstructions).then(|| AfterDeathInstructions {
        directive: f
            .directive
            .as_deref()
            .and_then(AfterDeathDirective::parse)
            .unwrap_or(AfterDeathDirective::Erase),
        particular: f.text.clone().unwrap_or_default(),
        executor_name: filled(&f.executor_name).unwrap_or_default().to_string(),
        executor_contact: filled(&f.executor_contact).unwrap_or_default().to_string(),
    });
    RequestDetails {
        extra_identifiers: extra,
        after_death,
    }
}

/// Refuses posts a browser marks as coming from another site.
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true; // Not a browser, or an old one: the form token still protects.
    };
    if origin == "null" {
        return false;
    }
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    origin
        .split_once("://")
        .is_some_and(|(_, rest)| rest == host)
}

async fn portal_submit(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<LangQuery>,
    Form(input): Form<PortalForm>,
) -> Response {
    let lang = language(&state, &headers, &q);
    let svc = match service(&state) {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    let t = texts(&lang);
    let now = Timestamp::now();
    let again = |error: &'static str, detail: Option<String>, status: StatusCode| -> Response {
        let mut page = Page::new(&state, &lang, "/rights", t.title);
        page.error = Some(error);
        match form_view(&state, svc, &lang, Some(&input)) {
            Ok(f) => page.form = Some(f),
            Err(e) => return e.into_response(),
        }
        if let Some(d) = detail {
            // Field errors come from the service and never hold the submitted value.
            let mut res = page.respond(status);
            if let Ok(v) = axum::http::HeaderValue::from_str(&d) {
                res.headers_mut().insert("x-tutela-error", v);
            }
            return res;
        }
        page.respond(status)
    };
    if !same_origin(&headers) {
        return again(t.cross_site, None, StatusCode::FORBIDDEN);
    }
    if !input
        .form_token
        .as_deref()
        .is_some_and(|tok| svc.check_form_token(tok, now))
    {
        return again(t.expired_form, None, StatusCode::BAD_REQUEST);
    }
    let Some(kind) = input.right.as_deref().and_then(RightKind::parse) else {
        return again(t.choose_a_right, None, StatusCode::BAD_REQUEST);
    };
    let submission = Submission {
        kind,
        channel: Channel::Portal,
        lang: lang.clone(),
        details: portal_details(kind, &input),
        identifier_kind: IdentifierKind::Email,
        identifier: input.email.clone().unwrap_or_default(),
        contact_email: None,
        text: input.text.clone().unwrap_or_default(),
    };
    let receipt = match svc.file(submission, "portal", now).await {
        Ok(r) => r,
        Err(RightsError::Invalid(m)) => {
            let msg: &'static str = if lang == "fr" {
                "Vérifiez les champs du formulaire."
            } else {
                "Please check the form's fields."
            };
            return again(msg, Some(m), StatusCode::BAD_REQUEST);
        }
        Err(e) => return ApiError::from(e).into_response(),
    };
    let mut page = Page::new(&state, &lang, "/rights", t.received_title);
    page.info = Some(match (receipt.merged, receipt.verification) {
        (true, _) => t.merged,
        (_, VerificationRoute::EmailSent) => t.sent,
        (_, VerificationRoute::ChallengeRecentlySent) => t.recently_sent,
        (_, VerificationRoute::Platform | VerificationRoute::AlreadyVerified) => t.verified,
        (_, VerificationRoute::WaitingForDpo) => t.waiting_dpo,
    });
    match status_view(svc, &receipt.request, &lang) {
        Ok(s) => page.status = Some(s),
        Err(e) => return e.into_response(),
    }
    page.respond(StatusCode::OK)
}

/// Request ids are 32 hex digits; anything else is not looked up.
fn valid_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

async fn status_page(
    state: &AppState,
    lang: &str,
    id: &str,
    info: Option<&'static str>,
    error: Option<&'static str>,
    code: StatusCode,
) -> Response {
    let svc = match service(state) {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    if !valid_id(id) {
        return ApiError::new(ErrorCode::NotFound, "no such request").into_response();
    }
    let view = match svc.status(id, Timestamp::now()).await {
        Ok(Some(v)) => v,
        Ok(None) => return ApiError::new(ErrorCode::NotFound, "no such request").into_response(),
        Err(e) => return ApiError::from(e).into_response(),
    };
    let path = format!("/rights/requests/{id}");
    let mut page = Page::new(state, lang, &path, texts(lang).status_title);
    page.info = info;
    page.error = error;
    match status_view(svc, &view, lang) {
        Ok(s) => page.status = Some(s),
        Err(e) => return e.into_response(),
    }
    page.respond(code)
}

async fn portal_status(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<LangQuery>,
    Path(id): Path<String>,
) -> Response {
    let lang = language(&state, &headers, &q);
    status_page(&state, &lang, &id, None, None, StatusCode::OK).await
}

#[derive(Deserialize)]
struct CodeForm {
    form_token: Option<String>,
    code: Option<String>,
}

fn form_ok(state: &AppState, headers: &HeaderMap, token: Option<&str>) -> bool {
    let Ok(svc) = service(state) else {
        return false;
    };
    same_origin(headers) && token.is_some_and(|t| svc.check_form_token(t, Timestamp::now()))
}

fn verification_message(lang: &str, m: &str) -> &'static str {
    let fr = lang == "fr";
    if m == "wrong code" {
        if fr {
            "Ce code n'est pas le bon."
        } else {
            "That code is not right."
        }
    } else if m.contains("expired") && m.contains("link") {
        if fr {
            "Ce lien a expiré."
        } else {
            "This link has expired."
        }
    } else if m.starts_with("no code") {
        if fr {
            "Aucun code valide n'attend cette demande (expiré, trop d'essais ou remplacé) : demandez-en un nouveau."
        } else {
            "No valid code is waiting for this request (expired, too many tries or replaced): ask for a new one."
        }
    } else if fr {
        "Le code a 6 chiffres."
    } else {
        "The code has 6 digits."
    }
}

async fn portal_verify_code(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<LangQuery>,
    Path(id): Path<String>,
    Form(input): Form<CodeForm>,
) -> Response {
    let lang = language(&state, &headers, &q);
    let t = texts(&lang);
    if !form_ok(&state, &headers, input.form_token.as_deref()) {
        return status_page(
            &state,
            &lang,
            &id,
            None,
            Some(t.expired_form),
            StatusCode::BAD_REQUEST,
        )
        .await;
    }
    let Ok(svc) = service(&state) else {
        return status_page(&state, &lang, &id, None, None, StatusCode::OK).await;
    };
    if !valid_id(&id) {
        return ApiError::new(ErrorCode::NotFound, "no such request").into_response();
    }
    let code = input.code.unwrap_or_default();
    if code.len() > 16 {
        return status_page(
            &state,
            &lang,
            &id,
            None,
            Some(verification_message(&lang, "")),
            StatusCode::BAD_REQUEST,
        )
        .await;
    }
    match svc.verify_code(&id, &code, Timestamp::now()).await {
        Ok(_) => status_page(&state, &lang, &id, Some(t.verified), None, StatusCode::OK).await,
        Err(RightsError::Verification(m)) => {
            status_page(
                &state,
                &lang,
                &id,
                None,
                Some(verification_message(&lang, m)),
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await
        }
        Err(e) => ApiError::from(e).into_response(),
    }
}

async fn portal_resend(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<LangQuery>,
    Path(id): Path<String>,
    Form(input): Form<CodeForm>,
) -> Response {
    let lang = language(&state, &headers, &q);
    let t = texts(&lang);
    if !form_ok(&state, &headers, input.form_token.as_deref()) || !valid_id(&id) {
        return status_page(
            &state,
            &lang,
            &id,
            None,
            Some(t.expired_form),
            StatusCode::BAD_REQUEST,
        )
        .await;
    }
    let Ok(svc) = service(&state) else {
        return status_page(&state, &lang, &id, None, None, StatusCode::OK).await;
    };
    match svc.send_challenge(&id, Timestamp::now()).await {
        Ok(VerificationRoute::EmailSent) => {
            status_page(&state, &lang, &id, Some(t.sent), None, StatusCode::OK).await
        }
        Ok(VerificationRoute::ChallengeRecentlySent) => {
            status_page(
                &state,
                &lang,
                &id,
                Some(t.recently_sent),
                None,
                StatusCode::OK,
            )
            .await
        }
        Ok(_) => status_page(&state, &lang, &id, None, None, StatusCode::OK).await,
        Err(RightsError::NotFound) => {
            ApiError::new(ErrorCode::NotFound, "no such request").into_response()
        }
        Err(RightsError::Transition(_)) => {
            status_page(&state, &lang, &id, None, None, StatusCode::CONFLICT).await
        }
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// The link in the e-mail only shows a button: mail scanners that open links must not confirm.
async fn portal_link_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<LangQuery>,
    Path(token): Path<String>,
) -> Response {
    let lang = language(&state, &headers, &q);
    let svc = match service(&state) {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    if token.len() != 64 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
        return ApiError::new(ErrorCode::NotFound, "no such link").into_response();
    }
    let t = texts(&lang);
    let mut page = Page::new(
        &state,
        &lang,
        &format!("/rights/verify/{token}"),
        t.confirm_title,
    );
    page.link_confirm = Some(format!("/rights/verify/{token}?lang={lang}"));
    match svc.form_token(Timestamp::now()) {
        Ok(tok) => page.link_token = tok.0,
        Err(e) => return ApiError::from(e).into_response(),
    }
    page.respond(StatusCode::OK)
}

async fn portal_link_confirm(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<LangQuery>,
    Path(token): Path<String>,
    Form(input): Form<CodeForm>,
) -> Response {
    let lang = language(&state, &headers, &q);
    let t = texts(&lang);
    let svc = match service(&state) {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    let mut page = Page::new(&state, &lang, "/rights", t.confirm_title);
    if !form_ok(&state, &headers, input.form_token.as_deref()) {
        page.error = Some(t.expired_form);
        return page.respond(StatusCode::BAD_REQUEST);
    }
    match svc.verify_link(&token, Timestamp::now()).await {
        Ok(outcome) => {
            status_page(
                &state,
                &lang,
                &outcome.request.id,
                Some(t.verified),
                None,
                StatusCode::OK,
            )
            .await
        }
        Err(RightsError::Verification(_)) => {
            page.error = Some(if lang == "fr" {
                "Ce lien n'est plus valable (expiré, déjà utilisé ou remplacé)."
            } else {
                "This link is no longer valid (expired, used or replaced)."
            });
            page.respond(StatusCode::UNPROCESSABLE_ENTITY)
        }
        Err(e) => ApiError::from(e).into_response(),
    }
}

// ---- API ---------------------------------------------------------------------------------

/// A rights request filed by the platform or entered by the DPO.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ApiRequest {
    kind: String,
    #[serde(default = "default_identifier_kind")]
    identifier_kind: String,
    identifier: String,
    #[serde(default)]
    contact_email: Option<String>,
    #[serde(default)]
    text: String,
    #[serde(default)]
    lang: Option<String>,
    /// `api` (default), or `email` / `post` for requests the DPO received and enters.
    #[serde(default)]
    channel: Option<String>,
    #[serde(default)]
    verification: Option<ApiVerification>,
    /// Further identifiers of the same person (e.g. `visitor_id`, `consent_id`), at most 8.
    #[serde(default)]
    extra_identifiers: Vec<ApiIdentifier>,
    /// For `after_death_instructions`: the structured instructions.
    #[serde(default)]
    after_death: Option<ApiAfterDeath>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ApiIdentifier {
    kind: String,
    value: String,
}

/// After-death instructions (Loi Informatique et Libertés art. 85).
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ApiAfterDeath {
    /// `erase`, `communicate_then_erase` or `keep`.
    directive: String,
    #[serde(default)]
    particular: String,
    #[serde(default)]
    executor_name: String,
    #[serde(default)]
    executor_contact: String,
}

fn api_details(body: &ApiRequest) -> Result<RequestDetails, ApiError> {
    if body.extra_identifiers.len() > tutela_rights::MAX_EXTRA_IDENTIFIERS {
        return Err(ApiError::new(
            ErrorCode::BadRequest,
            "at most 8 extra_identifiers",
        ));
    }
    let mut extra = Vec::new();
    for i in &body.extra_identifiers {
        let kind: IdentifierKind =
            i.kind
                .parse()
                .map_err(|e: tutela_crypto::IdentifierError| {
                    ApiError::new(ErrorCode::BadRequest, e.to_string())
                })?;
        extra.push((kind, i.value.clone()));
    }
    let after_death = match &body.after_death {
        None => None,
        Some(a) => Some(AfterDeathInstructions {
            directive: AfterDeathDirective::parse(&a.directive).ok_or_else(|| {
                ApiError::new(
                    ErrorCode::BadRequest,
                    "after_death.directive is erase, communicate_then_erase or keep",
                )
            })?,
            particular: a.particular.clone(),
            executor_name: a.executor_name.clone(),
            executor_contact: a.executor_contact.clone(),
        }),
    };
    Ok(RequestDetails {
        extra_identifiers: extra,
        after_death,
    })
}

fn default_identifier_kind() -> String {
    "email".into()
}

/// How the requester's identity is established at filing (absent: an e-mailed code and link).
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(tag = "method", rename_all = "snake_case", deny_unknown_fields)]
pub(crate) enum ApiVerification {
    /// The calling token (rights:write) vouches for its logged-in user.
    PlatformToken,
    /// A signed assertion: HMAC-SHA256 with the shared secret (see README).
    Assertion { issued_at: i64, signature: String },
}

#[utoipa::path(post, path = "/api/v1/rights/requests", tag = "rights", request_body = ApiRequest,
    responses(
        (status = 201, description = "Filed: `{request, merged, verification}` (no personal data)"),
        (status = 200, description = "Merged into the same person's open request of this kind"),
        (status = 400, description = "Invalid input", body = ApiError),
        (status = 422, description = "The platform assertion does not verify", body = ApiError),
    ),
    security(("bearer" = ["rights:write"])))]
pub(crate) async fn api_file(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<ApiRequest>,
) -> Result<Response, ApiError> {
    caller.require(Scope::RightsWrite)?;
    let svc = service(&state)?;
    let kind = RightKind::parse(&body.kind).ok_or_else(|| {
        let all: Vec<&str> = RightKind::ALL.iter().map(|k| k.as_str()).collect();
        ApiError::new(
            ErrorCode::BadRequest,
            format!("unknown kind; kinds are: {}", all.join(", ")),
        )
    })?;
    let identifier_kind: IdentifierKind =
        body.identifier_kind
            .parse()
            .map_err(|e: tutela_crypto::IdentifierError| {
                ApiError::new(ErrorCode::BadRequest, e.to_string())
            })?;
    let channel = match body.channel.as_deref() {
        None => Channel::Api,
        Some(c) => match Channel::parse(c) {
            Some(Channel::Portal) | None => {
                return Err(ApiError::new(
                    ErrorCode::BadRequest,
                    "channel must be api, email or post",
                ));
            }
            Some(ch) => ch,
        },
    };
    let lang = body
        .lang
        .clone()
        .unwrap_or_else(|| state.register.register.notice.default_language.clone());
    if lang.len() > 16 {
        return Err(ApiError::new(
            ErrorCode::BadRequest,
            "lang is a language code such as en or fr",
        ));
    }
    let now = Timestamp::now();
    let actor = caller.actor();
    let details = api_details(&body)?;
    let submission = Submission {
        kind,
        channel,
        lang,
        details,
        identifier_kind,
        identifier: body.identifier,
        contact_email: body.contact_email,
        text: body.text,
    };
    let receipt = match body.verification {
        None => svc.file(submission, &actor, now).await?,
        Some(ApiVerification::PlatformToken) => {
            svc.file_verified(
                submission,
                &format!("platform_token:{}", caller.token_id),
                &actor,
                now,
            )
            .await?
        }
        Some(ApiVerification::Assertion {
            issued_at,
            signature,
        }) => {
            if signature.len() > 128 {
                return Err(ApiError::new(
                    ErrorCode::BadRequest,
                    "signature is 64 hexadecimal digits",
                ));
            }
            svc.check_assertion(
                submission.identifier_kind,
                &submission.identifier,
                issued_at,
                &signature,
                now,
            )?;
            svc.file_verified(submission, "platform_assertion", &actor, now)
                .await?
        }
    };
    let status = if receipt.merged {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(receipt)).into_response())
}

#[utoipa::path(get, path = "/api/v1/rights/requests/{id}", tag = "rights",
    params(("id" = String, Path, description = "Request id (32 hex digits)")),
    responses(
        (status = 200, description = "`{request, history}`"),
        (status = 404, description = "No such request", body = ApiError),
    ),
    security(("bearer" = ["rights:read"])))]
pub(crate) async fn api_get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    caller.require(Scope::RightsRead)?;
    let svc = service(&state)?;
    if !valid_id(&id) {
        return Err(ApiError::new(ErrorCode::NotFound, "no such request"));
    }
    let view = svc
        .status(&id, Timestamp::now())
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, "no such request"))?;
    let history: Vec<serde_json::Value> = svc
        .history(&id)
        .await?
        .into_iter()
        .map(|h| serde_json::json!({"at": Timestamp::from_second(h.at).ok(), "event": h.event, "state": h.state, "actor": h.actor}))
        .collect();
    Ok(Json(serde_json::json!({"request": view, "history": history})).into_response())
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct DueQuery {
    /// Open requests due within this many days (default 7); `overdue=true` lists only overdue.
    due_within_days: Option<i64>,
    overdue: Option<bool>,
    all_open: Option<bool>,
    limit: Option<i64>,
}

#[utoipa::path(get, path = "/api/v1/rights/requests", tag = "rights", params(DueQuery),
    responses(
        (status = 200, description = "`{requests}`: open requests, soonest due first"),
        (status = 400, description = "Invalid parameters", body = ApiError),
    ),
    security(("bearer" = ["rights:read"])))]
pub(crate) async fn api_due(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<DueQuery>,
) -> Result<Response, ApiError> {
    caller.require(Scope::RightsRead)?;
    let svc = service(&state)?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::new(
            ErrorCode::BadRequest,
            "limit is between 1 and 1000",
        ));
    }
    let within = if q.all_open == Some(true) {
        i64::MAX / 2
    } else if q.overdue == Some(true) {
        -1
    } else {
        let days = q.due_within_days.unwrap_or(7);
        if !(0..=3650).contains(&days) {
            return Err(ApiError::new(
                ErrorCode::BadRequest,
                "due_within_days is between 0 and 3650",
            ));
        }
        days * 86400
    };
    let list = svc.due(Timestamp::now(), within, limit).await?;
    Ok(Json(serde_json::json!({"requests": list})).into_response())
}

/// An event moving a request (see the README for each).
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ApiEvent {
    event: String,
    #[serde(default)]
    reasons: Option<String>,
    #[serde(default)]
    ground: Option<String>,
    /// For `extend`: the new due date (RFC 3339).
    #[serde(default)]
    until: Option<String>,
    /// For `rectify`: field → corrected value, applied on every source.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    changes: Option<serde_json::Map<String, serde_json::Value>>,
}

/// The console's seam: the DPO moves a request (manual verification, more information,
/// extension, reply, rejection…). The state machine decides what is allowed.
#[utoipa::path(post, path = "/api/v1/rights/requests/{id}/events", tag = "rights", request_body = ApiEvent,
    params(("id" = String, Path, description = "Request id (32 hex digits)")),
    responses(
        (status = 200, description = "`{request}` after the event (and `package_token` for `finish`, `sources` for `rectify`)"),
        (status = 400, description = "Unknown event or missing field", body = ApiError),
        (status = 409, description = "The request's state does not allow this event", body = ApiError),
    ),
    security(("bearer" = ["rights:write"])))]
pub(crate) async fn api_event(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Json(body): Json<ApiEvent>,
) -> Result<Response, ApiError> {
    caller.require(Scope::RightsWrite)?;
    let svc = service(&state)?;
    if !valid_id(&id) {
        return Err(ApiError::new(ErrorCode::NotFound, "no such request"));
    }
    let now = Timestamp::now();
    let actor = caller.actor();
    let reasons = body.reasons.clone().unwrap_or_default();
    let view = match body.event.as_str() {
        "extend" => {
            let until: Timestamp = body
                .until
                .as_deref()
                .ok_or_else(|| {
                    ApiError::new(ErrorCode::BadRequest, "extend needs `until` (RFC 3339)")
                })?
                .parse()
                .map_err(|_| {
                    ApiError::new(
                        ErrorCode::BadRequest,
                        "`until` is an RFC 3339 time, e.g. 2026-04-28T09:00:00Z",
                    )
                })?;
            svc.extend(&id, until, &reasons, &actor, now).await?
        }
        "verify" => {
            svc.transition(
                &id,
                &Event::Verified,
                Some(&format!("dpo:{}", caller.token_id)),
                &actor,
                now,
            )
            .await?
        }
        "send_challenge" => {
            svc.send_challenge(&id, now).await?;
            svc.status(&id, now)
                .await?
                .ok_or_else(|| ApiError::new(ErrorCode::NotFound, "no such request"))?
        }
        other => {
            let event = match other {
                "ask_more_information" => Event::AskMoreInformation,
                "information_received" => Event::InformationReceived,
                "start_execution" => {
                    if let Some(exec) = &state.executor {
                        let view = exec.start(&id, &actor, now).await?;
                        return Ok(Json(serde_json::json!({"request": view})).into_response());
                    }
                    Event::StartExecution
                }
                "rectify" => {
                    let exec = state.executor.as_ref().ok_or_else(|| {
                        ApiError::new(ErrorCode::Unavailable, "no execution engine on this server")
                    })?;
                    let changes = body.changes.clone().unwrap_or_default();
                    let results = exec.rectify(&id, &changes, &actor, now).await?;
                    let results: serde_json::Map<String, serde_json::Value> = results
                        .into_iter()
                        .map(|(source, r)| {
                            let v = match r {
                                Ok(n) => serde_json::json!({"changed": n}),
                                Err(e) => serde_json::json!({"error": e}),
                            };
                            (source, v)
                        })
                        .collect();
                    let view = svc.status(&id, now).await?;
                    return Ok(Json(serde_json::json!({"request": view, "sources": results})).into_response());
                }
                "finish" => {
                    let exec = state.executor.as_ref().ok_or_else(|| {
                        ApiError::new(ErrorCode::Unavailable, "no execution engine on this server")
                    })?;
                    let token = exec.finish(&id, &actor, now).await?;
                    let view = svc.status(&id, now).await?;
                    return Ok(Json(serde_json::json!({"request": view, "package_token": token})).into_response());
                }
                "reply" => Event::Reply,
                "close" => Event::Close,
                "withdraw" => Event::Withdraw,
                "reject" => Event::Reject {
                    ground: body.ground.as_deref().and_then(RejectionGround::parse).ok_or_else(|| {
                        ApiError::new(ErrorCode::BadRequest, "reject needs `ground`: manifestly_unfounded, excessive or identity_not_established")
                    })?,
                    reasons,
                },
                _ => {
                    return Err(ApiError::new(
                        ErrorCode::BadRequest,
                        "unknown event; events are: verify, ask_more_information, information_received, send_challenge, start_execution, rectify, finish, extend, reply, close, reject, withdraw",
                    ));
                }
            };
            svc.transition(&id, &event, None, &actor, now).await?
        }
    };
    Ok(Json(serde_json::json!({"request": view})).into_response())
}

/// Runs the execution steps that are due now (the server also does it every 30 seconds).
#[utoipa::path(post, path = "/api/v1/rights/steps/run", tag = "rights",
    responses((status = 200, description = "`{done, retried, failed}`")),
    security(("bearer" = ["rights:write"])))]
pub(crate) async fn api_run_steps(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Response, ApiError> {
    caller.require(Scope::RightsWrite)?;
    let exec = state.executor.as_ref().ok_or_else(|| {
        ApiError::new(ErrorCode::Unavailable, "no execution engine on this server")
    })?;
    let r = exec.run_due(Timestamp::now()).await?;
    Ok(
        Json(serde_json::json!({"done": r.done, "retried": r.retried, "failed": r.failed}))
            .into_response(),
    )
}

fn valid_token(token: &str) -> bool {
    token.len() == 64 && token.bytes().all(|b| b.is_ascii_hexdigit())
}

async fn package_view_page(
    state: &AppState,
    lang: &str,
    token: &str,
    code_sent: bool,
    info: Option<&'static str>,
    error: Option<&'static str>,
    code: StatusCode,
) -> Response {
    let svc = match service(state) {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    let t = texts(lang);
    if !valid_token(token) {
        return ApiError::new(ErrorCode::NotFound, "no such package").into_response();
    }
    let pkg = match svc.package_info(token, Timestamp::now()).await {
        Ok(p) => p,
        Err(RightsError::NotFound) => {
            return ApiError::new(ErrorCode::NotFound, "no such package (it may have expired)")
                .into_response();
        }
        Err(e) => return ApiError::from(e).into_response(),
    };
    let mut page = Page::new(
        state,
        lang,
        &format!("/rights/packages/{token}"),
        t.package_title,
    );
    if pkg.expired {
        page.error = Some(t.package_expired);
        return page.respond(StatusCode::GONE);
    }
    page.info = info;
    page.error = error;
    let form_token = match svc.form_token(Timestamp::now()) {
        Ok(f) => f.0,
        Err(e) => return ApiError::from(e).into_response(),
    };
    page.package = Some(PackageView {
        expires: date(pkg.expires_at),
        code_sent,
        token: form_token,
        code_action: format!("/rights/packages/{token}/code?lang={lang}"),
        download_action: format!("/rights/packages/{token}/download?lang={lang}"),
    });
    page.respond(code)
}

async fn package_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<LangQuery>,
    Path(token): Path<String>,
) -> Response {
    let lang = language(&state, &headers, &q);
    package_view_page(&state, &lang, &token, false, None, None, StatusCode::OK).await
}

/// What both package forms check first: a fresh form token, a running engine, a well-formed
/// package token. On failure, the page (or error) to answer with.
async fn package_form_checks<'s>(
    state: &'s AppState,
    headers: &HeaderMap,
    lang: &str,
    token: &str,
    input: &CodeForm,
    code_sent: bool,
) -> Result<&'s RightsService, Response> {
    if !form_ok(state, headers, input.form_token.as_deref()) {
        return Err(package_view_page(
            state,
            lang,
            token,
            code_sent,
            None,
            Some(texts(lang).expired_form),
            StatusCode::BAD_REQUEST,
        )
        .await);
    }
    let Ok(svc) = service(state) else {
        return Err(package_view_page(state, lang, token, false, None, None, StatusCode::OK).await);
    };
    if !valid_token(token) {
        return Err(ApiError::new(ErrorCode::NotFound, "no such package").into_response());
    }
    Ok(svc)
}

async fn package_code(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<LangQuery>,
    Path(token): Path<String>,
    Form(input): Form<CodeForm>,
) -> Response {
    let lang = language(&state, &headers, &q);
    let t = texts(&lang);
    let svc = match package_form_checks(&state, &headers, &lang, &token, &input, false).await {
        Ok(svc) => svc,
        Err(page) => return page,
    };
    match svc.send_download_code(&token, Timestamp::now()).await {
        Ok(VerificationRoute::EmailSent) => {
            package_view_page(
                &state,
                &lang,
                &token,
                true,
                Some(t.sent),
                None,
                StatusCode::OK,
            )
            .await
        }
        Ok(VerificationRoute::ChallengeRecentlySent) => {
            package_view_page(
                &state,
                &lang,
                &token,
                true,
                Some(t.recently_sent),
                None,
                StatusCode::OK,
            )
            .await
        }
        Ok(_) => {
            package_view_page(
                &state,
                &lang,
                &token,
                false,
                Some(t.waiting_dpo),
                None,
                StatusCode::OK,
            )
            .await
        }
        Err(RightsError::NotFound) => {
            ApiError::new(ErrorCode::NotFound, "no such package").into_response()
        }
        Err(RightsError::Verification(_)) => {
            package_view_page(&state, &lang, &token, false, None, None, StatusCode::GONE).await
        }
        Err(e) => ApiError::from(e).into_response(),
    }
}

async fn package_download(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<LangQuery>,
    Path(token): Path<String>,
    Form(input): Form<CodeForm>,
) -> Response {
    let lang = language(&state, &headers, &q);
    let svc = match package_form_checks(&state, &headers, &lang, &token, &input, true).await {
        Ok(svc) => svc,
        Err(page) => return page,
    };
    let code = input.code.unwrap_or_default();
    if code.len() > 16 {
        return package_view_page(
            &state,
            &lang,
            &token,
            true,
            None,
            Some(verification_message(&lang, "")),
            StatusCode::BAD_REQUEST,
        )
        .await;
    }
    match svc.download(&token, &code, Timestamp::now()).await {
        Ok(zip) => (
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, "application/zip".to_string()),
                (
                    header::CONTENT_DISPOSITION,
                    "attachment; filename=\"answer.zip\"".to_string(),
                ),
                (header::CACHE_CONTROL, "no-store".to_string()),
            ],
            zip.to_vec(),
        )
            .into_response(),
        Err(RightsError::Verification(m)) => {
            package_view_page(
                &state,
                &lang,
                &token,
                true,
                None,
                Some(verification_message(&lang, m)),
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await
        }
        Err(RightsError::NotFound) => {
            ApiError::new(ErrorCode::NotFound, "no such package").into_response()
        }
        Err(e) => ApiError::from(e).into_response(),
    }
}

//! The public privacy notice, rendered from the register (HTML and Markdown, English and French).
//!
//! Every *fact* in the notice (purposes, data, legal bases, retention, recipients, cookies, contacts,
//! the authority, the revision history) comes from the [`Register`]; only the *wording* around
//! those facts comes from the per-language string tables of this module. Both renderings are built
//! from the same view model ([`View`]), so the HTML page and the Markdown export cannot say
//! different things.
//!
//! The HTML page is standalone, readable without JavaScript and carries no inline style or script
//! (the server's Content-Security-Policy forbids them): it links one stylesheet,
//! `{base_path}/assets/notice.css`, whose content is [`NOTICE_CSS`].

use std::fmt::Write as _;

use askama::Template;
use jiff::civil::Date;

use crate::register::{
    AfterDeath, Anchor, CookieCategory, LegalBasis, MinimisationRule, Period, PeriodUnit, Purpose,
    RecipientRole, Register, RetentionRule,
};

/// The notice's stylesheet, to be served at `{base_path}/assets/notice.css`.
pub const NOTICE_CSS: &str = include_str!("../assets/notice.css");

/// How a notice is rendered: in which language, with which update date, and where it is mounted.
#[derive(Clone, Copy, Debug)]
pub struct NoticeContext<'a> {
    /// The wanted language (e.g. the result of [`negotiate_language`]). A language the register
    /// does not publish falls back to `notice.default_language`.
    pub lang: &'a str,
    /// The date shown as "Last updated" (usually [`last_updated`] of the register, or the date
    /// the register file was deployed).
    pub last_updated: Date,
    /// Prefix of the site's paths, without a trailing slash (`""` when Tutela serves the site
    /// root). The page links to `{base_path}/assets/notice.css`, `{base_path}/privacy?lang=…`
    /// (language switch).
    pub base_path: &'a str,
    /// Where the online rights-request form lives, if the site has one (e.g. `"/rights"`);
    /// `None` leaves the link out, so the notice never points at a page that does not exist.
    pub rights_form: Option<&'a str>,
}

impl<'a> NoticeContext<'a> {
    /// A context for the site root (`base_path = ""`).
    pub fn new(lang: &'a str, last_updated: Date) -> Self {
        Self {
            lang,
            last_updated,
            base_path: "",
            rights_form: None,
        }
    }
}

/// The languages the notice is published in (from `notice.languages`).
pub fn supported_languages(reg: &Register) -> &[String] {
    &reg.notice.languages
}

/// The date of the register's newest revision, if it has one with a valid ISO date.
pub fn last_updated(reg: &Register) -> Option<Date> {
    reg.latest_revision().and_then(|r| r.date.parse().ok())
}

/// Chooses the notice language: an explicit `?lang=` wins, then the browser's `Accept-Language`
/// (highest q-value first, `fr-CA` matching `fr`), then the register's default language.
/// The result is always one of [`supported_languages`] (or the default language).
pub fn negotiate_language(
    reg: &Register,
    accept_language: Option<&str>,
    query_lang: Option<&str>,
) -> String {
    let langs = supported_languages(reg);
    let find = |tag: &str| -> Option<String> {
        let tag = tag.trim();
        if tag.is_empty() {
            return None;
        }
        if let Some(l) = langs.iter().find(|l| l.eq_ignore_ascii_case(tag)) {
            return Some(l.clone());
        }
        let primary = tag.split(['-', '_']).next().unwrap_or(tag);
        langs
            .iter()
            .find(|l| l.eq_ignore_ascii_case(primary))
            .cloned()
    };
    if let Some(l) = query_lang.and_then(find) {
        return l;
    }
    if let Some(header) = accept_language {
        let mut ranges: Vec<(f32, usize, &str)> = Vec::new();
        for (i, item) in header.split(',').enumerate().take(64) {
            let mut parts = item.split(';');
            let tag = parts.next().unwrap_or("").trim();
            let mut q = 1.0_f32;
            for param in parts {
                let param = param.trim();
                if let Some(v) = param
                    .strip_prefix("q=")
                    .or_else(|| param.strip_prefix("Q="))
                {
                    q = v.trim().parse().unwrap_or(0.0);
                }
            }
            if q > 0.0 && q <= 1.0 && !tag.is_empty() {
                ranges.push((q, i, tag));
            }
        }
        // Highest q first; among equal q, the order of the header.
        ranges.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        for (_, _, tag) in ranges {
            if tag == "*" {
                return reg.notice.default_language.clone();
            }
            if let Some(l) = find(tag) {
                return l;
            }
        }
    }
    reg.notice.default_language.clone()
}

/// The language a notice is actually rendered in: `wanted` when the register publishes it,
/// otherwise the register's default language.
pub fn resolve_language(reg: &Register, wanted: &str) -> String {
    supported_languages(reg)
        .iter()
        .find(|l| l.eq_ignore_ascii_case(wanted))
        .cloned()
        .unwrap_or_else(|| reg.notice.default_language.clone())
}

/// The notice as a complete, standalone HTML5 page.
pub fn render_html(reg: &Register, ctx: &NoticeContext) -> String {
    View::build(reg, ctx)
        .render()
        .expect("rendering into a String cannot fail")
}

/// The notice as Markdown (same content as [`render_html`]).
pub fn render_markdown(reg: &Register, ctx: &NoticeContext) -> String {
    View::build(reg, ctx).markdown()
}

// ---------------------------------------------------------------------------------------------
// Wording: one table per language. Placeholders in braces are filled in by `fill`.
// ---------------------------------------------------------------------------------------------

struct Strings {
    lang_name: &'static str,
    skip: &'static str,
    language_nav: &'static str,
    other_language: &'static str,
    toc: &'static str,
    last_updated: &'static str,
    generated: &'static str,

    who_title: &'static str,
    controller_intro: &'static str,
    postal_address: &'static str,
    email: &'static str,
    website: &'static str,
    dpo_title: &'static str,
    dpo_intro: &'static str,
    name: &'static str,

    purposes_title: &'static str,
    purposes_intro: &'static str,
    legal_basis: &'static str,
    legitimate_interest: &'static str,
    consent: &'static str,
    consent_banner: &'static str,
    subjects: &'static str,
    categories: &'static str,
    retention: &'static str,
    recipients: &'static str,
    source: &'static str,
    no_recipients: &'static str,
    gdpr: &'static str,
    basis_consent: &'static str,
    basis_contract: &'static str,
    basis_legal_obligation: &'static str,
    basis_vital_interests: &'static str,
    basis_public_task: &'static str,
    basis_legitimate_interest: &'static str,
    role_processor: &'static str,
    role_controller: &'static str,
    role_joint_controller: &'static str,
    role_authority: &'static str,
    country: &'static str,
    recipient_policy: &'static str,
    transfer: &'static str,
    transfer_safeguards: &'static str,

    min_ip_half: &'static str,
    min_user_agent: &'static str,
    min_url: &'static str,
    min_pseudonym: &'static str,
    min_password: &'static str,
    never_stored: &'static str,
    never_stored_by: &'static str,

    ret_all: &'static str,
    ret_other: &'static str,
    ret_collection: &'static str,
    ret_last_contact: &'static str,
    ret_contract_end: &'static str,
    ret_contract_then_legal: &'static str,
    ret_contract_then_legal_open: &'static str,
    ret_request_reply: &'static str,
    ret_while_open: &'static str,
    ret_plain: &'static str,
    ret_legal_obligation: &'static str,
    ret_other_basis: &'static str,
    ret_law: &'static str,
    ret_extendable: &'static str,

    cookies_caption: &'static str,
    cookie_name: &'static str,
    cookie_category: &'static str,
    cookie_lifetime: &'static str,
    cookie_description: &'static str,
    cookie_provider: &'static str,
    cookie_us: &'static str,

    cookies_title: &'static str,
    cookies_intro: &'static str,
    cookies_none: &'static str,
    cookies_after_consent: &'static str,
    used_for: &'static str,
    cookie_names: &'static str,
    cat_functional: &'static str,
    cat_analytics: &'static str,
    cat_targeting: &'static str,
    cat_functional_text: &'static str,
    cat_analytics_text: &'static str,
    cat_targeting_text: &'static str,

    rights_title: &'static str,
    rights_intro: &'static str,
    applies_to: &'static str,
    kept_despite_erasure: &'static str,
    cookie_choices: &'static str,
    rights: [(&'static str, &'static str, &'static str); 8],

    exercise_title: &'static str,
    exercise_intro: &'static str,
    by_email: &'static str,
    by_post: &'static str,
    online_form: &'static str,
    online_form_link: &'static str,
    identity: &'static str,
    identity_doubt: &'static str,

    handling_title: &'static str,
    reply_within: &'static str,
    extension: &'static str,
    records_kept: &'static str,

    after_death_title: &'static str,
    after_death_text: &'static str,
    after_death_destroy: &'static str,
    after_death_keep: &'static str,

    complaint_title: &'static str,
    complaint_text: &'static str,
    complaint_authority: &'static str,
    complaint_online: &'static str,
    complaint_list: &'static str,
    complaint_dpo_first: &'static str,

    revisions_title: &'static str,
    revisions_caption: &'static str,
    revision_date: &'static str,
    revision_change: &'static str,
    revisions_none: &'static str,

    months: [&'static str; 12],
    period_units: [(&'static str, &'static str); 5],
    list_sep: &'static str,
    colon: &'static str,
}

/// The order of `Strings::rights`: (id, name, article, explanation) comes from this and the table.
const RIGHT_IDS: [&str; 8] = [
    "access",
    "rectification",
    "erasure",
    "restriction",
    "portability",
    "objection",
    "withdraw-consent",
    "after-death",
];

static EN: Strings = Strings {
    lang_name: "English",
    skip: "Skip to content",
    language_nav: "Language",
    other_language: "Read this notice in",
    toc: "Contents",
    last_updated: "Last updated",
    generated: "This notice is generated from our register of processing activities: the same register decides what our systems are allowed to collect and when they delete it.",

    who_title: "Who we are",
    controller_intro: "The controller responsible for your personal data is",
    postal_address: "Postal address",
    email: "E-mail",
    website: "Website",
    dpo_title: "Data protection officer",
    dpo_intro: "For any question about your personal data, you can contact our data protection officer (DPO):",
    name: "Name",

    purposes_title: "What we process and why",
    purposes_intro: "For each processing activity: why we process your data, on which legal basis, which data, how long we keep it and who receives it.",
    legal_basis: "Legal basis",
    legitimate_interest: "Our legitimate interest",
    consent: "Consent",
    consent_banner: "Only with your consent, asked for in our cookie banner (category “{category}”). You can withdraw it at any time.",
    subjects: "Whose data",
    categories: "Data processed",
    retention: "How long we keep it",
    recipients: "Who receives it",
    source: "Where the data comes from",
    no_recipients: "None: this data is never shared with anyone outside {controller}.",
    gdpr: "GDPR",
    basis_consent: "Your consent",
    basis_contract: "Performance of a contract with you, or steps taken at your request before entering into one",
    basis_legal_obligation: "Compliance with a legal obligation we are subject to",
    basis_vital_interests: "Protection of the vital interests of a person",
    basis_public_task: "A task carried out in the public interest",
    basis_legitimate_interest: "Our legitimate interests",
    role_processor: "processor, acting only on our instructions",
    role_controller: "independent controller",
    role_joint_controller: "joint controller with us",
    role_authority: "public authority",
    country: "Country",
    recipient_policy: "Privacy policy of {name}",
    transfer: "Transfer outside the European Economic Area.",
    transfer_safeguards: "Safeguards:",

    min_ip_half: "only the first half of the IP address is kept (e.g. 192.168.xxx.xxx)",
    min_user_agent: "reduced to browser, operating system and device type; the full user-agent string is not kept",
    min_url: "kept without query string or fragment",
    min_pseudonym: "replaced by a pseudonym that changes regularly",
    min_password: "stored only as a salted hash, never in clear",
    never_stored: "never stored by us",
    never_stored_by: "never stored by us: handled only by {recipients}",

    ret_all: "All data",
    ret_other: "Other data",
    ret_collection: "Kept for {period}, counted from collection.",
    ret_last_contact: "Kept for as long as needed, and at most {period} counted from our last contact with you.",
    ret_contract_end: "Kept for {period}, counted from the end of the contract.",
    ret_contract_then_legal: "Kept for the duration of the contract, then for {period} counted from the end of the contract.",
    ret_contract_then_legal_open: "Kept for the duration of the contract, then until the legal retention periods expire.",
    ret_request_reply: "Kept for {period}, counted from the date of our reply to the request.",
    ret_while_open: "Kept only while the request is being handled, then deleted.",
    ret_plain: "Kept for {period}.",
    ret_legal_obligation: "Kept by legal obligation ({gdpr} art. 6(1)(c)): this data stays until the end of this period even if you ask for it to be erased.",
    ret_other_basis: "Legal basis for this data: {basis} ({gdpr} {article}).",
    ret_law: "Required by: {law}.",
    ret_extendable: "Kept longer only if you agree to it.",

    cookies_caption: "Cookies set for “{purpose}”",
    cookie_name: "Name",
    cookie_category: "Category",
    cookie_lifetime: "Lifetime",
    cookie_description: "What it does",
    cookie_provider: "Set by",
    cookie_us: "us",

    cookies_title: "Cookies",
    cookies_intro: "The cookies and scripts of our public site are grouped by category. The scripts of a category only run after you have consented to that category, and you can change your choice at any time.",
    cookies_none: "We set no cookies that need your consent.",
    cookies_after_consent: "Only after your consent.",
    used_for: "Used for",
    cookie_names: "Cookies",
    cat_functional: "Functional",
    cat_analytics: "Analytics",
    cat_targeting: "Targeting",
    cat_functional_text: "Make features you choose to use work across pages.",
    cat_analytics_text: "Measure how our site is used, so that we can improve it.",
    cat_targeting_text: "Measure and target advertising, for example on social networks.",

    rights_title: "Your rights",
    rights_intro: "Under the General Data Protection Regulation (GDPR) you have the following rights over your personal data.",
    applies_to: "Applies to",
    kept_despite_erasure: "Kept despite an erasure request, until its legal deadline",
    cookie_choices: "cookies (through the cookie banner)",
    rights: [
        (
            "Access",
            "GDPR art. 15",
            "Find out whether we process data about you, get a copy of it and learn how we use it.",
        ),
        (
            "Rectification",
            "GDPR art. 16",
            "Have inaccurate data about you corrected, and incomplete data updated or completed.",
        ),
        (
            "Erasure",
            "GDPR art. 17",
            "Have your data deleted when we no longer need it, when you withdraw your consent or object, or when it was processed unlawfully. Data we must keep by law stays until its legal deadline, and we tell you so.",
        ),
        (
            "Restriction",
            "GDPR art. 18",
            "Have us stop using your data, other than storing it, while its accuracy or our grounds are being checked, or while you need it for a legal claim.",
        ),
        (
            "Portability",
            "GDPR art. 20",
            "Receive the data you gave us, for processing based on your consent or on a contract, in a structured, machine-readable format, or have it sent to another organisation.",
        ),
        (
            "Objection",
            "GDPR art. 21",
            "Object at any time, on grounds relating to your situation, to processing based on our legitimate interests: we then stop, unless we have compelling legitimate grounds.",
        ),
        (
            "Withdrawal of consent",
            "GDPR art. 7(3) and 13(2)(c)",
            "Withdraw your consent at any time, as easily as you gave it. This does not affect what was done before.",
        ),
        (
            "Instructions for after your death",
            "Loi Informatique et Libertés, art. 85",
            "Tell us what should happen to your data after your death.",
        ),
    ],

    exercise_title: "How to exercise your rights",
    exercise_intro: "Send us your request:",
    by_email: "by e-mail to",
    by_post: "by post to",
    online_form: "or use",
    online_form_link: "our online request form",
    identity: "To protect your data, every request must come with what we need to confirm your identity:",
    identity_doubt: "If we have reasonable doubts about your identity, we may ask you for more information (GDPR art. 12(6)).",

    handling_title: "How we handle your request",
    reply_within: "We reply within {period} of receiving your request.",
    extension: "Where necessary, given the complexity or the number of requests, this can be extended by up to {period}; we then tell you so within the first deadline, with the reasons (GDPR art. 12(3)).",
    records_kept: "We keep the record of your request and of our reply for {period} from the date of the reply, to be able to prove how it was handled, then delete it.",

    after_death_title: "Instructions for after your death",
    after_death_text: "Under French law (Loi Informatique et Libertés, art. 85), you can give us instructions on what should happen to your personal data after your death, and name a person to carry them out. You can change or withdraw these instructions at any time, in the same way as any other request.",
    after_death_destroy: "Without instructions, we destroy your data once we learn of your death, except what must be kept as evidence or by legal obligation.",
    after_death_keep: "Without instructions, we keep your data until your heirs ask us to delete or update it, except what must be kept as evidence or by legal obligation.",

    complaint_title: "Complaints",
    complaint_text: "If you believe that we do not respect your rights, you can lodge a complaint with a data-protection authority (GDPR art. 77), in particular in the country where you live, where you work or where the problem happened.",
    complaint_authority: "Our supervisory authority:",
    complaint_online: "Lodge a complaint online:",
    complaint_list: "The data-protection authorities of every country of the European Economic Area:",
    complaint_dpo_first: "You are also welcome to contact our data protection officer first.",

    revisions_title: "Revision history",
    revisions_caption: "Changes to this notice, newest first",
    revision_date: "Date",
    revision_change: "Change",
    revisions_none: "This notice has not changed since it was first published.",

    months: [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ],
    period_units: [
        ("hour", "hours"),
        ("day", "days"),
        ("week", "weeks"),
        ("month", "months"),
        ("year", "years"),
    ],
    list_sep: ", ",
    colon: ":",
};

static FR: Strings = Strings {
    lang_name: "Français",
    skip: "Aller au contenu",
    language_nav: "Langue",
    other_language: "Lire cette politique en",
    toc: "Sommaire",
    last_updated: "Dernière mise à jour",
    generated: "Cette politique est produite à partir de notre registre des activités de traitement : c’est ce même registre qui fixe ce que nos systèmes ont le droit de collecter et quand ils le suppriment.",

    who_title: "Qui sommes-nous\u{a0}?",
    controller_intro: "Le responsable du traitement de vos données personnelles est",
    postal_address: "Adresse postale",
    email: "Adresse électronique",
    website: "Site web",
    dpo_title: "Délégué à la protection des données",
    dpo_intro: "Pour toute question sur vos données personnelles, vous pouvez contacter notre délégué à la protection des données (DPO)\u{a0}:",
    name: "Nom",

    purposes_title: "Quelles données traitons-nous, et pourquoi\u{a0}?",
    purposes_intro: "Pour chaque traitement\u{a0}: pourquoi nous traitons vos données, sur quelle base légale, quelles données, combien de temps nous les conservons et qui les reçoit.",
    legal_basis: "Base légale",
    legitimate_interest: "Notre intérêt légitime",
    consent: "Consentement",
    consent_banner: "Uniquement avec votre consentement, demandé dans notre bandeau cookies (catégorie «\u{a0}{category}\u{a0}»). Vous pouvez le retirer à tout moment.",
    subjects: "Personnes concernées",
    categories: "Données traitées",
    retention: "Durée de conservation",
    recipients: "Destinataires",
    source: "Origine des données",
    no_recipients: "Aucun\u{a0}: ces données ne sont jamais communiquées en dehors de {controller}.",
    gdpr: "RGPD",
    basis_consent: "Votre consentement",
    basis_contract: "L’exécution d’un contrat conclu avec vous, ou de mesures précontractuelles prises à votre demande",
    basis_legal_obligation: "Le respect d’une obligation légale à laquelle nous sommes soumis",
    basis_vital_interests: "La sauvegarde des intérêts vitaux d’une personne",
    basis_public_task: "L’exécution d’une mission d’intérêt public",
    basis_legitimate_interest: "Notre intérêt légitime",
    role_processor: "sous-traitant, agissant uniquement sur nos instructions",
    role_controller: "responsable de traitement distinct",
    role_joint_controller: "responsable conjoint du traitement avec nous",
    role_authority: "autorité publique",
    country: "Pays",
    recipient_policy: "Politique de confidentialité de {name}",
    transfer: "Transfert hors de l’Espace économique européen.",
    transfer_safeguards: "Garanties\u{a0}:",

    min_ip_half: "seule la première moitié de l’adresse IP est conservée (par ex. 192.168.xxx.xxx)",
    min_user_agent: "réduit au navigateur, au système d’exploitation et au type d’appareil\u{a0}; la chaîne user-agent complète n’est pas conservée",
    min_url: "conservée sans paramètres de requête ni fragment",
    min_pseudonym: "remplacé par un pseudonyme renouvelé régulièrement",
    min_password: "conservé uniquement sous forme d’empreinte salée, jamais en clair",
    never_stored: "jamais conservées par nous",
    never_stored_by: "jamais conservées par nous\u{a0}: traitées uniquement par {recipients}",

    ret_all: "Toutes les données",
    ret_other: "Autres données",
    ret_collection: "Conservées {period} à compter de leur collecte.",
    ret_last_contact: "Conservées le temps nécessaire, et au plus {period} à compter de notre dernier contact avec vous.",
    ret_contract_end: "Conservées {period} à compter de la fin du contrat.",
    ret_contract_then_legal: "Conservées pendant la durée du contrat, puis {period} à compter de la fin du contrat.",
    ret_contract_then_legal_open: "Conservées pendant la durée du contrat, puis jusqu’à l’expiration des délais légaux de conservation.",
    ret_request_reply: "Conservées {period} à compter de la date de notre réponse à la demande.",
    ret_while_open: "Conservées uniquement le temps de traiter la demande, puis supprimées.",
    ret_plain: "Conservées {period}.",
    ret_legal_obligation: "Conservation imposée par une obligation légale ({gdpr} art. 6(1)(c))\u{a0}: ces données restent conservées jusqu’au terme de ce délai, même si vous en demandez l’effacement.",
    ret_other_basis: "Base légale pour ces données\u{a0}: {basis} ({gdpr} {article}).",
    ret_law: "Texte applicable\u{a0}: {law}.",
    ret_extendable: "Conservées plus longtemps uniquement avec votre accord.",

    cookies_caption: "Cookies déposés pour «\u{a0}{purpose}\u{a0}»",
    cookie_name: "Nom",
    cookie_category: "Catégorie",
    cookie_lifetime: "Durée de vie",
    cookie_description: "Rôle",
    cookie_provider: "Déposé par",
    cookie_us: "nous",

    cookies_title: "Cookies",
    cookies_intro: "Les cookies et scripts de notre site public sont regroupés par catégorie. Les scripts d’une catégorie ne s’exécutent qu’après votre consentement à cette catégorie, et vous pouvez modifier votre choix à tout moment.",
    cookies_none: "Nous ne déposons aucun cookie soumis à votre consentement.",
    cookies_after_consent: "Uniquement après votre consentement.",
    used_for: "Utilisés pour",
    cookie_names: "Cookies",
    cat_functional: "Fonctionnels",
    cat_analytics: "Mesure d’audience",
    cat_targeting: "Ciblage publicitaire",
    cat_functional_text: "Faire fonctionner d’une page à l’autre les services que vous choisissez d’utiliser.",
    cat_analytics_text: "Mesurer l’utilisation de notre site afin de l’améliorer.",
    cat_targeting_text: "Mesurer et cibler la publicité, par exemple sur les réseaux sociaux.",

    rights_title: "Vos droits",
    rights_intro: "Le Règlement général sur la protection des données (RGPD) vous donne les droits suivants sur vos données personnelles.",
    applies_to: "Concerne",
    kept_despite_erasure: "Conservées malgré une demande d’effacement, jusqu’à leur échéance légale",
    cookie_choices: "cookies (via le bandeau cookies)",
    rights: [
        (
            "Droit d’accès",
            "RGPD art. 15",
            "Savoir si nous traitons des données vous concernant, en obtenir une copie et savoir comment nous les utilisons.",
        ),
        (
            "Droit de rectification",
            "RGPD art. 16",
            "Faire corriger les données inexactes vous concernant, et mettre à jour ou compléter les données incomplètes.",
        ),
        (
            "Droit à l’effacement",
            "RGPD art. 17",
            "Faire supprimer vos données lorsque nous n’en avons plus besoin, lorsque vous retirez votre consentement ou vous opposez au traitement, ou lorsqu’elles ont été traitées illicitement. Les données que la loi nous oblige à conserver le restent jusqu’à leur échéance légale, et nous vous le signalons.",
        ),
        (
            "Droit à la limitation",
            "RGPD art. 18",
            "Nous faire cesser toute utilisation de vos données autre que leur conservation, le temps de vérifier leur exactitude ou nos motifs, ou tant que vous en avez besoin pour une action en justice.",
        ),
        (
            "Droit à la portabilité",
            "RGPD art. 20",
            "Recevoir les données que vous nous avez fournies, pour les traitements fondés sur votre consentement ou sur un contrat, dans un format structuré et lisible par machine, ou les faire transmettre à un autre organisme.",
        ),
        (
            "Droit d’opposition",
            "RGPD art. 21",
            "Vous opposer à tout moment, pour des raisons tenant à votre situation particulière, aux traitements fondés sur notre intérêt légitime\u{a0}: nous les arrêtons alors, sauf motifs légitimes et impérieux.",
        ),
        (
            "Retrait du consentement",
            "RGPD art. 7(3) et 13(2)(c)",
            "Retirer votre consentement à tout moment, aussi simplement que vous l’avez donné, sans remettre en cause ce qui a été fait auparavant.",
        ),
        (
            "Directives post mortem",
            "Loi Informatique et Libertés, art. 85",
            "Nous indiquer ce que doivent devenir vos données après votre décès.",
        ),
    ],

    exercise_title: "Comment exercer vos droits",
    exercise_intro: "Adressez-nous votre demande\u{a0}:",
    by_email: "par courrier électronique à",
    by_post: "par courrier postal à",
    online_form: "ou utilisez",
    online_form_link: "notre formulaire de demande en ligne",
    identity: "Pour protéger vos données, toute demande doit être accompagnée de ce qui nous permet de vérifier votre identité\u{a0}:",
    identity_doubt: "En cas de doute raisonnable sur votre identité, nous pouvons vous demander des informations complémentaires (RGPD art. 12(6)).",

    handling_title: "Traitement de votre demande",
    reply_within: "Nous vous répondons dans un délai de {period} à compter de la réception de votre demande.",
    extension: "Si nécessaire, compte tenu de la complexité ou du nombre de demandes, ce délai peut être prolongé de {period} au plus\u{a0}; nous vous en informons alors avant la fin du premier délai, en vous en indiquant les motifs (RGPD art. 12(3)).",
    records_kept: "Nous conservons la trace de votre demande et de notre réponse pendant {period} à compter de la date de la réponse, afin de pouvoir justifier de son traitement, puis nous la supprimons.",

    after_death_title: "Vos directives pour après votre décès",
    after_death_text: "Conformément à l’article 85 de la loi Informatique et Libertés, vous pouvez nous donner des directives sur la conservation, l’effacement et la communication de vos données personnelles après votre décès, et désigner une personne chargée de les exécuter. Vous pouvez les modifier ou les révoquer à tout moment, de la même manière que toute autre demande.",
    after_death_destroy: "En l’absence de directives, nous détruisons vos données dès que nous avons connaissance de votre décès, à l’exception de celles qui doivent être conservées à titre de preuve ou en vertu d’une obligation légale.",
    after_death_keep: "En l’absence de directives, nous conservons vos données jusqu’à ce que vos héritiers nous demandent de les supprimer ou de les mettre à jour, à l’exception de celles qui doivent être conservées à titre de preuve ou en vertu d’une obligation légale.",

    complaint_title: "Réclamation",
    complaint_text: "Si vous estimez que nous ne respectons pas vos droits, vous pouvez introduire une réclamation auprès d’une autorité de protection des données (RGPD art. 77), notamment dans le pays où vous résidez, où vous travaillez ou où le problème s’est produit.",
    complaint_authority: "Notre autorité de contrôle\u{a0}:",
    complaint_online: "Déposer une plainte en ligne\u{a0}:",
    complaint_list: "Les autorités de protection des données de chaque pays de l’Espace économique européen\u{a0}:",
    complaint_dpo_first: "Vous pouvez aussi contacter d’abord notre délégué à la protection des données.",

    revisions_title: "Historique des versions",
    revisions_caption: "Modifications de cette politique, de la plus récente à la plus ancienne",
    revision_date: "Date",
    revision_change: "Modification",
    revisions_none: "Cette politique n’a pas été modifiée depuis sa première publication.",

    months: [
        "janvier",
        "février",
        "mars",
        "avril",
        "mai",
        "juin",
        "juillet",
        "août",
        "septembre",
        "octobre",
        "novembre",
        "décembre",
    ],
    period_units: [
        ("heure", "heures"),
        ("jour", "jours"),
        ("semaine", "semaines"),
        ("mois", "mois"),
        ("an", "ans"),
    ],
    list_sep: ", ",
    colon: "\u{a0}:",
};

fn strings(lang: &str) -> &'static Strings {
    if lang.eq_ignore_ascii_case("fr") || lang.to_ascii_lowercase().starts_with("fr-") {
        &FR
    } else {
        &EN
    }
}

/// Separates category labels in one line (labels often contain commas themselves).
const CATEGORY_SEP: &str = " / ";

/// Replaces `{key}` placeholders.
fn fill(template: &str, values: &[(&str, &str)]) -> String {
    let mut out = template.to_string();
    for (k, v) in values {
        out = out.replace(&format!("{{{k}}}"), v);
    }
    out
}

/// A period in plain language: "180 days" / "180 jours", "1 year" / "1 an".
pub fn period_text(period: &Period, lang: &str) -> String {
    match period {
        Period::Fixed { amount, unit } => {
            let idx = match unit {
                PeriodUnit::Hours => 0,
                PeriodUnit::Days => 1,
                PeriodUnit::Weeks => 2,
                PeriodUnit::Months => 3,
                PeriodUnit::Years => 4,
            };
            let (one, many) = strings(lang).period_units[idx];
            format!("{amount} {}", if *amount == 1 { one } else { many })
        }
        Period::Invalid(s) => s.clone(),
    }
}

/// A date in plain language: "29 November 2026" / "29 novembre 2026" ("1er" for the first).
pub fn date_text(date: Date, lang: &str) -> String {
    let s = strings(lang);
    let month = s.months[(date.month() - 1) as usize];
    let day = if date.day() == 1 && std::ptr::eq(s, &FR) {
        "1er".to_string()
    } else {
        date.day().to_string()
    };
    format!("{day} {month} {}", date.year())
}

fn basis_name(s: &Strings, basis: &LegalBasis) -> String {
    match basis {
        LegalBasis::Consent => s.basis_consent,
        LegalBasis::Contract => s.basis_contract,
        LegalBasis::LegalObligation => s.basis_legal_obligation,
        LegalBasis::VitalInterests => s.basis_vital_interests,
        LegalBasis::PublicTask => s.basis_public_task,
        LegalBasis::LegitimateInterest => s.basis_legitimate_interest,
        LegalBasis::Unknown(other) => other.as_str(),
    }
    .to_string()
}

/// The plain-language name of a legal basis ("Our legitimate interests").
pub fn legal_basis_label(basis: &LegalBasis, lang: &str) -> String {
    basis_name(strings(lang), basis)
}

/// The plain-language role of a recipient ("processor, acting only on our instructions").
pub(crate) fn recipient_role_label(role: &RecipientRole, lang: &str) -> String {
    role_name(strings(lang), role)
}

fn role_name(s: &Strings, role: &RecipientRole) -> String {
    match role {
        RecipientRole::Processor => s.role_processor,
        RecipientRole::Controller => s.role_controller,
        RecipientRole::JointController => s.role_joint_controller,
        RecipientRole::Authority => s.role_authority,
        RecipientRole::Unknown(other) => other.as_str(),
    }
    .to_string()
}

fn cookie_category_name(s: &Strings, cat: &CookieCategory) -> String {
    match cat {
        CookieCategory::Functional => s.cat_functional,
        CookieCategory::Analytics => s.cat_analytics,
        CookieCategory::Targeting => s.cat_targeting,
        CookieCategory::Unknown(other) => other.as_str(),
    }
    .to_string()
}

fn minimisation_note(s: &Strings, rule: &MinimisationRule) -> Option<&'static str> {
    match rule {
        MinimisationRule::IpHalf => Some(s.min_ip_half),
        MinimisationRule::UserAgentSummary => Some(s.min_user_agent),
        MinimisationRule::UrlWithoutQuery => Some(s.min_url),
        MinimisationRule::KeyedPseudonym => Some(s.min_pseudonym),
        MinimisationRule::PasswordHash => Some(s.min_password),
        MinimisationRule::None | MinimisationRule::Unknown(_) => None,
    }
}

/// The countries of the European Economic Area (ISO 3166-1 alpha-2; Greece also as `EL`).
pub(crate) const EEA: &[&str] = &[
    "AT", "BE", "BG", "HR", "CY", "CZ", "DK", "EE", "FI", "FR", "DE", "GR", "EL", "HU", "IE", "IT",
    "LV", "LT", "LU", "MT", "NL", "PL", "PT", "RO", "SK", "SI", "ES", "SE", "IS", "LI", "NO",
];

/// Whether an ISO country code is in the European Economic Area.
pub fn is_eea(country: &str) -> bool {
    EEA.iter().any(|c| c.eq_ignore_ascii_case(country.trim()))
}

const COUNTRY_NAMES: &[(&str, &str, &str)] = &[
    ("AT", "Austria", "Autriche"),
    ("BE", "Belgium", "Belgique"),
    ("BG", "Bulgaria", "Bulgarie"),
    ("HR", "Croatia", "Croatie"),
    ("CY", "Cyprus", "Chypre"),
    ("CZ", "Czechia", "Tchéquie"),
    ("DK", "Denmark", "Danemark"),
    ("EE", "Estonia", "Estonie"),
    ("FI", "Finland", "Finlande"),
    ("FR", "France", "France"),
    ("DE", "Germany", "Allemagne"),
    ("GR", "Greece", "Grèce"),
    ("EL", "Greece", "Grèce"),
    ("HU", "Hungary", "Hongrie"),
    ("IE", "Ireland", "Irlande"),
    ("IT", "Italy", "Italie"),
    ("LV", "Latvia", "Lettonie"),
    ("LT", "Lithuania", "Lituanie"),
    ("LU", "Luxembourg", "Luxembourg"),
    ("MT", "Malta", "Malte"),
    ("NL", "Netherlands", "Pays-Bas"),
    ("PL", "Poland", "Pologne"),
    ("PT", "Portugal", "Portugal"),
    ("RO", "Romania", "Roumanie"),
    ("SK", "Slovakia", "Slovaquie"),
    ("SI", "Slovenia", "Slovénie"),
    ("ES", "Spain", "Espagne"),
    ("SE", "Sweden", "Suède"),
    ("IS", "Iceland", "Islande"),
    ("LI", "Liechtenstein", "Liechtenstein"),
    ("NO", "Norway", "Norvège"),
    ("CH", "Switzerland", "Suisse"),
    ("GB", "United Kingdom", "Royaume-Uni"),
    ("US", "United States", "États-Unis"),
    ("CA", "Canada", "Canada"),
];

fn country_name(code: &str, lang: &str) -> String {
    let fr = std::ptr::eq(strings(lang), &FR);
    COUNTRY_NAMES
        .iter()
        .find(|(c, _, _)| c.eq_ignore_ascii_case(code.trim()))
        .map(|(_, en, f)| if fr { f.to_string() } else { en.to_string() })
        .unwrap_or_else(|| code.trim().to_string())
}

/// Only links with these schemes get an `href`; anything else is shown as text.
fn safe_href(url: &str) -> Option<String> {
    let u = url.trim();
    let lower = u.to_ascii_lowercase();
    (lower.starts_with("https://") || lower.starts_with("http://") || lower.starts_with("mailto:"))
        .then(|| u.to_string())
}

/// An id usable in a URL fragment.
fn anchor_id(prefix: &str, id: &str) -> String {
    let clean: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    format!("{prefix}{clean}")
}

fn join<I: IntoIterator<Item = String>>(items: I, sep: &str) -> String {
    items.into_iter().collect::<Vec<_>>().join(sep)
}

// ---------------------------------------------------------------------------------------------
// The view model: every sentence of the notice, already in the right language.
// ---------------------------------------------------------------------------------------------

/// A piece of text that may be a link (`href` is `None` when the URL's scheme is not safe).
struct Link {
    text: String,
    href: Option<String>,
}

impl Link {
    fn url(url: &str) -> Self {
        Self {
            text: url.to_string(),
            href: safe_href(url),
        }
    }

    fn mail(address: &str) -> Self {
        Self {
            text: address.to_string(),
            href: safe_href(&format!("mailto:{}", address.trim())),
        }
    }
}

struct LangLink {
    code: String,
    name: String,
    href: String,
}

struct TocItem {
    id: String,
    title: String,
    children: Vec<TocItem>,
}

struct CategoryView {
    label: String,
    notes: Vec<String>,
}

struct RetentionView {
    /// Which data the rule covers (`None` when it is the only rule of the purpose).
    scope: Option<String>,
    text: String,
    notes: Vec<String>,
}

struct RecipientView {
    name: String,
    role: String,
    service: String,
    country: Option<String>,
    policy: Option<Link>,
    transfer: Option<String>,
}

struct CookieView {
    name: String,
    category: String,
    lifetime: String,
    description: String,
    provider: String,
}

struct PurposeView {
    anchor: String,
    label: String,
    description: String,
    basis: String,
    basis_article: String,
    legitimate_interest: Option<String>,
    consent: Option<String>,
    subjects: String,
    categories: Vec<CategoryView>,
    retention: Vec<RetentionView>,
    recipients: Vec<RecipientView>,
    no_recipients: String,
    cookies_caption: String,
    cookies: Vec<CookieView>,
    source: String,
}

struct CookieCategoryView {
    anchor: String,
    name: String,
    explanation: String,
    purposes: String,
    cookies: String,
}

struct RightView {
    anchor: String,
    name: String,
    article: String,
    explanation: String,
    /// Extra facts computed from the register.
    facts: Vec<RightFact>,
}

/// A fact about a right computed from the register: a label, then either a short inline text
/// or a list.
struct RightFact {
    label: String,
    inline: String,
    items: Vec<String>,
}

struct RevisionView {
    iso: String,
    text: String,
    summary: String,
}

#[derive(Template)]
#[template(path = "notice.html")]
struct View {
    s: &'static Strings,
    lang: String,
    title: String,
    introduction: String,
    css_href: String,
    form_href: Option<String>,
    languages: Vec<LangLink>,
    last_updated_iso: String,
    last_updated: String,
    toc: Vec<TocItem>,

    controller_name: String,
    controller_entity: Option<String>,
    controller_address: String,
    controller_email: Link,
    controller_website: Option<Link>,
    dpo_name: Option<String>,
    dpo_email: Link,
    dpo_address: String,

    purposes: Vec<PurposeView>,
    cookie_categories: Vec<CookieCategoryView>,
    rights: Vec<RightView>,

    rights_email: Link,
    rights_address: String,
    identity_proof: String,
    /// The art. 12(6) sentence, unless the register's own identity text already says it.
    identity_doubt: Option<String>,
    handling: Vec<String>,
    after_death: Vec<String>,

    authority_name: String,
    authority_website: Link,
    complaint_url: Link,
    authorities_list: Link,

    revisions: Vec<RevisionView>,
}

impl View {
    fn build(reg: &Register, ctx: &NoticeContext) -> Self {
        let lang = resolve_language(reg, ctx.lang);
        let lang = lang.as_str();
        let s = strings(lang);
        let base = ctx.base_path.trim_end_matches('/');
        let controller = reg.controller.name.clone();

        let languages = supported_languages(reg)
            .iter()
            .filter(|l| !l.eq_ignore_ascii_case(lang))
            .map(|l| LangLink {
                code: l.clone(),
                name: strings(l).lang_name.to_string(),
                href: format!("{base}/privacy?lang={l}"),
            })
            .collect();

        let purposes: Vec<PurposeView> = reg
            .purposes
            .iter()
            .map(|p| purpose_view(reg, p, lang, s))
            .collect();

        let cookie_categories: Vec<CookieCategoryView> = reg
            .cookie_categories()
            .iter()
            .map(|cat| {
                let users: Vec<&Purpose> = reg
                    .purposes
                    .iter()
                    .filter(|p| {
                        p.consent_category.as_ref() == Some(cat)
                            || p.cookies.iter().any(|c| &c.category == cat)
                    })
                    .collect();
                let cookies = users
                    .iter()
                    .flat_map(|p| p.cookies.iter().filter(|c| &c.category == cat))
                    .map(|c| c.name.clone());
                CookieCategoryView {
                    anchor: anchor_id("cookies-", cat.as_str()),
                    name: cookie_category_name(s, cat),
                    explanation: match cat {
                        CookieCategory::Functional => s.cat_functional_text,
                        CookieCategory::Analytics => s.cat_analytics_text,
                        CookieCategory::Targeting => s.cat_targeting_text,
                        CookieCategory::Unknown(_) => "",
                    }
                    .to_string(),
                    purposes: join(
                        users.iter().map(|p| p.label.get(lang).to_string()),
                        s.list_sep,
                    ),
                    cookies: join(cookies, s.list_sep),
                }
            })
            .collect();

        let rights = rights_views(reg, lang, s);

        let handling = vec![
            fill(
                s.reply_within,
                &[("period", &period_text(&reg.rights.reply_within, lang))],
            ),
            fill(
                s.extension,
                &[("period", &period_text(&reg.rights.max_extension, lang))],
            ),
            fill(
                s.records_kept,
                &[(
                    "period",
                    &period_text(&reg.rights.request_records_kept, lang),
                )],
            ),
        ];
        let after_death = vec![
            s.after_death_text.to_string(),
            match reg.rights.after_death {
                AfterDeath::KeepUntilHeirsAsk => s.after_death_keep,
                _ => s.after_death_destroy,
            }
            .to_string(),
        ];

        // Newest first; equal dates: the one listed last is the newer.
        let mut revs: Vec<(usize, &crate::register::Revision)> =
            reg.revisions.iter().enumerate().collect();
        revs.sort_by(|(ia, a), (ib, b)| b.date.cmp(&a.date).then(ib.cmp(ia)));
        let revisions = revs
            .into_iter()
            .map(|(_, r)| RevisionView {
                iso: r.date.clone(),
                text: r
                    .date
                    .parse::<Date>()
                    .map(|d| date_text(d, lang))
                    .unwrap_or_else(|_| r.date.clone()),
                summary: r.summary.get(lang).to_string(),
            })
            .collect();

        let mut toc = vec![
            TocItem::new("who-we-are", s.who_title),
            TocItem {
                id: "purposes".into(),
                title: s.purposes_title.into(),
                children: purposes
                    .iter()
                    .map(|p| TocItem::new(&p.anchor, &p.label))
                    .collect(),
            },
            TocItem::new("cookies", s.cookies_title),
            TocItem {
                id: "rights".into(),
                title: s.rights_title.into(),
                children: vec![],
            },
            TocItem::new("exercise", s.exercise_title),
            TocItem::new("handling", s.handling_title),
            TocItem::new("after-death", s.after_death_title),
            TocItem::new("complaints", s.complaint_title),
            TocItem::new("revisions", s.revisions_title),
        ];
        toc.retain(|t| !t.title.is_empty());

        View {
            s,
            lang: lang.to_string(),
            title: reg.notice.title.get(lang).to_string(),
            introduction: reg.notice.introduction.get(lang).to_string(),
            css_href: format!("{base}/assets/notice.css"),
            form_href: ctx.rights_form.map(str::to_string),
            languages,
            last_updated_iso: ctx.last_updated.to_string(),
            last_updated: date_text(ctx.last_updated, lang),
            toc,
            controller_name: controller,
            controller_entity: reg.controller.legal_entity.clone(),
            controller_address: reg.controller.postal_address.clone(),
            controller_email: Link::mail(&reg.controller.email),
            controller_website: reg.controller.website.as_deref().map(Link::url),
            dpo_name: reg.controller.dpo.name.clone(),
            dpo_email: Link::mail(&reg.controller.dpo.email),
            dpo_address: reg.controller.dpo.postal_address.clone(),
            purposes,
            cookie_categories,
            rights,
            rights_email: Link::mail(&reg.rights.email),
            rights_address: reg.rights.postal_address.clone(),
            identity_proof: reg.rights.identity_proof.get(lang).to_string(),
            identity_doubt: (!reg.rights.identity_proof.get(lang).contains("12(6)"))
                .then(|| s.identity_doubt.to_string()),
            handling,
            after_death,
            authority_name: reg.authority.name.get(lang).to_string(),
            authority_website: Link::url(&reg.authority.website),
            complaint_url: Link::url(&reg.authority.complaint_url),
            authorities_list: Link::url(&reg.authority.authorities_list_url),
            revisions,
        }
    }
}

impl TocItem {
    fn new(id: &str, title: &str) -> Self {
        Self {
            id: id.to_string(),
            title: title.to_string(),
            children: vec![],
        }
    }
}

fn purpose_view(reg: &Register, p: &Purpose, lang: &str, s: &Strings) -> PurposeView {
    let label = p.label.get(lang).to_string();
    let recipient_names = join(
        p.recipients
            .iter()
            .filter_map(|id| reg.recipient(id))
            .map(|r| r.name.clone()),
        s.list_sep,
    );

    let categories = p
        .categories
        .iter()
        .map(|id| {
            let Some(cat) = reg.category(id) else {
                return CategoryView {
                    label: id.clone(),
                    notes: vec![],
                };
            };
            let mut notes = Vec::new();
            if cat.never_store {
                notes.push(if recipient_names.is_empty() {
                    s.never_stored.to_string()
                } else {
                    fill(s.never_stored_by, &[("recipients", &recipient_names)])
                });
            }
            if let Some(note) = cat.minimise.as_ref().and_then(|m| minimisation_note(s, m)) {
                notes.push(note.to_string());
            }
            CategoryView {
                label: cat.label.get(lang).to_string(),
                notes,
            }
        })
        .collect();

    let single_rule = p.retention.len() == 1 && p.retention[0].categories.is_empty();
    let has_scoped = p.retention.iter().any(|r| !r.categories.is_empty());
    // Rules for named categories first, so that "Other data" reads after them.
    let ordered = p
        .retention
        .iter()
        .filter(|r| !r.categories.is_empty())
        .chain(p.retention.iter().filter(|r| r.categories.is_empty()));
    let retention = ordered
        .map(|rule| {
            let scope = if single_rule {
                None
            } else if rule.categories.is_empty() {
                Some(if has_scoped { s.ret_other } else { s.ret_all }.to_string())
            } else {
                Some(join(
                    rule.categories.iter().map(|c| {
                        reg.category(c)
                            .map(|c| c.label.get(lang).to_string())
                            .unwrap_or_else(|| c.clone())
                    }),
                    CATEGORY_SEP,
                ))
            };
            RetentionView {
                scope,
                text: retention_sentence(rule, lang, s),
                notes: retention_notes(rule, &p.legal_basis, lang, s),
            }
        })
        .collect();

    let recipients = p
        .recipients
        .iter()
        .map(|id| {
            let Some(r) = reg.recipient(id) else {
                return RecipientView {
                    name: id.clone(),
                    role: String::new(),
                    service: String::new(),
                    country: None,
                    policy: None,
                    transfer: None,
                };
            };
            let outside = r.country.as_deref().is_some_and(|c| !is_eea(c));
            let transfer = if outside || r.transfer_safeguards.is_some() {
                let mut t = s.transfer.to_string();
                if let Some(g) = &r.transfer_safeguards {
                    t.push(' ');
                    t.push_str(s.transfer_safeguards);
                    t.push(' ');
                    t.push_str(g.get(lang));
                }
                Some(t)
            } else {
                None
            };
            RecipientView {
                name: r.name.clone(),
                role: role_name(s, &r.role),
                service: r.service.get(lang).to_string(),
                country: r.country.as_deref().map(|c| country_name(c, lang)),
                policy: r.policy_url.as_deref().map(|u| Link {
                    text: fill(s.recipient_policy, &[("name", &r.name)]),
                    href: safe_href(u),
                }),
                transfer,
            }
        })
        .collect();

    let cookies = p
        .cookies
        .iter()
        .map(|c| CookieView {
            name: c.name.clone(),
            category: cookie_category_name(s, &c.category),
            lifetime: period_text(&c.lifetime, lang),
            description: c.description.get(lang).to_string(),
            provider: match c.provider.as_deref() {
                None | Some("first-party") | Some("first_party") => {
                    format!("{} ({})", s.cookie_us, reg.controller.name)
                }
                Some(id) => reg
                    .recipient(id)
                    .map(|r| r.name.clone())
                    .unwrap_or_else(|| id.to_string()),
            },
        })
        .collect();

    PurposeView {
        anchor: anchor_id("purpose-", &p.id),
        description: p.description.get(lang).to_string(),
        basis: basis_name(s, &p.legal_basis),
        basis_article: format!("{} {}", s.gdpr, p.legal_basis.article()),
        legitimate_interest: p
            .legitimate_interest
            .as_ref()
            .map(|t| t.get(lang).to_string())
            .filter(|t| !t.trim().is_empty()),
        consent: p.consent_category.as_ref().map(|c| {
            fill(
                s.consent_banner,
                &[("category", &cookie_category_name(s, c))],
            )
        }),
        subjects: join(
            p.subjects.iter().map(|id| {
                reg.subject_type(id)
                    .map(|t| t.label.get(lang).to_string())
                    .unwrap_or_else(|| id.clone())
            }),
            s.list_sep,
        ),
        categories,
        retention,
        recipients,
        no_recipients: fill(s.no_recipients, &[("controller", &reg.controller.name)]),
        cookies_caption: fill(s.cookies_caption, &[("purpose", &label)]),
        cookies,
        source: p.source.get(lang).to_string(),
        label,
    }
}

/// A retention rule in plain language ("Kept for 1 year, counted from collection. Kept by legal
/// obligation…"), as the notice states it.
pub fn retention_text(rule: &RetentionRule, purpose_basis: &LegalBasis, lang: &str) -> String {
    let s = strings(lang);
    let mut out = retention_sentence(rule, lang, s);
    for note in retention_notes(rule, purpose_basis, lang, s) {
        out.push(' ');
        out.push_str(&note);
    }
    out
}

/// The main sentence of a retention rule: period and what it is counted from.
fn retention_sentence(rule: &RetentionRule, lang: &str, s: &Strings) -> String {
    let period = rule.keep.as_ref().map(|p| period_text(p, lang));
    let with = |t: &str| fill(t, &[("period", period.as_deref().unwrap_or(""))]);
    match (&rule.from, &period) {
        (Anchor::WhileOpen, _) => s.ret_while_open.to_string(),
        (Anchor::ContractThenLegal, None) => s.ret_contract_then_legal_open.to_string(),
        (_, None) => s.ret_while_open.to_string(),
        (Anchor::Collection, Some(_)) => with(s.ret_collection),
        (Anchor::LastContact, Some(_)) => with(s.ret_last_contact),
        (Anchor::ContractEnd, Some(_)) => with(s.ret_contract_end),
        (Anchor::ContractThenLegal, Some(_)) => with(s.ret_contract_then_legal),
        (Anchor::RequestReply, Some(_)) => with(s.ret_request_reply),
        (Anchor::Unknown(_), Some(_)) => with(s.ret_plain),
    }
}

fn retention_notes(
    rule: &RetentionRule,
    purpose_basis: &LegalBasis,
    lang: &str,
    s: &Strings,
) -> Vec<String> {
    let mut notes = Vec::new();
    // "Until the end of this period" only makes sense for a rule that has a period.
    let has_period = rule.keep.is_some() && !matches!(rule.from, Anchor::WhileOpen);
    if rule.is_legal_obligation(purpose_basis) && has_period {
        notes.push(fill(s.ret_legal_obligation, &[("gdpr", s.gdpr)]));
    } else if let Some(b) = rule.basis.as_ref().filter(|b| *b != purpose_basis) {
        notes.push(fill(
            s.ret_other_basis,
            &[
                ("basis", &basis_name(s, b)),
                ("gdpr", s.gdpr),
                ("article", b.article()),
            ],
        ));
    }
    if let Some(law) = rule
        .law
        .as_ref()
        .map(|l| l.get(lang))
        .filter(|l| !l.trim().is_empty())
    {
        notes.push(fill(s.ret_law, &[("law", law.trim_end_matches('.'))]));
    }
    if rule.extendable_with_consent {
        notes.push(s.ret_extendable.to_string());
    }
    if let Some(note) = rule
        .note
        .as_ref()
        .map(|n| n.get(lang))
        .filter(|n| !n.trim().is_empty())
    {
        notes.push(note.to_string());
    }
    notes
}

fn rights_views(reg: &Register, lang: &str, s: &Strings) -> Vec<RightView> {
    let labels = |f: &dyn Fn(&Purpose) -> bool| -> String {
        join(
            reg.purposes
                .iter()
                .filter(|p| f(p))
                .map(|p| p.label.get(lang).to_string()),
            s.list_sep,
        )
    };
    let provided = |p: &Purpose| {
        p.categories
            .iter()
            .filter_map(|c| reg.category(c))
            .any(|c| c.provided_by_subject && !c.never_store)
    };
    let portability = labels(&|p| {
        matches!(p.legal_basis, LegalBasis::Consent | LegalBasis::Contract) && provided(p)
    });
    let objection = labels(&|p| {
        matches!(
            p.legal_basis,
            LegalBasis::LegitimateInterest | LegalBasis::PublicTask
        )
    });
    let mut consent =
        labels(&|p| matches!(p.legal_basis, LegalBasis::Consent) || p.consent_category.is_some());
    if !reg.cookie_categories().is_empty() {
        if !consent.is_empty() {
            consent.push_str(s.list_sep);
        }
        consent.push_str(s.cookie_choices);
    }
    let kept: Vec<String> = reg
        .purposes
        .iter()
        .flat_map(|p| {
            p.retention
                .iter()
                .filter(|r| {
                    r.is_legal_obligation(&p.legal_basis)
                        && r.keep.is_some()
                        && !matches!(r.from, Anchor::WhileOpen)
                })
                .map(move |r| {
                    let what = if r.categories.is_empty() {
                        p.label.get(lang).to_string()
                    } else {
                        format!(
                            "{} — {}",
                            p.label.get(lang),
                            join(
                                r.categories.iter().map(|c| reg
                                    .category(c)
                                    .map(|c| c.label.get(lang).to_string())
                                    .unwrap_or_else(|| c.clone())),
                                CATEGORY_SEP
                            )
                        )
                    };
                    match &r.keep {
                        Some(k) => format!("{what}{} {}", s.colon, period_text(k, lang)),
                        None => what,
                    }
                })
        })
        .collect();

    RIGHT_IDS
        .iter()
        .zip(s.rights.iter())
        .map(|(id, (name, article, explanation))| {
            let mut facts = Vec::new();
            let inline = |label: &str, text: &str| RightFact {
                label: label.to_string(),
                inline: text.to_string(),
                items: vec![],
            };
            let fact = match *id {
                "portability" => Some(inline(s.applies_to, &portability)),
                "objection" => Some(inline(s.applies_to, &objection)),
                "withdraw-consent" => Some(inline(s.applies_to, &consent)),
                "erasure" => Some(RightFact {
                    label: s.kept_despite_erasure.to_string(),
                    inline: String::new(),
                    items: kept.clone(),
                }),
                _ => None,
            };
            if let Some(f) = fact.filter(|f| !f.inline.is_empty() || !f.items.is_empty()) {
                facts.push(f);
            }
            RightView {
                anchor: format!("right-{id}"),
                name: name.to_string(),
                article: article.to_string(),
                explanation: explanation.to_string(),
                facts,
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Markdown
// ---------------------------------------------------------------------------------------------

/// Escapes register text for use inline in Markdown (CommonMark + GFM tables).
fn md(text: &str) -> String {
    // Line breaks would end a list item or a table row; no-break spaces are kept.
    let text = text.split_ascii_whitespace().collect::<Vec<_>>().join(" ");
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if matches!(
            c,
            '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '|' | '#' | '&' | '~' | '!'
        ) {
            out.push('\\');
        }
        out.push(c);
    }
    // A paragraph must not start a list, a heading or a block quote.
    let starts_block = out.starts_with(['-', '+', '=']) || {
        let digits = out.chars().take_while(char::is_ascii_digit).count();
        digits > 0 && matches!(out[digits..].chars().next(), Some('.' | ')'))
    };
    if starts_block {
        let digits = out.chars().take_while(char::is_ascii_digit).count();
        let at = if out.starts_with(['-', '+', '=']) {
            0
        } else {
            digits
        };
        out.insert(at, '\\');
    }
    out
}

/// A Markdown link, or plain text when the URL is not safe.
fn md_link(link: &Link) -> String {
    match &link.href {
        Some(href) => {
            let href: String = href
                .chars()
                .map(|c| match c {
                    ' ' => "%20".to_string(),
                    '(' => "%28".to_string(),
                    ')' => "%29".to_string(),
                    '<' => "%3C".to_string(),
                    '>' => "%3E".to_string(),
                    c => c.to_string(),
                })
                .collect();
            format!("[{}]({href})", md(&link.text))
        }
        None => md(&link.text),
    }
}

impl View {
    fn markdown(&self) -> String {
        let s = self.s;
        let c = s.colon;
        let mut o = String::new();
        let _ = self.write_markdown(&mut o, s, c);
        o
    }

    fn write_markdown(&self, o: &mut String, s: &Strings, c: &str) -> std::fmt::Result {
        writeln!(o, "# {}\n", md(&self.title))?;
        if !self.languages.is_empty() {
            let links = join(
                self.languages
                    .iter()
                    .map(|l| format!("[{}]({})", md(&l.name), l.href)),
                " · ",
            );
            writeln!(o, "*{}{c} {links}*\n", md(s.other_language))?;
        }
        writeln!(o, "{}\n", md(&self.introduction))?;
        writeln!(o, "**{}{c}** {}\n", md(s.last_updated), self.last_updated)?;

        writeln!(o, "## {}\n", md(s.who_title))?;
        let entity = self
            .controller_entity
            .as_deref()
            .map(|e| format!(" ({})", md(e)))
            .unwrap_or_default();
        writeln!(
            o,
            "{} **{}**{entity}.\n",
            md(s.controller_intro),
            md(&self.controller_name)
        )?;
        writeln!(
            o,
            "- **{}{c}** {}",
            md(s.postal_address),
            md(&self.controller_address)
        )?;
        writeln!(
            o,
            "- **{}{c}** {}",
            md(s.email),
            md_link(&self.controller_email)
        )?;
        if let Some(w) = &self.controller_website {
            writeln!(o, "- **{}{c}** {}", md(s.website), md_link(w))?;
        }
        writeln!(o, "\n### {}\n", md(s.dpo_title))?;
        writeln!(o, "{}\n", md(s.dpo_intro))?;
        if let Some(n) = &self.dpo_name {
            writeln!(o, "- **{}{c}** {}", md(s.name), md(n))?;
        }
        writeln!(o, "- **{}{c}** {}", md(s.email), md_link(&self.dpo_email))?;
        writeln!(
            o,
            "- **{}{c}** {}\n",
            md(s.postal_address),
            md(&self.dpo_address)
        )?;

        writeln!(o, "## {}\n", md(s.purposes_title))?;
        writeln!(o, "{}\n", md(s.purposes_intro))?;
        for p in &self.purposes {
            writeln!(o, "### {}\n", md(&p.label))?;
            writeln!(o, "{}\n", md(&p.description))?;
            writeln!(
                o,
                "- **{}{c}** {} ({})",
                md(s.legal_basis),
                md(&p.basis),
                md(&p.basis_article)
            )?;
            if let Some(li) = &p.legitimate_interest {
                writeln!(o, "- **{}{c}** {}", md(s.legitimate_interest), md(li))?;
            }
            if let Some(cons) = &p.consent {
                writeln!(o, "- **{}{c}** {}", md(s.consent), md(cons))?;
            }
            if !p.subjects.is_empty() {
                writeln!(o, "- **{}{c}** {}", md(s.subjects), md(&p.subjects))?;
            }
            writeln!(o, "- **{}{c}**", md(s.categories))?;
            for cat in &p.categories {
                if cat.notes.is_empty() {
                    writeln!(o, "  - {}", md(&cat.label))?;
                } else {
                    writeln!(
                        o,
                        "  - {} — *{}*",
                        md(&cat.label),
                        md(&cat.notes.join("; "))
                    )?;
                }
            }
            writeln!(o, "- **{}{c}**", md(s.retention))?;
            for r in &p.retention {
                let scope = r
                    .scope
                    .as_deref()
                    .map(|sc| format!("**{}{c}** ", md(sc)))
                    .unwrap_or_default();
                let mut line = format!("  - {scope}{}", md(&r.text));
                for n in &r.notes {
                    line.push(' ');
                    line.push_str(&md(n));
                }
                writeln!(o, "{line}")?;
            }
            if p.recipients.is_empty() {
                writeln!(o, "- **{}{c}** {}", md(s.recipients), md(&p.no_recipients))?;
            } else {
                writeln!(o, "- **{}{c}**", md(s.recipients))?;
                for r in &p.recipients {
                    let mut line = format!("  - **{}**", md(&r.name));
                    if !r.role.is_empty() {
                        write!(line, " ({})", md(&r.role))?;
                    }
                    if !r.service.is_empty() {
                        write!(line, "{c} {}", md(&r.service))?;
                    }
                    if let Some(country) = &r.country {
                        write!(line, " — {}{c} {}", md(s.country), md(country))?;
                    }
                    if let Some(policy) = &r.policy {
                        write!(line, " — {}", md_link(policy))?;
                    }
                    if let Some(t) = &r.transfer {
                        write!(line, " — {}", md(t))?;
                    }
                    writeln!(o, "{line}")?;
                }
            }
            writeln!(o, "- **{}{c}** {}\n", md(s.source), md(&p.source))?;
            if !p.cookies.is_empty() {
                writeln!(o, "*{}*\n", md(&p.cookies_caption))?;
                writeln!(
                    o,
                    "| {} | {} | {} | {} | {} |\n|---|---|---|---|---|",
                    md(s.cookie_name),
                    md(s.cookie_category),
                    md(s.cookie_lifetime),
                    md(s.cookie_description),
                    md(s.cookie_provider)
                )?;
                for ck in &p.cookies {
                    writeln!(
                        o,
                        "| `{}` | {} | {} | {} | {} |",
                        ck.name.replace(['`', '|', '\n'], ""),
                        md(&ck.category),
                        md(&ck.lifetime),
                        md(&ck.description),
                        md(&ck.provider)
                    )?;
                }
                writeln!(o)?;
            }
        }

        writeln!(o, "## {}\n", md(s.cookies_title))?;
        if self.cookie_categories.is_empty() {
            writeln!(o, "{}\n", md(s.cookies_none))?;
        } else {
            writeln!(o, "{}\n", md(s.cookies_intro))?;
            for cat in &self.cookie_categories {
                writeln!(o, "### {}\n", md(&cat.name))?;
                writeln!(
                    o,
                    "{} **{}**\n",
                    md(&cat.explanation),
                    md(s.cookies_after_consent)
                )?;
                if !cat.purposes.is_empty() {
                    writeln!(o, "- **{}{c}** {}", md(s.used_for), md(&cat.purposes))?;
                }
                if !cat.cookies.is_empty() {
                    writeln!(o, "- **{}{c}** {}", md(s.cookie_names), md(&cat.cookies))?;
                }
                writeln!(o)?;
            }
        }

        writeln!(o, "## {}\n", md(s.rights_title))?;
        writeln!(o, "{}\n", md(s.rights_intro))?;
        for r in &self.rights {
            let mut line = format!(
                "- **{}** ({}){c} {}",
                md(&r.name),
                md(&r.article),
                md(&r.explanation)
            );
            for f in &r.facts {
                if f.items.is_empty() {
                    write!(line, " *{}{c}* {}.", md(&f.label), md(&f.inline))?;
                } else {
                    write!(line, " *{}{c}*", md(&f.label))?;
                    for item in &f.items {
                        write!(line, "\n  - {}", md(item))?;
                    }
                }
            }
            writeln!(o, "{line}")?;
        }
        writeln!(o)?;

        writeln!(o, "## {}\n", md(s.exercise_title))?;
        writeln!(o, "{}\n", md(s.exercise_intro))?;
        writeln!(o, "- {} {}", md(s.by_email), md_link(&self.rights_email))?;
        writeln!(o, "- {} {}", md(s.by_post), md(&self.rights_address))?;
        if let Some(href) = &self.form_href {
            writeln!(
                o,
                "- {} [{}]({})",
                md(s.online_form),
                md(s.online_form_link),
                href
            )?;
        }
        writeln!(o)?;
        writeln!(o, "{} {}\n", md(s.identity), md(&self.identity_proof))?;
        if let Some(d) = &self.identity_doubt {
            writeln!(o, "{}\n", md(d))?;
        }

        writeln!(o, "## {}\n", md(s.handling_title))?;
        for h in &self.handling {
            writeln!(o, "{}\n", md(h))?;
        }

        writeln!(o, "## {}\n", md(s.after_death_title))?;
        for a in &self.after_death {
            writeln!(o, "{}\n", md(a))?;
        }

        writeln!(o, "## {}\n", md(s.complaint_title))?;
        writeln!(o, "{}\n", md(s.complaint_text))?;
        writeln!(
            o,
            "- {} **{}** ({})",
            md(s.complaint_authority),
            md(&self.authority_name),
            md_link(&self.authority_website)
        )?;
        writeln!(
            o,
            "- {} {}",
            md(s.complaint_online),
            md_link(&self.complaint_url)
        )?;
        writeln!(
            o,
            "- {} {}\n",
            md(s.complaint_list),
            md_link(&self.authorities_list)
        )?;
        writeln!(o, "{}\n", md(s.complaint_dpo_first))?;

        writeln!(o, "## {}\n", md(s.revisions_title))?;
        if self.revisions.is_empty() {
            writeln!(o, "{}\n", md(s.revisions_none))?;
        } else {
            writeln!(o, "*{}*\n", md(s.revisions_caption))?;
            writeln!(
                o,
                "| {} | {} |\n|---|---|",
                md(s.revision_date),
                md(s.revision_change)
            )?;
            for r in &self.revisions {
                writeln!(o, "| {} | {} |", md(&r.text), md(&r.summary))?;
            }
            writeln!(o)?;
        }
        writeln!(o, "---\n\n*{}*", md(s.generated))?;
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A small register that uses every feature of the model the notice renders.
    pub(crate) const FIXTURE: &str = r#"
schema = 1

[controller]
name = "Acme Hosting SAS"
legal_entity = "SAS, RCS Lyon 123 456 789"
postal_address = "1 rue de la Paix, 69001 Lyon, France"
email = "privacy@acme.example"
website = "https://acme.example"

[controller.dpo]
name = "Alex Martin"
email = "dpo@acme.example"
postal_address = "DPO, 1 rue de la Paix, 69001 Lyon, France"

[authority]
name.en = "CNIL (French data-protection authority)"
name.fr = "CNIL"
website = "https://www.cnil.fr"
complaint_url = "https://www.cnil.fr/fr/plaintes"
authorities_list_url = "https://www.edpb.europa.eu/about-edpb/about-edpb/members_en"

[notice]
languages = ["en", "fr"]
default_language = "en"
title.en = "Privacy notice"
title.fr = "Politique de confidentialité"
introduction.en = "How Acme handles your personal data."
introduction.fr = "Comment Acme traite vos données personnelles."

[rights]
reply_within = "1 month"
max_extension = "2 months"
request_records_kept = "1 year"
after_death = "destroy"
email = "rights@acme.example"
postal_address = "Acme Hosting SAS, Rights, 1 rue de la Paix, 69001 Lyon"
identity_proof.en = "Write from your account's e-mail address."
identity_proof.fr = "Écrivez depuis l'adresse e-mail de votre compte."

[[subjects]]
id = "visitor"
label.en = "Website visitors"
label.fr = "Visiteurs du site"

[[subjects]]
id = "customer"
label.en = "Customers"
label.fr = "Clients"

[[subjects]]
id = "candidate"
label.en = "Job applicants"
label.fr = "Candidats"

[[categories]]
id = "ip_half"
label.en = "Truncated IP address"
label.fr = "Adresse IP tronquée"
minimise = "ip_half"

[[categories]]
id = "ip"
label.en = "IP address"
label.fr = "Adresse IP"
sensitivity = "identifier"

[[categories]]
id = "email"
label.en = "E-mail address"
label.fr = "Adresse e-mail"
sensitivity = "identifier"
provided_by_subject = true

[[categories]]
id = "card"
label.en = "Card number"
label.fr = "Numéro de carte"
sensitivity = "high"
never_store = true

[[categories]]
id = "resume"
label.en = "Résumé"
label.fr = "CV"
provided_by_subject = true

[[categories]]
id = "request"
label.en = "Request records"
label.fr = "Traces des demandes"

[[recipients]]
id = "payco"
name = "PayCo Ltd"
role = "processor"
service.en = "Card payments"
service.fr = "Paiements par carte"
policy_url = "https://payco.example/privacy"
country = "US"
transfer_safeguards.en = "Standard contractual clauses"
transfer_safeguards.fr = "Clauses contractuelles types"

[[recipients]]
id = "chatco"
name = "ChatCo SAS"
role = "processor"
service.en = "Live chat"
service.fr = "Messagerie instantanée"
country = "FR"

[[purposes]]
id = "stats"
label.en = "Audience statistics"
label.fr = "Statistiques d'audience"
description.en = "Count visits."
description.fr = "Compter les visites."
legal_basis = "legitimate_interest"
legitimate_interest.en = "Improving the site."
legitimate_interest.fr = "Améliorer le site."
subjects = ["visitor"]
categories = ["ip_half"]
source.en = "Your browser."
source.fr = "Votre navigateur."
[[purposes.retention]]
from = "collection"
keep = "180 days"
[[purposes.cookies]]
name = "_pk_id"
category = "analytics"
lifetime = "13 months"
provider = "first-party"
description.en = "Recognises returning visitors."
description.fr = "Reconnaît les visiteurs qui reviennent."

[[purposes]]
id = "security"
label.en = "Platform security"
label.fr = "Sécurité de la plateforme"
description.en = "Detect intrusions."
description.fr = "Détecter les intrusions."
legal_basis = "legitimate_interest"
legitimate_interest.en = "Keeping the platform safe."
legitimate_interest.fr = "Assurer la sécurité de la plateforme."
subjects = ["visitor", "customer"]
categories = ["ip", "email"]
source.en = "Our servers' logs."
source.fr = "Les journaux de nos serveurs."
[[purposes.retention]]
from = "collection"
keep = "6 months"
[[purposes.retention]]
categories = ["ip"]
from = "collection"
keep = "1 year"
basis = "legal_obligation"
law.en = "LCEN art. 6"
law.fr = "LCEN art. 6"

[[purposes]]
id = "accounts"
label.en = "Customer accounts and billing"
label.fr = "Comptes clients et facturation"
description.en = "Manage accounts and bill."
description.fr = "Gérer les comptes et facturer."
legal_basis = "contract"
subjects = ["customer"]
categories = ["email", "card"]
recipients = ["payco", "chatco"]
source.en = "You."
source.fr = "Vous-même."
[[purposes.retention]]
from = "contract_then_legal"
keep = "10 years"
basis = "legal_obligation"
law.en = "Commercial code art. L123-22"
law.fr = "Code de commerce art. L123-22"
[[purposes.cookies]]
name = "chat_session"
category = "functional"
lifetime = "6 months"
provider = "chatco"
description.en = "Keeps the chat open across pages."
description.fr = "Garde la discussion ouverte d'une page à l'autre."

[[purposes]]
id = "recruitment"
label.en = "Recruitment"
label.fr = "Recrutement"
description.en = "Examine applications."
description.fr = "Étudier les candidatures."
legal_basis = "contract"
subjects = ["candidate"]
categories = ["email", "resume"]
source.en = "You, when you apply."
source.fr = "Vous-même, lors de votre candidature."
[[purposes.retention]]
from = "last_contact"
keep = "12 months"
extendable_with_consent = true

[[purposes]]
id = "requests"
label.en = "Rights requests"
label.fr = "Demandes d'exercice des droits"
description.en = "Answer requests."
description.fr = "Répondre aux demandes."
legal_basis = "legal_obligation"
subjects = ["visitor", "customer", "candidate"]
categories = ["request", "email"]
source.en = "You."
source.fr = "Vous-même."
[[purposes.retention]]
from = "request_reply"
keep = "1 year"
[[purposes.retention]]
categories = ["email"]
from = "while_open"

[[purposes]]
id = "ads"
label.en = "Social advertising"
label.fr = "Publicité sociale"
description.en = "Measure ads."
description.fr = "Mesurer les publicités."
legal_basis = "consent"
consent_category = "targeting"
subjects = ["visitor"]
categories = ["ip"]
source.en = "The pixels."
source.fr = "Les pixels."
[[purposes.retention]]
from = "collection"
keep = "90 days"

[[revisions]]
id = "r1"
date = "2025-01-01"
summary.en = "First version."
summary.fr = "Première version."

[[revisions]]
id = "r2"
date = "2026-11-29"
summary.en = "Advertising added."
summary.fr = "Ajout de la publicité."
"#;

    pub(crate) fn fixture() -> Register {
        toml::from_str(FIXTURE).expect("the fixture register parses")
    }

    /// The fixture and the shipped example register (`examples/policy.toml`).
    pub(crate) fn registers() -> Vec<(&'static str, Register)> {
        let example: Register = toml::from_str(crate::EXAMPLE_REGISTER)
            .unwrap_or_else(|e| panic!("examples/policy.toml does not parse: {e}"));
        vec![("fixture", fixture()), ("example", example)]
    }

    fn date() -> Date {
        jiff::civil::date(2026, 11, 29)
    }

    fn html(reg: &Register, lang: &str) -> String {
        render_html(reg, &NoticeContext::new(lang, date()))
    }

    fn markdown(reg: &Register, lang: &str) -> String {
        render_markdown(reg, &NoticeContext::new(lang, date()))
    }

    /// How register text appears in each rendering.
    fn in_html(text: &str) -> String {
        askama::filters::escape(text, askama::filters::Html)
            .map(|s| s.to_string())
            .unwrap_or_default()
    }

    fn in_md(text: &str) -> String {
        md(text)
    }

    /// Every fact of the register that a notice must state, as it is written in `lang`.
    fn facts(reg: &Register, lang: &str) -> Vec<(String, String)> {
        let mut f = Vec::new();
        let mut add = |what: &str, text: String| f.push((what.to_string(), text));
        for p in &reg.purposes {
            add("purpose label", p.label.get(lang).to_string());
            add("purpose description", p.description.get(lang).to_string());
            add("legal basis article", p.legal_basis.article().to_string());
            add("source", p.source.get(lang).to_string());
            for c in &p.categories {
                add(
                    "category label",
                    reg.category(c).unwrap().label.get(lang).to_string(),
                );
            }
            for r in &p.retention {
                if let Some(k) = &r.keep {
                    add("retention period", period_text(k, lang));
                    if lang == "en" {
                        add("retention period (canonical)", k.canonical());
                    }
                }
                if let Some(l) = &r.law {
                    add("law", l.get(lang).trim_end_matches('.').to_string());
                }
            }
            for id in &p.recipients {
                let r = reg.recipient(id).unwrap();
                add("recipient", r.name.clone());
                add("recipient service", r.service.get(lang).to_string());
            }
            for c in &p.cookies {
                add("cookie", c.name.clone());
                add("cookie lifetime", period_text(&c.lifetime, lang));
            }
        }
        add("complaint url", reg.authority.complaint_url.clone());
        add(
            "authorities list url",
            reg.authority.authorities_list_url.clone(),
        );
        add("authority", reg.authority.name.get(lang).to_string());
        add("dpo e-mail", reg.controller.dpo.email.clone());
        add("rights e-mail", reg.rights.email.clone());
        add("reply within", period_text(&reg.rights.reply_within, lang));
        add("extension", period_text(&reg.rights.max_extension, lang));
        add(
            "records kept",
            period_text(&reg.rights.request_records_kept, lang),
        );
        for r in &reg.revisions {
            add("revision", r.summary.get(lang).to_string());
        }
        f
    }

    #[test]
    fn every_fact_of_the_register_is_stated_in_both_languages_and_formats() {
        for (name, reg) in registers() {
            for lang in ["en", "fr"] {
                let h = html(&reg, lang);
                let m = markdown(&reg, lang);
                for (what, text) in facts(&reg, lang) {
                    assert!(
                        h.contains(&in_html(&text)),
                        "{name}/{lang}: HTML lacks {what} {text:?}"
                    );
                    assert!(
                        m.contains(&in_md(&text)),
                        "{name}/{lang}: Markdown lacks {what} {text:?}"
                    );
                }
                let s = strings(lang);
                for (right, article, _) in &s.rights {
                    assert!(
                        h.contains(&in_html(right)),
                        "{name}/{lang}: HTML lacks {right}"
                    );
                    assert!(h.contains(&in_html(article)));
                    assert!(
                        m.contains(&in_md(right)),
                        "{name}/{lang}: Markdown lacks {right}"
                    );
                    assert!(m.contains(&in_md(article)));
                }
                for article in ["15", "16", "17", "18", "20", "21", "7(3)"] {
                    let a = format!("{} art. {article}", s.gdpr);
                    assert!(h.contains(&a), "{name}/{lang}: HTML lacks {a}");
                    assert!(m.contains(&a), "{name}/{lang}: Markdown lacks {a}");
                }
                assert!(h.contains("art. 85") && m.contains("art. 85"));
                let updated = date_text(date(), lang);
                assert!(h.contains(&updated), "{name}/{lang}: HTML lacks {updated}");
                assert!(
                    m.contains(&updated),
                    "{name}/{lang}: Markdown lacks {updated}"
                );
            }
        }
    }

    #[test]
    fn html_page_is_well_formed_accessible_and_csp_clean() {
        for (name, reg) in registers() {
            for lang in ["en", "fr"] {
                let h = html(&reg, lang);
                assert!(h.starts_with("<!DOCTYPE html>"), "{name}/{lang}");
                assert!(h.contains(&format!("<html lang=\"{lang}\">")));
                for landmark in ["<header", "<nav", "<main", "<footer"] {
                    assert!(h.contains(landmark), "{name}/{lang}: no {landmark}");
                }
                assert_eq!(h.matches("<h1>").count(), 1);
                // Heading levels never skip (h1 → h2 → h3) and the first heading is the h1.
                let levels: Vec<u8> = h
                    .split("<h")
                    .skip(1)
                    .filter_map(|t| t.as_bytes().first().copied())
                    .filter(u8::is_ascii_digit)
                    .map(|d| d - b'0')
                    .collect();
                assert_eq!(levels.first(), Some(&1), "{name}/{lang}");
                for w in levels.windows(2) {
                    assert!(w[1] <= w[0] + 1, "{name}/{lang}: heading jumps {w:?}");
                }
                assert!(!h.contains("style="), "{name}/{lang}: inline style");
                assert!(!h.contains("<style"), "{name}/{lang}: style element");
                assert!(!h.contains("<script"), "{name}/{lang}: script");
                for tag in h.split('<').skip(1) {
                    let tag = &tag[..tag.find('>').unwrap()];
                    assert!(
                        !tag.split_ascii_whitespace()
                            .skip(1)
                            .any(|a| a.starts_with("on")),
                        "{name}/{lang}: event handler attribute in <{tag}>"
                    );
                }
                assert!(h.contains("<link rel=\"stylesheet\" href=\"/assets/notice.css\">"));
                assert!(h.contains("<caption>"));
                assert!(h.contains("scope=\"col\""));
                // Every in-page link points at an id that exists.
                for frag in h.split("href=\"#").skip(1) {
                    let id = &frag[..frag.find('"').unwrap()];
                    assert!(
                        h.contains(&format!("id=\"{id}\"")),
                        "{name}/{lang}: #{id} dangles"
                    );
                }
                // The language switch points at the other language.
                let other = if lang == "en" { "fr" } else { "en" };
                assert!(h.contains(&format!("href=\"/privacy?lang={other}\"")));
                // Every purpose is in the table of contents.
                for p in &reg.purposes {
                    assert!(h.contains(&format!("href=\"#{}\"", anchor_id("purpose-", &p.id))));
                }
            }
        }
    }

    #[test]
    fn base_path_prefixes_every_link() {
        let reg = fixture();
        let ctx = NoticeContext {
            lang: "en",
            last_updated: date(),
            base_path: "/legal/",
            rights_form: Some("/legal/rights"),
        };
        let h = render_html(&reg, &ctx);
        assert!(h.contains("href=\"/legal/assets/notice.css\""));
        assert!(h.contains("href=\"/legal/privacy?lang=fr\""));
        assert!(h.contains("href=\"/legal/rights\""));
        let m = render_markdown(&reg, &ctx);
        assert!(m.contains("(/legal/privacy?lang=fr)"));
        assert!(m.contains("(/legal/rights)"));
    }

    #[test]
    fn facts_come_from_the_register() {
        let reg = fixture();
        let mut changed = reg.clone();
        let old_label = reg.purposes[0].label.get("en").to_string();
        changed.purposes[0]
            .label
            .0
            .insert("en".into(), "Visit counting".into());
        changed.purposes[0]
            .label
            .0
            .insert("fr".into(), "Comptage des visites".into());
        changed.purposes[0].retention[0].keep = Some(Period::parse("45 days"));
        changed.recipients.push(crate::register::Recipient {
            id: "newco".into(),
            name: "NewCo Analytics GmbH".into(),
            role: RecipientRole::Processor,
            service: crate::register::Text(
                [
                    ("en".into(), "Dashboards".into()),
                    ("fr".into(), "Tableaux de bord".into()),
                ]
                .into_iter()
                .collect(),
            ),
            policy_url: None,
            country: Some("DE".into()),
            transfer_safeguards: None,
        });
        changed.purposes[0].recipients.push("newco".into());
        changed.authority.complaint_url = "https://complaints.example/new".into();

        for lang in ["en", "fr"] {
            let before_h = html(&reg, lang);
            let before_m = markdown(&reg, lang);
            let after_h = html(&changed, lang);
            let after_m = markdown(&changed, lang);
            assert_ne!(before_h, after_h);
            assert_ne!(before_m, after_m);
            for out in [&after_h, &after_m] {
                let new_label = changed.purposes[0].label.get(lang);
                assert!(out.contains(new_label), "{lang}: new label missing");
                if lang == "en" {
                    assert!(!out.contains(&old_label), "{lang}: old label still there");
                } else {
                    assert!(
                        !out.contains(reg.purposes[0].label.get("fr").split('\'').next().unwrap())
                    );
                }
                assert!(out.contains(&period_text(&Period::parse("45 days"), lang)));
                assert!(!out.contains(&period_text(&Period::parse("180 days"), lang)));
                assert!(out.contains("NewCo Analytics GmbH"));
                assert!(out.contains("https://complaints.example/new"));
                assert!(!out.contains("https://www.cnil.fr/fr/plaintes"));
            }
            assert!(before_h.contains("180 "));
            assert!(!before_h.contains("NewCo"));
            // The audience statistics used to say "never shared"; with a recipient they don't.
            let none = fill(
                strings(lang).no_recipients,
                &[("controller", &reg.controller.name)],
            );
            assert_eq!(
                before_m.matches(&md(&none)).count(),
                after_m.matches(&md(&none)).count() + 1
            );
        }
    }

    #[test]
    fn register_text_is_escaped() {
        let mut reg = fixture();
        reg.purposes[0].label.0.insert(
            "en".into(),
            "<script>alert(1)</script> & *bold* [x](y)".into(),
        );
        reg.recipients[0].policy_url = Some("javascript:alert(1)".into());
        reg.purposes[1]
            .description
            .0
            .insert("en".into(), "- not a list\n# not a heading".into());
        let h = html(&reg, "en");
        assert!(!h.contains("<script"));
        assert!(h.contains("&#60;script&#62;alert(1)&#60;/script&#62; &#38; *bold*"));
        assert!(
            !h.contains("javascript:"),
            "an unsafe URL must not become a link"
        );
        let m = markdown(&reg, "en");
        assert!(m.contains(r"\<script\>alert(1)\</script\> \& \*bold\* \[x\](y)"));
        assert!(m.contains(r"\- not a list \# not a heading"));
        assert!(!m.contains("](javascript:"));
    }

    #[test]
    fn markdown_escaping() {
        assert_eq!(md("a_b*c"), r"a\_b\*c");
        assert_eq!(md("1. first"), r"1\. first");
        assert_eq!(md("+ plus"), r"\+ plus");
        assert_eq!(md("a | b"), r"a \| b");
        assert_eq!(md("two\nlines"), "two lines");
        assert_eq!(md("1\u{a0}an"), "1\u{a0}an");
        assert_eq!(md("plain text (ok)."), "plain text (ok).");
    }

    #[test]
    fn unknown_language_falls_back_to_the_default() {
        let reg = fixture();
        let h = html(&reg, "de");
        assert!(h.contains("<html lang=\"en\">"));
        let mut fr_default = fixture();
        fr_default.notice.default_language = "fr".into();
        let h = html(&fr_default, "xx");
        assert!(h.contains("<html lang=\"fr\">"));
        assert!(h.contains("Politique de confidentialité"));
        assert!(
            render_markdown(&fr_default, &NoticeContext::new("", date()))
                .starts_with("# Politique de confidentialité")
        );
    }

    #[test]
    fn language_negotiation() {
        let reg = fixture();
        let n = |a: Option<&str>, q: Option<&str>| negotiate_language(&reg, a, q);
        assert_eq!(n(None, None), "en");
        assert_eq!(n(None, Some("fr")), "fr");
        assert_eq!(n(Some("en"), Some("FR")), "fr", "the query wins");
        assert_eq!(
            n(Some("fr"), Some("de")),
            "fr",
            "an unsupported query is ignored"
        );
        assert_eq!(n(Some("fr-CA,fr;q=0.9,en;q=0.8"), None), "fr");
        assert_eq!(n(Some("de-DE,de;q=0.9,fr;q=0.5,en;q=0.4"), None), "fr");
        assert_eq!(
            n(Some("en;q=0.2, fr;q=0.8"), None),
            "fr",
            "q-values, not order"
        );
        assert_eq!(
            n(Some("fr;q=0, en;q=0.1"), None),
            "en",
            "q=0 means not acceptable"
        );
        assert_eq!(n(Some("fr;q=0"), None), "en");
        assert_eq!(n(Some("de, *;q=0.1"), None), "en");
        assert_eq!(n(Some("en-GB, fr"), None), "en");
        assert_eq!(n(Some("garbage;;;q=x,,"), None), "en");
        assert_eq!(n(Some(""), Some("")), "en");
        assert_eq!(
            supported_languages(&reg),
            ["en".to_string(), "fr".to_string()]
        );
    }

    #[test]
    fn dates_and_periods_in_plain_language() {
        assert_eq!(date_text(date(), "en"), "29 November 2026");
        assert_eq!(date_text(date(), "fr"), "29 novembre 2026");
        assert_eq!(
            date_text(jiff::civil::date(2026, 3, 1), "fr"),
            "1er mars 2026"
        );
        assert_eq!(period_text(&Period::parse("1 year"), "fr"), "1 an");
        assert_eq!(period_text(&Period::parse("12 months"), "fr"), "12 mois");
        assert_eq!(period_text(&Period::parse("180 days"), "en"), "180 days");
        assert_eq!(last_updated(&fixture()), Some(date()));
    }

    #[test]
    fn revisions_are_listed_newest_first() {
        let reg = fixture();
        for lang in ["en", "fr"] {
            let h = html(&reg, lang);
            let newest = h.find(reg.revisions[1].summary.get(lang)).unwrap();
            let oldest = h.find(reg.revisions[0].summary.get(lang)).unwrap();
            assert!(newest < oldest);
        }
    }

    #[test]
    fn retention_is_stated_in_plain_language() {
        let reg = fixture();
        let h = html(&reg, "en");
        assert!(h.contains("Kept for 180 days, counted from collection."));
        assert!(h.contains("counted from the end of the contract"));
        assert!(h.contains("at most 12 months counted from our last contact with you"));
        assert!(h.contains("Kept longer only if you agree to it."));
        assert!(h.contains("Kept by legal obligation (GDPR art. 6(1)(c))"));
        assert!(h.contains("Required by: LCEN art. 6."));
        assert!(h.contains("Kept only while the request is being handled"));
        assert!(h.contains("only the first half of the IP address is kept"));
        assert!(h.contains("never stored by us: handled only by PayCo Ltd, ChatCo SAS"));
        assert!(h.contains("Transfer outside the European Economic Area."));
        assert!(h.contains("Standard contractual clauses"));
        let f = html(&reg, "fr");
        assert!(f.contains("Conservées 180 jours à compter de leur collecte."));
        assert!(f.contains("à compter de la fin du contrat"));
    }
}

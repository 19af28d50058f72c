//! Wording of the e-mails to requesters, in English and French. Facts (controller, rights,
//! dates, complaint route) come from the register and the request; words from here.

use jiff::Timestamp;
use tutela_domain::Register;
use tutela_domain::rights::RightKind;

pub(crate) struct Mail {
    pub subject: String,
    pub body: String,
}

fn date(t: Timestamp) -> String {
    t.to_zoned_datetime(jiff::tz::TimeZone::UTC)
        .date()
        .to_string()
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn verification_mail(
    lang: &str,
    reg: &Register,
    kind: RightKind,
    code: &str,
    link: &str,
    status_page: &str,
    expires: Timestamp,
    attempts: i64,
    due: Timestamp,
) -> Mail {
    let controller = &reg.controller.name;
    let right = kind.label(lang);
    let (expires, due) = (date(expires), date(due));
    if lang == "fr" {
        Mail {
            subject: format!("Confirmez votre demande auprès de {controller}"),
            body: format!(
                "Bonjour,\n\n\
                 Nous avons reçu une demande à votre adresse : « {right} ».\n\n\
                 Pour confirmer que c'est bien vous, ouvrez ce lien :\n{link}\n\n\
                 ou saisissez ce code sur la page de votre demande ({status_page}) :\n\n    {code}\n\n\
                 Le code et le lien sont valables jusqu'au {expires} (UTC) et le code peut être essayé {attempts} fois.\n\
                 Nous répondrons au plus tard le {due}. Rien n'est fait tant que votre identité n'est pas confirmée.\n\n\
                 Si vous n'êtes pas à l'origine de cette demande, ignorez ce message : elle n'aura pas de suite.\n\n\
                 {controller}\n{dpo}\n",
                dpo = reg.controller.dpo.email,
            ),
        }
    } else {
        Mail {
            subject: format!("Confirm your request to {controller}"),
            body: format!(
                "Hello,\n\n\
                 We received a request made with your address: \"{right}\".\n\n\
                 To confirm it is you, open this link:\n{link}\n\n\
                 or enter this code on your request's page ({status_page}):\n\n    {code}\n\n\
                 The code and the link are valid until {expires} (UTC); the code can be tried {attempts} times.\n\
                 We will answer by {due} at the latest. Nothing is done until your identity is confirmed.\n\n\
                 If you did not make this request, ignore this message: nothing will happen.\n\n\
                 {controller}\n{dpo}\n",
                dpo = reg.controller.dpo.email,
            ),
        }
    }
}

pub(crate) fn extension_mail(
    lang: &str,
    reg: &Register,
    kind: RightKind,
    original_due: Timestamp,
    until: Timestamp,
    reasons: &str,
) -> Mail {
    let controller = &reg.controller.name;
    let right = kind.label(lang);
    let (original, until) = (date(original_due), date(until));
    let authority = reg.authority.name.get(lang);
    let complaint = &reg.authority.complaint_url;
    if lang == "fr" {
        Mail {
            subject: format!("Votre demande auprès de {controller} : délai prolongé"),
            body: format!(
                "Bonjour,\n\n\
                 Votre demande « {right} » devait recevoir une réponse au plus tard le {original}. \
                 Nous prolongeons ce délai jusqu'au {until} (RGPD, art. 12(3)), pour la raison suivante :\n\n{reasons}\n\n\
                 Vous pouvez introduire une réclamation auprès de {authority} : {complaint}\n\n{controller}\n",
            ),
        }
    } else {
        Mail {
            subject: format!("Your request to {controller}: deadline extended"),
            body: format!(
                "Hello,\n\n\
                 Your request \"{right}\" was due to be answered by {original}. \
                 We are extending this deadline to {until} (GDPR art. 12(3)), for this reason:\n\n{reasons}\n\n\
                 You may lodge a complaint with {authority}: {complaint}\n\n{controller}\n",
            ),
        }
    }
}

pub(crate) fn package_mail(
    lang: &str,
    reg: &Register,
    kind: RightKind,
    link: &str,
    expires: Timestamp,
) -> Mail {
    let controller = &reg.controller.name;
    let right = kind.label(lang);
    let expires = date(expires);
    if lang == "fr" {
        Mail {
            subject: format!("Votre demande auprès de {controller} : notre réponse"),
            body: format!(
                "Bonjour,\n\nNotre réponse à votre demande « {right} » est prête. Téléchargez-la ici jusqu'au {expires} (UTC) :\n{link}\n\n\
                 Pour votre sécurité, un code vous sera envoyé par courriel au moment du téléchargement.\n\n{controller}\n"
            ),
        }
    } else {
        Mail {
            subject: format!("Your request to {controller}: our answer"),
            body: format!(
                "Hello,\n\nOur answer to your request \"{right}\" is ready. Download it here until {expires} (UTC):\n{link}\n\n\
                 For your security, we will e-mail you a code when you download it.\n\n{controller}\n"
            ),
        }
    }
}

pub(crate) fn download_code_mail(
    lang: &str,
    reg: &Register,
    code: &str,
    expires: Timestamp,
) -> Mail {
    let controller = &reg.controller.name;
    let expires = date(expires);
    if lang == "fr" {
        Mail {
            subject: format!("Code de téléchargement — {controller}"),
            body: format!(
                "Bonjour,\n\nVoici le code pour télécharger notre réponse :\n\n    {code}\n\nIl est valable jusqu'au {expires} (UTC). Si vous n'avez rien demandé, ignorez ce message.\n\n{controller}\n"
            ),
        }
    } else {
        Mail {
            subject: format!("Download code — {controller}"),
            body: format!(
                "Hello,\n\nHere is the code to download our answer:\n\n    {code}\n\nIt is valid until {expires} (UTC). If you did not ask for it, ignore this message.\n\n{controller}\n"
            ),
        }
    }
}

pub(crate) fn reminder_mail(
    reg: &Register,
    due: &[crate::service::RequestView],
    now: Timestamp,
) -> Mail {
    let overdue = due.iter().filter(|r| r.due_at < now).count();
    let mut body = format!(
        "Rights requests to answer ({} overdue, {} due soon):\n\n",
        overdue,
        due.len() - overdue
    );
    for r in due {
        let flag = if r.due_at < now { "OVERDUE" } else { "due" };
        body.push_str(&format!(
            "- {} {} {} ({}, state {})\n",
            flag,
            date(r.due_at),
            r.id,
            r.kind.as_str(),
            r.state.as_str()
        ));
    }
    body.push_str("\nGET /api/v1/rights/requests?all_open=true lists every open request.\n");
    Mail {
        subject: format!(
            "{}: {} rights request(s) to answer, {} overdue",
            reg.controller.name,
            due.len(),
            overdue
        ),
        body,
    }
}

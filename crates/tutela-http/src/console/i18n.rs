//! The console's wording in English and French. Each string is written once per language, side
//! by side, so a missing translation does not compile. Placeholders in braces are filled by
//! [`fill`].

macro_rules! strings {
    ($($key:ident: $en:literal, $fr:literal;)*) => {
        /// One language's wording of the console.
        pub struct Text {
            pub code: &'static str,
            $(pub $key: &'static str,)*
        }
        pub static EN: Text = Text { code: "en", $($key: $en,)* };
        pub static FR: Text = Text { code: "fr", $($key: $fr,)* };
        #[cfg(test)]
        pub(crate) fn all_pairs() -> Vec<(&'static str, &'static str, &'static str)> {
            vec![$((stringify!($key), $en, $fr),)*]
        }
    };
}

strings! {
    skip: "Skip to content", "Aller au contenu";
    brand: "Tutela console", "Console Tutela";
    nav_label: "Console sections", "Sections de la console";
    nav_overview: "Overview", "Vue d’ensemble";
    nav_register: "Register", "Registre";
    nav_security: "Sign-in log", "Journal des connexions";
    nav_operators: "Operators", "Opérateurs";
    nav_tokens: "API tokens", "Jetons d’API";
    nav_account: "My account", "Mon compte";
    nav_subjects: "Subjects", "Personnes";
    nav_audit: "Audit log", "Journal d’audit";
    nav_keys: "Keys", "Clés";
    keys_title: "Encryption keys", "Clés de chiffrement";
    keys_intro: "The vault encrypts each person’s data with a key of their own, wrapped by the master key. Only key identifiers are shown here; the keys never leave the key file.", "Le coffre chiffre les données de chaque personne avec une clé qui lui est propre, enveloppée par la clé maîtresse. Seuls les identifiants des clés sont affichés ici ; les clés ne quittent jamais le fichier de clés.";
    index_root: "Index root (stable: blind indexes, audit commitments, operator secrets)", "Racine d’index (stable : index aveugles, engagements d’audit, secrets des opérateurs)";
    col_key: "Master key", "Clé maîtresse";
    col_subjects: "Subject keys wrapped", "Clés de personnes enveloppées";
    key_current: "current", "actuelle";
    key_previous: "previous", "précédente";
    rotation_unfinished: "A rotation is unfinished: some subject keys are still wrapped by a previous master key. Run “tutela keys rotate” on the server to finish it.", "Une rotation est inachevée : des clés de personnes sont encore enveloppées par une clé maîtresse précédente. Lancez « tutela keys rotate » sur le serveur pour la terminer.";
    rotate_hint: "To rotate the master key, run “tutela keys rotate” on the server: it writes the key file, which the console never touches. Back the key file up afterwards.", "Pour changer de clé maîtresse, lancez « tutela keys rotate » sur le serveur : la commande écrit le fichier de clés, auquel la console ne touche jamais. Sauvegardez ensuite le fichier de clés.";
    sign_out: "Sign out", "Se déconnecter";
    signed_in_as: "Signed in as", "Connecté·e en tant que";
    other_language: "Français", "English";
    other_language_code: "fr", "en";
    footer: "Tutela — the privacy engine of {controller}. Access to personal data is limited to what each role needs.", "Tutela — le moteur de confidentialité de {controller}. L’accès aux données personnelles est limité à ce dont chaque rôle a besoin.";
    footer_plain: "Tutela — self-hosted privacy engine.", "Tutela — moteur de confidentialité auto-hébergé.";

    login_title: "Sign in", "Connexion";
    login_intro: "Operators of {controller} sign in here. Access is limited to what your role needs.", "Les opérateurs de {controller} se connectent ici. L’accès est limité à ce dont votre rôle a besoin.";
    field_login: "Login name", "Identifiant";
    field_password: "Password", "Mot de passe";
    sign_in: "Sign in", "Se connecter";
    login_failed: "Wrong login name or password.", "Identifiant ou mot de passe incorrect.";
    throttled: "Too many attempts. Wait {secs} seconds, then try again.", "Trop de tentatives. Attendez {secs} secondes, puis réessayez.";
    form_expired: "This form has expired, or your browser refuses cookies. Reload the page and try again.", "Ce formulaire a expiré, ou votre navigateur refuse les cookies. Rechargez la page et réessayez.";
    signed_out: "You are signed out.", "Vous êtes déconnecté·e.";
    session_ended: "Your session ended. Sign in again.", "Votre session a pris fin. Reconnectez-vous.";

    factor_title: "Two-factor authentication", "Authentification à deux facteurs";
    factor_intro: "Enter the 6-digit code shown by your authenticator app, or one of your recovery codes.", "Saisissez le code à 6 chiffres affiché par votre application d’authentification, ou l’un de vos codes de secours.";
    field_code: "Code", "Code";
    field_code_hint: "6 digits, or a recovery code such as ABCD-EFGH-JKMN-PQRS", "6 chiffres, ou un code de secours comme ABCD-EFGH-JKMN-PQRS";
    verify: "Verify", "Vérifier";
    cancel_sign_in: "Cancel and sign out", "Annuler et se déconnecter";
    factor_failed: "This code is not valid, or it was already used.", "Ce code n’est pas valide, ou il a déjà servi.";
    factor_locked: "Too many wrong codes. Sign in again.", "Trop de codes erronés. Reconnectez-vous.";

    enroll_title: "Set up two-factor authentication", "Configurer l’authentification à deux facteurs";
    enroll_required: "Your role requires two-factor authentication. Set it up to continue.", "Votre rôle exige l’authentification à deux facteurs. Configurez-la pour continuer.";
    enroll_intro: "Scan this QR code with an authenticator app (for example FreeOTP, Aegis or Google Authenticator), then enter the 6-digit code it shows.", "Scannez ce QR code avec une application d’authentification (par exemple FreeOTP, Aegis ou Google Authenticator), puis saisissez le code à 6 chiffres qu’elle affiche.";
    enroll_manual: "Cannot scan it? Enter this key by hand (time-based, 6 digits, 30 seconds):", "Impossible de scanner ? Saisissez cette clé à la main (basée sur le temps, 6 chiffres, 30 secondes) :";
    qr_label: "QR code to add Tutela to your authenticator app", "QR code pour ajouter Tutela à votre application d’authentification";
    confirm: "Confirm", "Confirmer";

    recovery_title: "Your recovery codes", "Vos codes de secours";
    recovery_intro: "Each code lets you sign in once if you lose your authenticator. Store them somewhere safe now: they are not shown again.", "Chaque code permet de vous connecter une fois si vous perdez votre application d’authentification. Rangez-les en lieu sûr maintenant : ils ne seront plus affichés.";
    continue_console: "Continue to the console", "Continuer vers la console";

    setup_title_first: "Create the first administrator", "Créer le premier administrateur";
    setup_intro_first: "This one-time link creates Tutela’s first administrator account. Two-factor authentication is set up next.", "Ce lien à usage unique crée le premier compte administrateur de Tutela. L’authentification à deux facteurs se configure ensuite.";
    setup_title_invite: "Choose your password", "Choisissez votre mot de passe";
    setup_intro_invite: "Welcome, {name}. Choose a password for the login name {login}.", "Bienvenue, {name}. Choisissez un mot de passe pour l’identifiant {login}.";
    setup_invalid: "This setup link is not valid: it was used already, it expired, or it is mistyped. Ask an administrator for a new one.", "Ce lien de configuration n’est pas valide : il a déjà servi, il a expiré, ou il est mal recopié. Demandez-en un nouveau à un administrateur.";
    field_display_name: "Full name", "Nom complet";
    field_new_password: "New password", "Nouveau mot de passe";
    field_confirm: "Repeat the new password", "Répétez le nouveau mot de passe";
    password_rules: "At least 12 characters; long passphrases are welcome. Common passwords are refused.", "Au moins 12 caractères ; les longues phrases de passe sont les bienvenues. Les mots de passe courants sont refusés.";
    create_account: "Create the account", "Créer le compte";
    save_password: "Save the password", "Enregistrer le mot de passe";
    passwords_differ: "The two passwords differ.", "Les deux mots de passe diffèrent.";
    pw_too_short: "The password must have at least 12 characters.", "Le mot de passe doit comporter au moins 12 caractères.";
    pw_too_long: "The password must have at most 4096 characters.", "Le mot de passe doit comporter au plus 4096 caractères.";
    pw_common: "This password is on a list of common passwords.", "Ce mot de passe figure sur une liste de mots de passe courants.";
    pw_common_decorated: "This is a common word or password with digits or symbols added.", "C’est un mot ou un mot de passe courant auquel on a ajouté des chiffres ou des symboles.";
    pw_pattern: "This password is a repeated pattern or a run of consecutive characters.", "Ce mot de passe est un motif répété ou une suite de caractères consécutifs.";
    pw_contains_login: "The password must not contain the login name.", "Le mot de passe ne doit pas contenir l’identifiant.";
    bad_login: "A login name has 3 to 64 characters: letters a–z, digits, and . _ -", "Un identifiant comporte 3 à 64 caractères : lettres a–z, chiffres, et . _ -";
    bad_display_name: "Give a name of 1 to 100 characters.", "Indiquez un nom de 1 à 100 caractères.";
    login_taken: "This login name is taken.", "Cet identifiant est déjà pris.";

    overview_title: "Overview", "Vue d’ensemble";
    register_panel: "Register", "Registre";
    revision: "Revision", "Révision";
    register_hash: "Hash", "Empreinte";
    loaded_on: "In force since", "En vigueur depuis";
    purposes_count: "Purposes", "Finalités";
    warnings_count: "Validation warnings", "Avertissements de validation";
    open_register: "Open the register", "Ouvrir le registre";
    security_panel: "Security", "Sécurité";
    failed_logins_24h: "Failed sign-ins, last 24 hours", "Connexions échouées, dernières 24 heures";
    throttled_since_start: "Attempts held back by throttling since the server started", "Tentatives retenues par la limitation depuis le démarrage du serveur";
    without_2fa: "Active operators without two-factor authentication", "Opérateurs actifs sans authentification à deux facteurs";
    open_security: "Open the sign-in log", "Ouvrir le journal des connexions";
    account_panel: "Your account", "Votre compte";
    twofa_on: "Two-factor authentication is on.", "L’authentification à deux facteurs est activée.";
    twofa_off: "Two-factor authentication is off. It protects your account even if your password leaks.", "L’authentification à deux facteurs est désactivée. Elle protège votre compte même si votre mot de passe fuite.";
    recovery_left: "Recovery codes left", "Codes de secours restants";
    set_up_2fa: "Set up two-factor authentication", "Configurer l’authentification à deux facteurs";
    your_role: "Your role", "Votre rôle";

    register_title: "Register of processing activities", "Registre des activités de traitement";
    register_intro: "The register as this server loaded it. It drives the notice, what the collectors keep and every deletion deadline.", "Le registre tel que ce serveur l’a chargé. Il produit la notice, décide de ce que les collecteurs conservent et fixe chaque échéance de suppression.";
    col_purpose: "Purpose", "Finalité";
    col_basis: "Legal basis", "Base légale";
    col_data: "Personal data", "Données personnelles";
    col_retention: "Retention", "Conservation";
    col_recipients: "Recipients", "Destinataires";
    nobody: "Nobody outside the controller", "Personne en dehors du responsable";
    warnings_title: "Validation warnings", "Avertissements de validation";
    no_warnings: "The register has no validation warnings.", "Le registre ne présente aucun avertissement de validation.";
    line: "line", "ligne";
    hint: "Hint", "Conseil";
    notice_preview: "Notice preview", "Aperçu de la notice";
    notice_preview_intro: "The public privacy notice, rendered from this register:", "La notice d’information publique, produite à partir de ce registre :";

    security_title: "Sign-in log", "Journal des connexions";
    security_intro: "Sign-ins and account changes of console operators. No password, code or session identifier is ever recorded.", "Connexions et modifications de comptes des opérateurs de la console. Aucun mot de passe, code ou identifiant de session n’est jamais enregistré.";
    col_when: "When (UTC)", "Quand (UTC)";
    col_operator: "Operator", "Opérateur";
    col_event: "Event", "Événement";
    col_detail: "Detail", "Détail";
    older: "Older entries", "Entrées plus anciennes";
    no_events: "Nothing recorded yet.", "Rien n’est encore enregistré.";
    unknown_operator: "unknown login name", "identifiant inconnu";

    operators_title: "Operators", "Opérateurs";
    operators_intro: "People who use this console, and their roles. Roles are enforced by the server.", "Les personnes qui utilisent cette console, et leurs rôles. Les rôles sont appliqués par le serveur.";
    col_login: "Login name", "Identifiant";
    col_name: "Name", "Nom";
    col_role: "Role", "Rôle";
    col_2fa: "Two-factor", "Double facteur";
    col_status: "Status", "État";
    col_actions: "Actions", "Actions";
    status_active: "Active", "Actif";
    status_disabled: "Disabled", "Désactivé";
    status_invited: "Invitation pending", "Invitation en attente";
    yes: "Yes", "Oui";
    no: "No", "Non";
    disable: "Disable", "Désactiver";
    reset_2fa: "Reset two-factor", "Réinitialiser le double facteur";
    add_operator: "Add an operator", "Ajouter un opérateur";
    field_role: "Role", "Rôle";
    add: "Add", "Ajouter";
    invite_created: "Send this one-time link to {login}. It is valid for 7 days and is not shown again:", "Transmettez ce lien à usage unique à {login}. Il est valable 7 jours et ne sera plus affiché :";
    cannot_disable_self: "You cannot disable your own account.", "Vous ne pouvez pas désactiver votre propre compte.";
    operator_disabled: "Operator disabled; their sessions were ended.", "Opérateur désactivé ; ses sessions ont été fermées.";
    twofa_reset_done: "Two-factor authentication reset; the operator sets it up again at the next sign-in.", "Double facteur réinitialisé ; l’opérateur le configurera de nouveau à sa prochaine connexion.";
    role_admin: "Administrator — operators, API tokens, keys", "Administrateur — opérateurs, jetons d’API, clés";
    role_dpo: "Data protection officer — all personal data, rights requests", "Délégué à la protection des données — toutes les données personnelles, demandes d’exercice de droits";
    role_support: "Support — subject data for support purposes only", "Support — données des personnes pour le support uniquement";
    role_analyst: "Analyst — aggregated analytics only", "Analyste — statistiques agrégées uniquement";
    role_admin_short: "Administrator", "Administrateur";
    role_dpo_short: "Data protection officer", "Délégué à la protection des données";
    role_support_short: "Support", "Support";
    role_analyst_short: "Analyst", "Analyste";

    tokens_title: "API tokens", "Jetons d’API";
    tokens_intro: "Bearer tokens for the platform and for scripts. Only a hash of each secret is kept.", "Jetons porteurs pour la plateforme et les scripts. Seule une empreinte de chaque secret est conservée.";
    col_id: "Id", "Id";
    col_scopes: "Scopes", "Portées";
    col_created: "Created", "Créé";
    col_expires: "Expires", "Expire";
    col_last_used: "Last used", "Dernier usage";
    revoke: "Revoke", "Révoquer";
    create_token: "Create a token", "Créer un jeton";
    field_name: "Name", "Nom";
    field_scopes: "Scopes", "Portées";
    field_expires: "Valid for", "Valable";
    field_expires_hint: "For example “90 days” or “1 year”; leave empty for no expiry.", "Par exemple « 90 days » ou « 1 year » ; laissez vide pour aucune expiration.";
    create: "Create", "Créer";
    token_created: "Copy this token now; it is not shown again:", "Copiez ce jeton maintenant ; il ne sera plus affiché :";
    token_revoked: "Token revoked.", "Jeton révoqué.";
    state_active: "Active", "Actif";
    state_revoked: "Revoked", "Révoqué";
    state_expired: "Expired", "Expiré";
    never: "never", "jamais";
    no_tokens: "No token yet.", "Aucun jeton pour l’instant.";
    bad_token_name: "Give the token a name of 1 to 200 characters.", "Donnez au jeton un nom de 1 à 200 caractères.";
    bad_expiry: "Write a duration such as “90 days” or “1 year”.", "Écrivez une durée comme « 90 days » ou « 1 year ».";
    no_scope: "Choose at least one scope.", "Choisissez au moins une portée.";

    account_title: "My account", "Mon compte";
    password_section: "Change your password", "Changer votre mot de passe";
    field_current_password: "Current password", "Mot de passe actuel";
    change_password: "Change the password", "Changer le mot de passe";
    password_changed: "Password changed. Your other sessions were ended.", "Mot de passe changé. Vos autres sessions ont été fermées.";
    wrong_current: "The current password is wrong.", "Le mot de passe actuel est incorrect.";
    twofa_section: "Two-factor authentication", "Authentification à deux facteurs";
    sessions_section: "Sessions", "Sessions";
    sessions_count: "Open sessions of your account", "Sessions ouvertes de votre compte";
    logout_everywhere: "Sign out everywhere", "Se déconnecter partout";
    logout_everywhere_help: "Ends every session of your account, this one included.", "Ferme toutes les sessions de votre compte, y compris celle-ci.";
    language_section: "Console language", "Langue de la console";
    save: "Save", "Enregistrer";
    language_saved: "Language saved.", "Langue enregistrée.";

    forbidden_title: "Access refused", "Accès refusé";
    forbidden_text: "Your role does not give access to this page.", "Votre rôle ne donne pas accès à cette page.";
    not_found_title: "Page not found", "Page introuvable";
    not_found_text: "There is no such page in the console.", "Cette page n’existe pas dans la console.";
    error_title: "Something went wrong", "Une erreur est survenue";
    error_text: "The server could not complete the request. The cause is in the server log.", "Le serveur n’a pas pu traiter la demande. La cause figure dans le journal du serveur.";
    back: "Back to the overview", "Retour à la vue d’ensemble";

    ev_login: "Signed in", "Connexion";
    ev_password_ok: "Password accepted, second factor awaited", "Mot de passe accepté, second facteur attendu";
    ev_login_failed: "Wrong password", "Mot de passe erroné";
    ev_factor_failed: "Wrong second-factor code", "Code de second facteur erroné";
    ev_recovery_code_used: "Signed in with a recovery code", "Connexion avec un code de secours";
    ev_logout: "Signed out", "Déconnexion";
    ev_logout_everywhere: "Signed out everywhere", "Déconnexion partout";
    ev_password_changed: "Password changed", "Mot de passe changé";
    ev_totp_enrolled: "Two-factor authentication set up", "Double facteur configuré";
    ev_totp_reset: "Two-factor authentication reset", "Double facteur réinitialisé";
    ev_operator_created: "Operator created", "Opérateur créé";
    ev_operator_disabled: "Operator disabled", "Opérateur désactivé";
    ev_setup_completed: "First administrator created", "Premier administrateur créé";
    ev_invitation_accepted: "Invitation accepted", "Invitation acceptée";
    ev_token_created: "API token created", "Jeton d’API créé";
    ev_token_revoked: "API token revoked", "Jeton d’API révoqué";
    ev_audit_verified: "Audit log verified", "Journal d’audit vérifié";

    subjects_title: "Find a person", "Trouver une personne";
    subjects_intro: "Look a person up by one of their identifiers. Say why you look: the reason and the view are recorded in the audit log.", "Recherchez une personne par l’un de ses identifiants. Indiquez pourquoi : le motif et la consultation sont inscrits au journal d’audit.";
    subjects_support_only: "Your role shows only what is held for support purposes.", "Votre rôle ne montre que ce qui est conservé pour le support.";
    field_kind: "Kind of identifier", "Type d’identifiant";
    field_identifier: "Identifier", "Identifiant";
    field_purpose: "Why you look (purpose)", "Pourquoi vous consultez (finalité)";
    search: "Look up", "Rechercher";
    no_subject: "Nobody is known with this identifier.", "Personne n’est connu avec cet identifiant.";
    bad_identifier: "This identifier is not valid for its kind.", "Cet identifiant n’est pas valide pour son type.";
    bad_purpose: "Choose a purpose you may read for.", "Choisissez une finalité pour laquelle vous pouvez consulter.";
    subject_label: "Subject", "Personne";
    known_since: "Known since", "Connue depuis";
    identifiers_label: "Identifiers held (kinds only; values are never stored)", "Identifiants détenus (types seulement ; les valeurs ne sont jamais stockées)";
    col_category: "Data", "Donnée";
    col_value: "Value", "Valeur";
    col_source: "Source", "Source";
    col_collected: "Collected", "Collectée";
    col_deadline: "Deleted on", "Supprimée le";
    waiting_for: "when this happens: {event}", "lorsque survient : {event}";
    legal_hold: "legal hold", "conservation légale";
    restricted: "restricted (art. 18): value withheld", "limitée (art. 18) : valeur masquée";
    nothing_held: "Nothing is held on this person that you may see.", "Rien de ce qui est conservé sur cette personne ne vous est visible.";
    viewed_for: "Viewed for the purpose {purpose}; this view is in the audit log.", "Consulté pour la finalité {purpose} ; cette consultation figure au journal d’audit.";

    audit_title: "Audit log", "Journal d’audit";
    audit_intro: "Every read, write, erasure and purge of personal data, and every console sign-in, in a hash chain. Entries hold commitments, never the personal data itself.", "Chaque lecture, écriture, effacement et purge de données personnelles, et chaque connexion à la console, dans une chaîne de hachage. Les entrées contiennent des engagements, jamais les données personnelles elles-mêmes.";
    col_seq: "No.", "N°";
    col_actor: "Actor", "Acteur";
    col_action: "Action", "Action";
    col_subject: "Subject (commitment)", "Personne (engagement)";
    verify_chain: "Verify the whole chain", "Vérifier toute la chaîne";
    chain_ok: "The chain is intact: {n} entries; last entry {seq}, hash {hash}. Keep this pair elsewhere to detect a later rewrite.", "La chaîne est intacte : {n} entrées ; dernière entrée {seq}, empreinte {hash}. Conservez ce couple ailleurs pour détecter une réécriture ultérieure.";
    chain_broken: "The audit log is broken: {problem}", "Le journal d’audit est rompu : {problem}";
    newer: "Newer entries", "Entrées plus récentes";
    audit_panel: "Audit log", "Journal d’audit";
    audit_entries: "Entries", "Entrées";
    open_audit: "Open and verify the audit log", "Ouvrir et vérifier le journal d’audit";
    last_verified: "Last verified", "Dernière vérification";
    intact: "intact", "intacte";
    broken: "broken", "rompue";
    last_purge: "Last retention purge", "Dernière purge de conservation";
    records_deleted: "records deleted", "enregistrements supprimés";
    no_purge_yet: "nothing has expired yet", "rien n’a encore expiré";
}

/// The console's language: the operator's choice, else `?lang=`, else `Accept-Language`, else
/// English.
pub fn pick(preference: Option<&str>, query: Option<&str>, accept: Option<&str>) -> &'static Text {
    let is_fr = |s: &str| {
        let s = s.trim().to_ascii_lowercase();
        s == "fr" || s.starts_with("fr-")
    };
    let is_en = |s: &str| {
        let s = s.trim().to_ascii_lowercase();
        s == "en" || s.starts_with("en-")
    };
    for choice in [preference, query].into_iter().flatten() {
        if is_fr(choice) {
            return &FR;
        }
        if is_en(choice) {
            return &EN;
        }
    }
    if let Some(accept) = accept {
        // The first of en/fr in the header's order of preference (q-values honoured roughly:
        // ranges with q=0 are skipped).
        let mut best: Option<(f32, &'static Text)> = None;
        for item in accept.split(',').take(32) {
            let mut parts = item.split(';');
            let tag = parts.next().unwrap_or("");
            let q = parts
                .find_map(|p| p.trim().strip_prefix("q="))
                .and_then(|v| v.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            let text: &'static Text = if is_fr(tag) {
                &FR
            } else if is_en(tag) {
                &EN
            } else {
                continue;
            };
            if q > 0.0 && best.is_none_or(|(bq, _)| q > bq) {
                best = Some((q, text));
            }
        }
        if let Some((_, t)) = best {
            return t;
        }
    }
    &EN
}

/// Replaces `{key}` placeholders.
pub fn fill(template: &str, values: &[(&str, &str)]) -> String {
    let mut out = template.to_string();
    for (k, v) in values {
        out = out.replace(&format!("{{{k}}}"), v);
    }
    out
}

impl Text {
    /// The wording of a security-log event.
    pub fn event(&self, key: &str) -> &'static str {
        match key {
            "login" => self.ev_login,
            "password_ok" => self.ev_password_ok,
            "login_failed" => self.ev_login_failed,
            "factor_failed" => self.ev_factor_failed,
            "recovery_code_used" => self.ev_recovery_code_used,
            "logout" => self.ev_logout,
            "logout_everywhere" => self.ev_logout_everywhere,
            "password_changed" => self.ev_password_changed,
            "totp_enrolled" => self.ev_totp_enrolled,
            "totp_reset" => self.ev_totp_reset,
            "operator_created" => self.ev_operator_created,
            "operator_disabled" => self.ev_operator_disabled,
            "setup_completed" => self.ev_setup_completed,
            "invitation_accepted" => self.ev_invitation_accepted,
            "token_created" => self.ev_token_created,
            "token_revoked" => self.ev_token_revoked,
            "audit_verified" => self.ev_audit_verified,
            _ => "?",
        }
    }

    /// The message for a refused password.
    pub fn password_problem(
        &self,
        problem: &tutela_domain::operator::PasswordProblem,
    ) -> &'static str {
        match problem.key() {
            "too_short" => self.pw_too_short,
            "too_long" => self.pw_too_long,
            "common" => self.pw_common,
            "common_decorated" => self.pw_common_decorated,
            "pattern" => self.pw_pattern,
            _ => self.pw_contains_login,
        }
    }

    pub fn role(&self, role: tutela_domain::operator::Role) -> &'static str {
        use tutela_domain::operator::Role;
        match role {
            Role::Admin => self.role_admin_short,
            Role::Dpo => self.role_dpo_short,
            Role::Support => self.role_support_short,
            Role::Analyst => self.role_analyst_short,
        }
    }

    pub fn role_long(&self, role: tutela_domain::operator::Role) -> &'static str {
        use tutela_domain::operator::Role;
        match role {
            Role::Admin => self.role_admin,
            Role::Dpo => self.role_dpo,
            Role::Support => self.role_support,
            Role::Analyst => self.role_analyst,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_string_is_translated() {
        for (key, en, fr) in all_pairs() {
            assert!(!en.trim().is_empty() && !fr.trim().is_empty(), "{key}");
            // Placeholders match between the languages.
            let holes = |s: &str| {
                let mut v: Vec<String> = s
                    .split('{')
                    .skip(1)
                    .filter_map(|p| p.split_once('}').map(|(k, _)| k.to_string()))
                    .collect();
                v.sort();
                v
            };
            assert_eq!(holes(en), holes(fr), "{key}");
        }
    }

    #[test]
    fn language_choice() {
        assert_eq!(pick(None, None, None).code, "en");
        assert_eq!(pick(None, None, Some("fr-FR,fr;q=0.9,en;q=0.5")).code, "fr");
        assert_eq!(pick(None, None, Some("de,en;q=0.3,fr;q=0.8")).code, "fr");
        assert_eq!(pick(None, Some("en"), Some("fr")).code, "en");
        assert_eq!(pick(Some("fr"), Some("en"), None).code, "fr");
        assert_eq!(pick(None, Some("xx"), Some("fr;q=0")).code, "en");
        assert_eq!(fill("a {x} b", &[("x", "1")]), "a 1 b");
    }
}

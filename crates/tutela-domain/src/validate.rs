//! Loading and validating a register.
//!
//! [`check`] reads a register in three steps and reports **every** problem it finds, each with the
//! line and column of the offending value and, where it helps, a hint:
//!
//! 1. the size is bounded ([`MAX_REGISTER_BYTES`]);
//! 2. the TOML is parsed into [`Register`] (syntax errors and shape errors: missing field, wrong
//!    type, unknown field). The model is lenient, so an unknown enum value or a bad duration does
//!    not stop this step;
//! 3. semantic validation walks the whole register and collects all errors and warnings. Each
//!    finding names a path such as `purposes[2].retention[0].keep`, which is mapped to a span of
//!    the source through toml's spanned document ([`DeTable`]); a path that has no span of its own
//!    (a missing optional key) falls back to its nearest parent.
//!
//! [`load`] is the strict entry point: it returns the register only when there is no error.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::ops::Range;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::register::{
    AfterDeath, Anchor, CookieCategory, LegalBasis, MinimisationRule, Period, Purpose,
    RecipientRole, Register, Sensitivity, Text,
};

/// The largest register accepted, in bytes (1 MiB).
pub const MAX_REGISTER_BYTES: usize = 1024 * 1024;

/// The register format version this Tutela reads.
pub const SCHEMA_VERSION: u32 = 1;

/// The provider of a cookie set by the controller's own site.
pub const FIRST_PARTY: &str = "first-party";

/// Whether a finding stops the register from being used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// The register can't be used until it is fixed.
    Error,
    /// The register is usable, but something looks wrong (e.g. a category no purpose uses).
    Warning,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Error => "error",
            Self::Warning => "warning",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One problem found in a register, located in its file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: String,
    /// 1-based line (0 when the problem has no single place, e.g. a file that is too large).
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    pub severity: Severity,
    pub message: String,
    pub hint: Option<String>,
    /// Where in the register the problem is, e.g. `purposes[2].retention[0].keep` (None for
    /// syntax and shape errors, which only have a position).
    pub path: Option<String>,
}

impl Diagnostic {
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{}:{}:{}: {}: {}",
            self.file, self.line, self.column, self.severity, self.message
        )?;
        if let Some(h) = &self.hint {
            writeln!(f, "  hint: {h}")?;
        }
        Ok(())
    }
}

/// Every problem found in a register, in the order of the file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    /// Whether any finding is an error (warnings alone don't make a register unusable).
    pub fn has_errors(&self) -> bool {
        self.0.iter().any(Diagnostic::is_error)
    }

    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter().filter(|d| d.severity == Severity::Error)
    }

    pub fn warnings(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter().filter(|d| d.severity == Severity::Warning)
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Diagnostic> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<'a> IntoIterator for &'a Diagnostics {
    type Item = &'a Diagnostic;
    type IntoIter = std::slice::Iter<'a, Diagnostic>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in &self.0 {
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

/// Parses and validates a register. `file` is the name used in diagnostics.
///
/// Fails when there is at least one error; the returned diagnostics then hold the warnings too.
/// Use [`check`] to see the warnings of a valid register.
pub fn load(source: &str, file: &str) -> Result<Register, Diagnostics> {
    match check(source, file) {
        (Some(register), _) => Ok(register),
        (None, diagnostics) => Err(diagnostics),
    }
}

/// Parses and validates a register, returning every error and warning.
///
/// The register is returned only when there is no error (it may come with warnings), so code that
/// uses it never sees an `Unknown(..)` value or an invalid period.
pub fn check(source: &str, file: &str) -> (Option<Register>, Diagnostics) {
    if source.len() > MAX_REGISTER_BYTES {
        let d = Diagnostic {
            file: file.to_string(),
            line: 0,
            column: 0,
            severity: Severity::Error,
            message: format!(
                "the register is {} bytes long; the limit is {MAX_REGISTER_BYTES} bytes (1 MiB)",
                source.len()
            ),
            hint: Some(
                "a register describes processing activities, not data: remove what does not \
                 belong in it"
                    .into(),
            ),
            path: None,
        };
        return (None, Diagnostics(vec![d]));
    }

    let lines = LineIndex::new(source);
    let diag = |span: Option<Range<usize>>, message: String, hint: Option<String>| {
        let (line, column) = span.map_or((0, 0), |s| lines.locate(source, s.start));
        Diagnostic {
            file: file.to_string(),
            line,
            column,
            severity: Severity::Error,
            message,
            hint,
            path: None,
        }
    };

    let register: Register = match toml::from_str(source) {
        Ok(r) => r,
        Err(e) => {
            let message = e.message().trim_end().to_string();
            let value = e.span().and_then(|r| source.get(r)).unwrap_or("");
            let hint = shape_hint(&message, value);
            return (None, Diagnostics(vec![diag(e.span(), message, hint)]));
        }
    };

    let mut checker = Checker {
        file,
        source,
        lines,
        // Can't fail once `from_str` succeeded; without it, findings fall back to line 1.
        doc: DeTable::parse(source).ok(),
        out: Vec::new(),
    };
    validate(&register, &mut checker);
    let mut out = checker.out;
    out.sort_by_key(|d| (d.line, d.column));
    let diagnostics = Diagnostics(out);
    if diagnostics.has_errors() {
        (None, diagnostics)
    } else {
        (Some(register), diagnostics)
    }
}

/// Extra help for the shape errors a register author is most likely to make. `value` is the
/// source text the error points at.
fn shape_hint(message: &str, value: &str) -> Option<String> {
    if message.contains("expected a map") {
        Some(
            "a text has one entry per language: write `label.en = \"…\"` and `label.fr = \"…\"`"
                .into(),
        )
    } else if message.contains("expected a string")
        && value.starts_with(|c: char| c.is_ascii_digit())
    {
        Some("quote dates and durations: `date = \"2026-11-29\"`, `keep = \"1 year\"`".into())
    } else {
        None
    }
}

/// Byte offset -> 1-based line and column.
struct LineIndex {
    starts: Vec<usize>,
}

impl LineIndex {
    fn new(source: &str) -> Self {
        let mut starts = vec![0];
        starts.extend(source.match_indices('\n').map(|(i, _)| i + 1));
        Self { starts }
    }

    /// Line and column (in characters) of a byte offset.
    fn locate(&self, source: &str, offset: usize) -> (usize, usize) {
        let mut offset = offset.min(source.len());
        while !source.is_char_boundary(offset) {
            offset -= 1;
        }
        let line = self.starts.partition_point(|&s| s <= offset) - 1;
        let column = source[self.starts[line]..offset].chars().count() + 1;
        (line + 1, column)
    }
}

/// One step of a path into the document.
enum Step<'p> {
    Key(&'p str),
    Index(usize),
}

/// Splits `purposes[2].retention[0].keep` into keys and indexes.
fn steps(path: &str) -> Vec<Step<'_>> {
    let mut out = Vec::new();
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let (key, mut rest) = part.split_once('[').unwrap_or((part, ""));
        if !key.is_empty() {
            out.push(Step::Key(key));
        }
        while let Some((index, after)) = rest.split_once(']') {
            if let Ok(i) = index.parse() {
                out.push(Step::Index(i));
            }
            rest = after.strip_prefix('[').unwrap_or(after);
        }
    }
    out
}

struct Checker<'a> {
    file: &'a str,
    source: &'a str,
    lines: LineIndex,
    doc: Option<Spanned<DeTable<'a>>>,
    out: Vec<Diagnostic>,
}

impl Checker<'_> {
    /// The span of the value at `path`, or of its nearest ancestor that has one.
    fn span(&self, path: &str) -> Range<usize> {
        let Some(doc) = &self.doc else {
            return 0..0;
        };
        let mut best = doc.span();
        let mut table: Option<&DeTable<'_>> = Some(doc.get_ref());
        let mut array: Option<&[Spanned<DeValue<'_>>]> = None;
        for step in steps(path) {
            let next = match step {
                Step::Key(k) => table.and_then(|t| t.get(k)),
                Step::Index(i) => array.and_then(|a| a.get(i)),
            };
            let Some(value) = next else { break };
            best = value.span();
            table = value.get_ref().as_table();
            array = value.get_ref().as_array().map(|a| &**a);
        }
        best
    }

    fn line_of(&self, path: &str) -> usize {
        self.lines.locate(self.source, self.span(path).start).0
    }

    fn push(&mut self, severity: Severity, path: &str, message: String, hint: Option<String>) {
        let (line, column) = self.lines.locate(self.source, self.span(path).start);
        self.out.push(Diagnostic {
            file: self.file.to_string(),
            line,
            column,
            severity,
            message,
            hint,
            path: Some(path.to_string()),
        });
    }

    fn error(&mut self, path: &str, message: String, hint: Option<String>) {
        self.push(Severity::Error, path, message, hint);
    }

    fn warning(&mut self, path: &str, message: String, hint: Option<String>) {
        self.push(Severity::Warning, path, message, hint);
    }

    /// An enum value Tutela does not know.
    fn known(&mut self, path: &str, known: bool, value: &str, what: &str, all: &[&str]) {
        if known {
            return;
        }
        let accepted = list(all.iter().copied());
        let hint = match suggest(value, all.iter().copied()) {
            Some(s) => format!("did you mean `{s}`? accepted values: {accepted}"),
            None => format!("accepted values: {accepted}"),
        };
        self.error(path, format!("unknown {what} `{value}`"), Some(hint));
    }

    fn period(&mut self, path: &str, period: &Period) {
        if let Period::Invalid(text) = period {
            self.error(
                path,
                format!("`{text}` is not a duration"),
                Some(
                    "write it as `180 days`, `12 months` or `1 year`: a whole number followed by \
                     hours, days, weeks, months or years"
                        .into(),
                ),
            );
        }
    }

    /// Every language of the notice must have a non-empty translation. `owner` names what the
    /// text belongs to, for people: "purpose `support`".
    fn text(&mut self, path: &str, owner: &str, text: &Text, languages: &[String]) {
        let field = path.rsplit('.').next().unwrap_or(path);
        for lang in languages {
            let problem = match text.0.get(lang) {
                None => "has no",
                Some(v) if v.trim().is_empty() => "has an empty",
                Some(_) => continue,
            };
            self.error(
                &format!("{path}.{lang}"),
                format!(
                    "`{field}` of {owner} {problem} {} translation (`{lang}`)",
                    language_name(lang)
                ),
                Some(format!(
                    "write `{field}.{lang} = \"…\"`: every text must exist in each language of the \
                     notice ({})",
                    languages.join(", ")
                )),
            );
        }
        for lang in text.0.keys() {
            if !languages.contains(lang) {
                self.warning(
                    &format!("{path}.{lang}"),
                    format!(
                        "`{field}` of {owner} has a translation in `{lang}`, which is not a \
                         language of the notice"
                    ),
                    Some(format!(
                        "add \"{lang}\" to `notice.languages`, or remove the translation"
                    )),
                );
            }
        }
    }

    /// Reports empty and duplicate ids; `items` are (path of the id, id).
    fn unique_ids<'r>(&mut self, what: &str, items: impl IntoIterator<Item = (String, &'r str)>) {
        let mut seen: HashMap<&str, String> = HashMap::new();
        for (path, id) in items {
            if id.trim().is_empty() {
                self.error(
                    &path,
                    format!("{what} with an empty id"),
                    Some("give it a short, stable id such as `email` or `support`".into()),
                );
                continue;
            }
            if let Some(first) = seen.get(id) {
                let line = self.line_of(first);
                self.error(
                    &path,
                    format!("duplicate {what} id `{id}`"),
                    Some(format!(
                        "`{id}` is already the id of the {what} at line {line}; ids must be unique"
                    )),
                );
            } else {
                seen.insert(id, path);
            }
        }
    }

    /// Reports references to ids that are not declared, and references listed twice.
    fn references(
        &mut self,
        purpose: &str,
        path: &str,
        refs: &[String],
        (what, table): (&str, &str),
        declared: &[&str],
    ) {
        let mut seen = HashSet::new();
        for (k, id) in refs.iter().enumerate() {
            let item = format!("{path}[{k}]");
            if !declared.contains(&id.as_str()) {
                let hint = match suggest(id, declared.iter().copied()) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None if declared.is_empty() => {
                        format!("declare it in a `[[{table}]]` table; none is declared yet")
                    }
                    None => format!(
                        "declare it in a `[[{table}]]` table, or use one of: {}",
                        list(declared.iter().copied())
                    ),
                };
                self.error(
                    &item,
                    format!("purpose `{purpose}` names an unknown {what} `{id}`"),
                    Some(hint),
                );
            } else if !seen.insert(id.as_str()) {
                self.warning(
                    &item,
                    format!("purpose `{purpose}` lists {what} `{id}` twice"),
                    Some("remove the second mention".into()),
                );
            }
        }
    }
}

/// `a`, `b`, `c`
fn list<'a>(items: impl IntoIterator<Item = &'a str>) -> String {
    items
        .into_iter()
        .map(|s| format!("`{s}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn language_name(code: &str) -> &str {
    match code {
        "en" => "English",
        "fr" => "French",
        "de" => "German",
        "es" => "Spanish",
        "it" => "Italian",
        "nl" => "Dutch",
        "pt" => "Portuguese",
        "pl" => "Polish",
        other => other,
    }
}

/// The closest candidate to a misspelt value, if one is close enough to be a likely typo.
fn suggest<'a>(wrong: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let wrong = wrong.to_lowercase();
    let limit = (wrong.chars().count() / 3).max(1);
    candidates
        .into_iter()
        .map(|c| (edit_distance(&wrong, &c.to_lowercase()), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Optimal-string-alignment distance: insertions, deletions, substitutions and transpositions.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

/// Semantic validation of a register that parsed.
fn validate(reg: &Register, c: &mut Checker<'_>) {
    if reg.schema != SCHEMA_VERSION {
        c.error(
            "schema",
            format!("unsupported register schema version {}", reg.schema),
            Some(format!(
                "this version of Tutela reads `schema = {SCHEMA_VERSION}`"
            )),
        );
    }

    let languages = check_languages(reg, c);
    check_texts(reg, c, &languages);
    check_rights(reg, c);

    c.unique_ids(
        "subject",
        reg.subjects
            .iter()
            .enumerate()
            .map(|(i, s)| (format!("subjects[{i}].id"), s.id.as_str())),
    );
    c.unique_ids(
        "category",
        reg.categories
            .iter()
            .enumerate()
            .map(|(i, x)| (format!("categories[{i}].id"), x.id.as_str())),
    );
    c.unique_ids(
        "recipient",
        reg.recipients
            .iter()
            .enumerate()
            .map(|(i, r)| (format!("recipients[{i}].id"), r.id.as_str())),
    );
    c.unique_ids(
        "purpose",
        reg.purposes
            .iter()
            .enumerate()
            .map(|(i, p)| (format!("purposes[{i}].id"), p.id.as_str())),
    );
    c.unique_ids(
        "revision",
        reg.revisions
            .iter()
            .enumerate()
            .map(|(i, r)| (format!("revisions[{i}].id"), r.id.as_str())),
    );

    for (i, cat) in reg.categories.iter().enumerate() {
        c.known(
            &format!("categories[{i}].sensitivity"),
            cat.sensitivity.is_known(),
            cat.sensitivity.as_str(),
            "sensitivity",
            Sensitivity::ALL,
        );
        if let Some(rule) = &cat.minimise {
            c.known(
                &format!("categories[{i}].minimise"),
                rule.is_known(),
                rule.as_str(),
                "minimisation rule",
                MinimisationRule::ALL,
            );
        }
    }
    for (i, r) in reg.recipients.iter().enumerate() {
        c.known(
            &format!("recipients[{i}].role"),
            r.role.is_known(),
            r.role.as_str(),
            "recipient role",
            RecipientRole::ALL,
        );
    }

    for (i, purpose) in reg.purposes.iter().enumerate() {
        check_purpose(reg, c, i, purpose);
    }

    check_unused(reg, c);
    check_revisions(reg, c);
    check_consent(reg, c);
}

/// Checks `notice.languages` and `notice.default_language`; returns the languages every text
/// must exist in.
fn check_languages(reg: &Register, c: &mut Checker<'_>) -> Vec<String> {
    let notice = &reg.notice;
    let mut languages: Vec<String> = Vec::new();
    for (k, lang) in notice.languages.iter().enumerate() {
        if lang.trim().is_empty() {
            c.error(
                &format!("notice.languages[{k}]"),
                "empty language code".into(),
                Some("use a language code such as \"en\" or \"fr\"".into()),
            );
        } else if languages.contains(lang) {
            c.warning(
                &format!("notice.languages[{k}]"),
                format!("language `{lang}` is listed twice"),
                Some("remove the second mention".into()),
            );
        } else {
            languages.push(lang.clone());
        }
    }
    if !languages.iter().any(|l| l == "en") {
        c.error(
            "notice.languages",
            "the notice's languages do not include English (`en`)".into(),
            Some("add \"en\" to `languages`: English is the fallback of every text".into()),
        );
    }
    if !languages.contains(&notice.default_language) {
        c.error(
            "notice.default_language",
            format!(
                "the default language `{}` is not one of the notice's languages",
                notice.default_language
            ),
            Some(format!(
                "use one of {}, or add it to `languages`",
                list(languages.iter().map(String::as_str))
            )),
        );
    }
    languages
}

/// Every `Text` of the register, wherever it is, in every language.
fn check_texts(reg: &Register, c: &mut Checker<'_>, languages: &[String]) {
    if languages.is_empty() {
        return;
    }
    let authority = "the authority";
    c.text("authority.name", authority, &reg.authority.name, languages);
    c.text("notice.title", "the notice", &reg.notice.title, languages);
    let notice = "the notice";
    c.text(
        "notice.introduction",
        notice,
        &reg.notice.introduction,
        languages,
    );
    let rights = "the rights settings";
    c.text(
        "rights.identity_proof",
        rights,
        &reg.rights.identity_proof,
        languages,
    );
    for (i, s) in reg.subjects.iter().enumerate() {
        let owner = format!("subject `{}`", s.id);
        c.text(&format!("subjects[{i}].label"), &owner, &s.label, languages);
    }
    for (i, x) in reg.categories.iter().enumerate() {
        let owner = format!("category `{}`", x.id);
        c.text(
            &format!("categories[{i}].label"),
            &owner,
            &x.label,
            languages,
        );
    }
    for (i, r) in reg.recipients.iter().enumerate() {
        let owner = format!("recipient `{}`", r.id);
        c.text(
            &format!("recipients[{i}].service"),
            &owner,
            &r.service,
            languages,
        );
        if let Some(t) = &r.transfer_safeguards {
            let path = format!("recipients[{i}].transfer_safeguards");
            c.text(&path, &owner, t, languages);
        }
    }
    for (i, p) in reg.purposes.iter().enumerate() {
        let at = format!("purposes[{i}]");
        let owner = format!("purpose `{}`", p.id);
        c.text(&format!("{at}.label"), &owner, &p.label, languages);
        c.text(
            &format!("{at}.description"),
            &owner,
            &p.description,
            languages,
        );
        if let Some(t) = &p.legitimate_interest {
            c.text(&format!("{at}.legitimate_interest"), &owner, t, languages);
        }
        c.text(&format!("{at}.source"), &owner, &p.source, languages);
        for (j, rule) in p.retention.iter().enumerate() {
            let rule_owner = format!("retention rule {} of purpose `{}`", j + 1, p.id);
            if let Some(t) = &rule.law {
                c.text(
                    &format!("{at}.retention[{j}].law"),
                    &rule_owner,
                    t,
                    languages,
                );
            }
            if let Some(t) = &rule.note {
                c.text(
                    &format!("{at}.retention[{j}].note"),
                    &rule_owner,
                    t,
                    languages,
                );
            }
        }
        for (k, cookie) in p.cookies.iter().enumerate() {
            let cookie_owner = format!("cookie `{}` of purpose `{}`", cookie.name, p.id);
            let path = format!("{at}.cookies[{k}].description");
            c.text(&path, &cookie_owner, &cookie.description, languages);
        }
    }
    for (i, r) in reg.revisions.iter().enumerate() {
        let owner = format!("revision `{}`", r.id);
        c.text(
            &format!("revisions[{i}].summary"),
            &owner,
            &r.summary,
            languages,
        );
    }
}

fn check_rights(reg: &Register, c: &mut Checker<'_>) {
    let rights = &reg.rights;
    c.period("rights.reply_within", &rights.reply_within);
    c.period("rights.max_extension", &rights.max_extension);
    c.period("rights.request_records_kept", &rights.request_records_kept);
    // GDPR art. 12(3): one month to answer, extendable by two further months at most.
    for (path, period, limit, what) in [
        (
            "rights.reply_within",
            &rights.reply_within,
            "1 month",
            "reply deadline",
        ),
        (
            "rights.max_extension",
            &rights.max_extension,
            "2 months",
            "extension",
        ),
    ] {
        if exceeds(period, &Period::parse(limit)) {
            c.error(
                path,
                format!("a {what} of {period} is longer than GDPR art. 12(3) allows ({limit})"),
                Some(format!("write `{limit}` or less; shorter is allowed")),
            );
        }
    }
    c.known(
        "rights.after_death",
        rights.after_death.is_known(),
        rights.after_death.as_str(),
        "after-death rule",
        AfterDeath::ALL,
    );
}

/// Whether `period` can last longer than `limit`: compared from 1 February of a common year,
/// where calendar months are shortest, so "30 days" counts as longer than "1 month".
fn exceeds(period: &Period, limit: &Period) -> bool {
    let start: jiff::Timestamp = "2026-02-01T00:00:00Z".parse().expect("valid constant");
    match (
        crate::retention::add_period(start, period),
        crate::retention::add_period(start, limit),
    ) {
        (Ok(a), Ok(b)) => a > b,
        _ => false,
    }
}

fn check_purpose(reg: &Register, c: &mut Checker<'_>, i: usize, p: &Purpose) {
    let at = format!("purposes[{i}]");
    let name = &p.id;

    c.known(
        &format!("{at}.legal_basis"),
        p.legal_basis.is_known(),
        p.legal_basis.as_str(),
        "legal basis",
        LegalBasis::ALL,
    );
    if p.legal_basis == LegalBasis::LegitimateInterest && p.legitimate_interest.is_none() {
        c.error(
            &format!("{at}.legal_basis"),
            format!("purpose `{name}` is based on legitimate interest but does not say which"),
            Some(
                "add `legitimate_interest.en = \"…\"` (and the other languages): the notice must \
                 name the interest pursued (GDPR art. 13(1)(d))"
                    .into(),
            ),
        );
    }
    if let Some(cat) = &p.consent_category {
        c.known(
            &format!("{at}.consent_category"),
            cat.is_known(),
            cat.as_str(),
            "cookie category",
            CookieCategory::ALL,
        );
    } else if p.legal_basis == LegalBasis::Consent {
        let mut categories: Vec<&CookieCategory> = p.cookies.iter().map(|k| &k.category).collect();
        categories.sort();
        categories.dedup();
        if categories.len() != 1 {
            let why = if categories.is_empty() {
                "has no `consent_category`"
            } else {
                "has no `consent_category` and its cookies belong to several categories"
            };
            c.error(
                &format!("{at}.legal_basis"),
                format!("consent-based purpose `{name}` {why}"),
                Some(format!(
                    "add `consent_category = \"…\"` ({}): the consent banner asks for this \
                     category before the purpose's scripts run",
                    list(CookieCategory::ALL.iter().copied())
                )),
            );
        }
    }

    let subjects: Vec<&str> = reg.subjects.iter().map(|s| s.id.as_str()).collect();
    let categories: Vec<&str> = reg.categories.iter().map(|x| x.id.as_str()).collect();
    let recipients: Vec<&str> = reg.recipients.iter().map(|r| r.id.as_str()).collect();
    let subject = ("subject", "subjects");
    c.references(
        name,
        &format!("{at}.subjects"),
        &p.subjects,
        subject,
        &subjects,
    );
    let category = ("category", "categories");
    c.references(
        name,
        &format!("{at}.categories"),
        &p.categories,
        category,
        &categories,
    );
    let recipient = ("recipient", "recipients");
    c.references(
        name,
        &format!("{at}.recipients"),
        &p.recipients,
        recipient,
        &recipients,
    );

    check_retention(reg, c, &at, p);

    let mut names: HashMap<&str, usize> = HashMap::new();
    for (k, cookie) in p.cookies.iter().enumerate() {
        let ck = format!("{at}.cookies[{k}]");
        if cookie.name.trim().is_empty() {
            c.error(
                &format!("{ck}.name"),
                "cookie with an empty name".into(),
                Some("write the name the browser stores, e.g. `_pk_id`".into()),
            );
        } else if let Some(first) = names.get(cookie.name.as_str()) {
            let line = c.line_of(&format!("{at}.cookies[{first}].name"));
            c.error(
                &format!("{ck}.name"),
                format!(
                    "cookie `{}` is declared twice in purpose `{name}`",
                    cookie.name
                ),
                Some(format!("it is already declared at line {line}")),
            );
        } else {
            names.insert(&cookie.name, k);
        }
        c.known(
            &format!("{ck}.category"),
            cookie.category.is_known(),
            cookie.category.as_str(),
            "cookie category",
            CookieCategory::ALL,
        );
        c.period(&format!("{ck}.lifetime"), &cookie.lifetime);
        if let Some(provider) = &cookie.provider {
            if provider == FIRST_PARTY {
                // Set by the site itself.
            } else if !recipients.contains(&provider.as_str()) {
                let hint = match suggest(provider, recipients.iter().copied()) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => format!(
                        "write `{FIRST_PARTY}` for the site's own cookies, or the id of a \
                         recipient: {}",
                        list(recipients.iter().copied())
                    ),
                };
                c.error(
                    &format!("{ck}.provider"),
                    format!(
                        "cookie provider `{provider}` is neither `{FIRST_PARTY}` nor a recipient"
                    ),
                    Some(hint),
                );
            } else if !p.recipients.contains(provider) {
                c.warning(
                    &format!("{ck}.provider"),
                    format!(
                        "cookie `{}` is set by `{provider}`, which is not a recipient of purpose \
                         `{name}`",
                        cookie.name
                    ),
                    Some(format!("add \"{provider}\" to the purpose's `recipients`")),
                );
            }
        }
    }
}

fn check_retention(reg: &Register, c: &mut Checker<'_>, at: &str, p: &Purpose) {
    let name = &p.id;
    if p.retention.is_empty() {
        c.error(
            &format!("{at}.id"),
            format!("purpose `{name}` has no retention rule"),
            Some(
                "add a `[[purposes.retention]]` table, e.g. `from = \"collection\"` and \
                 `keep = \"1 year\"`: everything stored needs a deadline"
                    .into(),
            ),
        );
        return;
    }

    let mut default_rule: Option<usize> = None;
    // category -> index of the rule that covers it
    let mut covered: HashMap<&str, usize> = HashMap::new();
    for (j, rule) in p.retention.iter().enumerate() {
        let rp = format!("{at}.retention[{j}]");
        c.known(
            &format!("{rp}.from"),
            rule.from.is_known(),
            rule.from.as_str(),
            "retention anchor",
            Anchor::ALL,
        );
        if let Some(basis) = &rule.basis {
            c.known(
                &format!("{rp}.basis"),
                basis.is_known(),
                basis.as_str(),
                "legal basis",
                LegalBasis::ALL,
            );
        }
        match (&rule.from, &rule.keep) {
            (Anchor::WhileOpen, Some(_)) => c.error(
                &format!("{rp}.keep"),
                "a `while_open` retention rule has no duration".into(),
                Some(
                    "remove `keep`: the data is deleted when the request closes; or count the \
                     duration from another anchor"
                        .into(),
                ),
            ),
            (Anchor::Unknown(_), _) | (Anchor::WhileOpen, None) => {}
            (from, None) => c.error(
                &format!("{rp}.from"),
                format!("a retention rule counted from `{from}` needs a duration"),
                Some("add `keep = \"…\"`, e.g. `keep = \"1 year\"`".into()),
            ),
            (_, Some(period)) => c.period(&format!("{rp}.keep"), period),
        }

        if rule.categories.is_empty() {
            if let Some(first) = default_rule {
                let line = c.line_of(&format!("{at}.retention[{first}]"));
                c.error(
                    &rp,
                    format!("purpose `{name}` has two default retention rules"),
                    Some(format!(
                        "the rule at line {line} already applies to every category not named by \
                         another rule; give this one `categories = [\"…\"]`"
                    )),
                );
            } else {
                default_rule = Some(j);
            }
        }
        for (k, cat) in rule.categories.iter().enumerate() {
            let cp = format!("{rp}.categories[{k}]");
            if !p.categories.contains(cat) {
                c.error(
                    &cp,
                    format!("the retention rule names category `{cat}`, which purpose `{name}` does not declare"),
                    Some(format!(
                        "add \"{cat}\" to the purpose's `categories`, or remove it from this rule"
                    )),
                );
            } else if let Some(first) = covered.get(cat.as_str()) {
                let line = c.line_of(&format!("{at}.retention[{first}]"));
                c.error(
                    &cp,
                    format!("category `{cat}` has two retention rules in purpose `{name}`"),
                    Some(format!(
                        "the rule at line {line} already covers it; keep one of the two"
                    )),
                );
            } else {
                covered.insert(cat, j);
            }
        }
    }

    if default_rule.is_none() {
        for (k, cat) in p.categories.iter().enumerate() {
            let never_stored = reg.category(cat).is_some_and(|x| x.never_store);
            if !covered.contains_key(cat.as_str()) && !never_stored && reg.category(cat).is_some() {
                c.error(
                    &format!("{at}.categories[{k}]"),
                    format!("category `{cat}` of purpose `{name}` has no retention rule"),
                    Some(
                        "name it in a rule's `categories`, or add a default rule without \
                         `categories`"
                            .into(),
                    ),
                );
            }
        }
    }
}

/// Declared things nobody uses: harmless, but usually a mistake.
fn check_unused(reg: &Register, c: &mut Checker<'_>) {
    let used = |f: &dyn Fn(&Purpose) -> &Vec<String>, id: &str| {
        reg.purposes.iter().any(|p| f(p).iter().any(|x| x == id))
    };
    for (i, x) in reg.categories.iter().enumerate() {
        if !x.id.is_empty() && !used(&|p| &p.categories, &x.id) {
            c.warning(
                &format!("categories[{i}].id"),
                format!("category `{}` is not used by any purpose", x.id),
                Some(
                    "add it to the `categories` of the purposes that process it, or remove it"
                        .into(),
                ),
            );
        }
    }
    for (i, r) in reg.recipients.iter().enumerate() {
        let provides_cookie = reg.purposes.iter().any(|p| {
            p.cookies
                .iter()
                .any(|k| k.provider.as_deref() == Some(&r.id))
        });
        if !r.id.is_empty() && !used(&|p| &p.recipients, &r.id) && !provides_cookie {
            c.warning(
                &format!("recipients[{i}].id"),
                format!("recipient `{}` does not receive data for any purpose", r.id),
                Some("add it to the `recipients` of the purposes it serves, or remove it".into()),
            );
        }
    }
    for (i, s) in reg.subjects.iter().enumerate() {
        if !s.id.is_empty() && !used(&|p| &p.subjects, &s.id) {
            c.warning(
                &format!("subjects[{i}].id"),
                format!("subject `{}` is not concerned by any purpose", s.id),
                Some(
                    "add it to the `subjects` of the purposes that concern it, or remove it".into(),
                ),
            );
        }
    }
}

fn check_revisions(reg: &Register, c: &mut Checker<'_>) {
    if reg.revisions.is_empty() {
        c.error(
            "revisions",
            "the register has no revision".into(),
            Some(
                "add a `[[revisions]]` table with an `id`, a `date` and a `summary`: the notice \
                 shows its last-update date and its history"
                    .into(),
            ),
        );
    }
    for (i, r) in reg.revisions.iter().enumerate() {
        let valid = r
            .date
            .parse::<jiff::civil::Date>()
            .is_ok_and(|d| d.to_string() == r.date);
        if !valid {
            c.error(
                &format!("revisions[{i}].date"),
                format!("`{}` is not a date", r.date),
                Some("write an ISO date, year-month-day: `2026-11-29`".into()),
            );
        }
    }
}

/// The two ids consent relies on: the category `consent_record` (one purpose keeps the records,
/// counted from collection) and the cookie `tutela_consent` (functional, first-party, once).
fn check_consent(reg: &Register, c: &mut Checker<'_>) {
    use crate::consent::{CONSENT_COOKIE, CONSENT_RECORD_CATEGORY, banner_categories};

    let mut keeper: Option<usize> = None;
    for (i, p) in reg.purposes.iter().enumerate() {
        let Some(k) = p
            .categories
            .iter()
            .position(|x| x == CONSENT_RECORD_CATEGORY)
        else {
            continue;
        };
        if let Some(first) = keeper {
            c.error(
                &format!("purposes[{i}].categories[{k}]"),
                format!(
                    "category `{CONSENT_RECORD_CATEGORY}` is declared by purposes `{}` and `{}`",
                    reg.purposes[first].id, p.id
                ),
                Some(
                    "consent records are kept under one purpose, whose retention rule gives them \
                     their deadline: keep the category in one purpose only"
                        .into(),
                ),
            );
            continue;
        }
        keeper = Some(i);
        if let Some((j, rule)) = p
            .retention
            .iter()
            .enumerate()
            .find(|(_, r)| r.categories.iter().any(|x| x == CONSENT_RECORD_CATEGORY))
            .or_else(|| {
                p.retention
                    .iter()
                    .enumerate()
                    .find(|(_, r)| r.categories.is_empty())
            })
            && rule.from.is_known()
            && rule.from != Anchor::Collection
        {
            c.error(
                &format!("purposes[{i}].retention[{j}].from"),
                format!(
                    "consent records are counted from `{}`, but a record's only event is its \
                     collection",
                    rule.from
                ),
                Some("write `from = \"collection\"` with the period records are kept".into()),
            );
        }
    }

    let mut cookie_at: Option<(usize, usize)> = None;
    for (i, p) in reg.purposes.iter().enumerate() {
        for (k, cookie) in p.cookies.iter().enumerate() {
            if cookie.name != CONSENT_COOKIE {
                continue;
            }
            let at = format!("purposes[{i}].cookies[{k}]");
            if let Some((fi, _)) = cookie_at {
                c.error(
                    &format!("{at}.name"),
                    format!(
                        "cookie `{CONSENT_COOKIE}` is declared in purposes `{}` and `{}`",
                        reg.purposes[fi].id, p.id
                    ),
                    Some("declare the consent cookie once: its lifetime is how long a choice is remembered".into()),
                );
                continue;
            }
            cookie_at = Some((i, k));
            if cookie.category.is_known() && cookie.category != CookieCategory::Functional {
                c.error(
                    &format!("{at}.category"),
                    format!("the consent cookie `{CONSENT_COOKIE}` must be `functional`, not `{}`", cookie.category),
                    Some("it only remembers the person's choice, so it cannot itself wait for consent".into()),
                );
            }
            if let Some(provider) = &cookie.provider
                && provider != FIRST_PARTY
            {
                c.error(
                    &format!("{at}.provider"),
                    format!("the consent cookie `{CONSENT_COOKIE}` is set by the site itself, not by `{provider}`"),
                    Some(format!("write `provider = \"{FIRST_PARTY}\"`")),
                );
            }
        }
    }

    // Art. 7(1): where processing is based on consent, the controller must be able to prove it.
    let asks = reg
        .purposes
        .iter()
        .any(|p| p.legal_basis == LegalBasis::Consent)
        && !banner_categories(reg).is_empty();
    if asks && keeper.is_none() {
        c.warning(
            "purposes",
            format!(
                "purposes are based on consent, but no purpose keeps consent records (category \
                 `{CONSENT_RECORD_CATEGORY}`): choices can't be recorded, so consent can't be \
                 proven (GDPR art. 7(1))"
            ),
            Some(format!(
                "add a purpose with `legal_basis = \"legal_obligation\"` and `categories = \
                 [\"{CONSENT_RECORD_CATEGORY}\"]` and declare that category (see \
                 examples/policy.toml, purpose `proof_of_consent`)"
            )),
        );
    }
    if asks && cookie_at.is_none() {
        c.warning(
            "purposes",
            format!(
                "no cookie `{CONSENT_COOKIE}` is declared: the consent banner will remember a \
                 choice only until the browser closes"
            ),
            Some(format!(
                "declare `{CONSENT_COOKIE}` (category `functional`, provider `{FIRST_PARTY}`) \
                 with the lifetime a choice is remembered, e.g. \"6 months\""
            )),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EXAMPLE_REGISTER;

    /// A small valid register; each rule test breaks it in one place.
    const MINIMAL: &str = r#"schema = 1

[controller]
name = "Acme SAS"
postal_address = "1 rue de la Paix, 75002 Paris"
email = "privacy@acme.example.com"

[controller.dpo]
email = "dpo@acme.example.com"
postal_address = "1 rue de la Paix, 75002 Paris"

[authority]
name.en = "CNIL"
name.fr = "CNIL"
website = "https://www.cnil.fr"
complaint_url = "https://www.cnil.fr/fr/plaintes"
authorities_list_url = "https://www.edpb.europa.eu/about-edpb/about-edpb/members_en"

[notice]
languages = ["en", "fr"]
default_language = "en"
title.en = "Privacy"
title.fr = "Confidentialité"
introduction.en = "Hello."
introduction.fr = "Bonjour."

[rights]
reply_within = "1 month"
max_extension = "2 months"
request_records_kept = "1 year"
after_death = "destroy"
email = "privacy@acme.example.com"
postal_address = "1 rue de la Paix, 75002 Paris"
identity_proof.en = "Your login."
identity_proof.fr = "Votre identifiant."

[[subjects]]
id = "visitor"
label.en = "Visitors"
label.fr = "Visiteurs"

[[categories]]
id = "ip_half"
label.en = "Half of the IP address"
label.fr = "Moitié de l'adresse IP"
minimise = "ip_half"

[[categories]]
id = "email"
label.en = "E-mail address"
label.fr = "Adresse e-mail"
sensitivity = "identifier"

[[recipients]]
id = "chat"
name = "Chat Co"
role = "processor"
service.en = "Live chat"
service.fr = "Discussion en direct"

[[purposes]]
id = "stats"
label.en = "Statistics"
label.fr = "Statistiques"
description.en = "Count visits."
description.fr = "Compter les visites."
legal_basis = "legitimate_interest"
legitimate_interest.en = "Improve the site."
legitimate_interest.fr = "Améliorer le site."
subjects = ["visitor"]
categories = ["ip_half"]
source.en = "Your browser."
source.fr = "Votre navigateur."

[[purposes.retention]]
from = "collection"
keep = "180 days"

[[purposes]]
id = "support"
label.en = "Support"
label.fr = "Assistance"
description.en = "Answer you."
description.fr = "Vous répondre."
legal_basis = "contract"
subjects = ["visitor"]
categories = ["email"]
recipients = ["chat"]
source.en = "You."
source.fr = "Vous."

[[purposes.retention]]
from = "last_contact"
keep = "3 years"

[[purposes.cookies]]
name = "chat_session"
category = "functional"
lifetime = "6 months"
provider = "chat"
description.en = "Keeps the chat open."
description.fr = "Garde la discussion ouverte."

[[revisions]]
id = "v1"
date = "2026-11-29"
summary.en = "First version."
summary.fr = "Première version."
"#;

    /// `MINIMAL` with each `(from, to)` applied; every `from` must occur exactly once.
    fn edit(base: &str, edits: &[(&str, &str)]) -> String {
        let mut s = base.to_string();
        for (from, to) in edits {
            assert_eq!(
                s.matches(from).count(),
                1,
                "`{from}` must occur exactly once"
            );
            s = s.replacen(from, to, 1);
        }
        s
    }

    fn minimal(edits: &[(&str, &str)]) -> String {
        edit(MINIMAL, edits)
    }

    /// 1-based line of the only line containing `needle`.
    fn line_of(src: &str, needle: &str) -> usize {
        let hits: Vec<usize> = src
            .lines()
            .enumerate()
            .filter(|(_, l)| l.contains(needle))
            .map(|(i, _)| i + 1)
            .collect();
        assert_eq!(hits.len(), 1, "`{needle}` must be on exactly one line");
        hits[0]
    }

    fn run(src: &str) -> Diagnostics {
        check(src, "policy.toml").1
    }

    /// The one error of `src` (warnings allowed).
    fn only_error(src: &str) -> Diagnostic {
        let d = run(src);
        let errors: Vec<&Diagnostic> = d.errors().collect();
        assert_eq!(errors.len(), 1, "expected exactly one error, got:\n{d}");
        errors[0].clone()
    }

    /// Asserts the one error of `src` is on the line holding `needle` and mentions `message`.
    fn assert_error_at(src: &str, needle: &str, message: &str) -> Diagnostic {
        let e = only_error(src);
        assert_eq!(e.line, line_of(src, needle), "wrong line for:\n{e}");
        assert!(e.message.contains(message), "unexpected message:\n{e}");
        e
    }

    // ---- consent ------------------------------------------------------------------------------

    const CONSENT_COOKIE_TOML: &str = "\n[[purposes.cookies]]\nname = \"tutela_consent\"\ncategory = \"functional\"\nlifetime = \"6 months\"\nprovider = \"first-party\"\ndescription.en = \"Choice.\"\ndescription.fr = \"Choix.\"\n";

    /// MINIMAL with a proof-of-consent purpose (records kept per `retention`) and `cookie`.
    fn with_proof(retention: &str, cookie: &str) -> String {
        let proof = "\n[[categories]]\nid = \"consent_record\"\nlabel.en = \"Choices\"\nlabel.fr = \"Choix\"\n\n[[recipients]]".to_string();
        let purpose = format!(
            "[[purposes]]\nid = \"proof\"\nlabel.en = \"Proof\"\nlabel.fr = \"Preuve\"\ndescription.en = \"Prove.\"\ndescription.fr = \"Prouver.\"\nlegal_basis = \"legal_obligation\"\nsubjects = [\"visitor\"]\ncategories = [\"consent_record\"]\nsource.en = \"You.\"\nsource.fr = \"Vous.\"\n\n[[purposes.retention]]\n{retention}\n{cookie}\n[[revisions]]"
        );
        minimal(&[("\n[[recipients]]", &proof), ("[[revisions]]", &purpose)])
    }

    #[test]
    fn a_proof_of_consent_purpose_is_accepted() {
        let src = with_proof(
            "from = \"collection\"\nkeep = \"5 years\"",
            CONSENT_COOKIE_TOML,
        );
        let d = run(&src);
        assert!(d.is_empty(), "{d}");
        let reg = load(&src, "p").unwrap();
        let (p, rule) = crate::consent::record_purpose(&reg).unwrap();
        assert_eq!(p.id, "proof");
        assert_eq!(rule.keep.as_ref().unwrap().canonical(), "5 years");
    }

    #[test]
    fn consent_records_are_counted_from_collection() {
        let src = with_proof("from = \"contract_end\"\nkeep = \"5 years\"", "");
        assert_error_at(
            &src,
            "from = \"contract_end\"",
            "consent records are counted from `contract_end`",
        );
    }

    #[test]
    fn consent_records_belong_to_one_purpose() {
        let src = with_proof("from = \"collection\"\nkeep = \"5 years\"", "");
        let src = edit(
            &src,
            &[(
                "categories = [\"ip_half\"]\nsource",
                "categories = [\"ip_half\", \"consent_record\"]\nsource",
            )],
        );
        let e = only_error(&src);
        assert!(
            e.message
                .contains("declared by purposes `stats` and `proof`"),
            "{e}"
        );
    }

    #[test]
    fn the_consent_cookie_is_functional_first_party_and_declared_once() {
        let bad = CONSENT_COOKIE_TOML.replace("\"functional\"", "\"analytics\"");
        let src = with_proof("from = \"collection\"\nkeep = \"5 years\"", &bad);
        assert_error_at(&src, "category = \"analytics\"", "must be `functional`");
        let bad = CONSENT_COOKIE_TOML.replace("\"first-party\"", "\"chat\"");
        let src = with_proof("from = \"collection\"\nkeep = \"5 years\"", &bad);
        let e = only_error(&src);
        assert!(e.message.contains("set by the site itself"), "{e}");
        // Declared a second time, in purpose `support`.
        let twice = CONSENT_COOKIE_TOML;
        let src = with_proof(
            "from = \"collection\"\nkeep = \"5 years\"",
            CONSENT_COOKIE_TOML,
        );
        let src = edit(
            &src,
            &[(
                "keep = \"3 years\"\n",
                &format!("keep = \"3 years\"\n{twice}"),
            )],
        );
        let e = only_error(&src);
        assert!(
            e.message
                .contains("declared in purposes `support` and `proof`"),
            "{e}"
        );
    }

    #[test]
    fn consent_purposes_without_proof_get_warnings() {
        let src = minimal(&[("legal_basis = \"contract\"", "legal_basis = \"consent\"")]);
        let d = run(&src);
        assert!(!d.has_errors(), "{d}");
        let warnings: Vec<String> = d.warnings().map(|w| w.message.clone()).collect();
        assert!(
            warnings
                .iter()
                .any(|w| w.contains("no purpose keeps consent records")),
            "{d}"
        );
        assert!(
            warnings
                .iter()
                .any(|w| w.contains("no cookie `tutela_consent`")),
            "{d}"
        );
    }

    #[test]
    fn rights_periods_respect_article_12_3() {
        let src = minimal(&[("reply_within = \"1 month\"", "reply_within = \"6 weeks\"")]);
        assert_error_at(&src, "reply_within", "longer than GDPR art. 12(3)");
        let src = minimal(&[(
            "max_extension = \"2 months\"",
            "max_extension = \"3 months\"",
        )]);
        assert_error_at(&src, "max_extension", "longer than GDPR art. 12(3)");
        let src = minimal(&[("reply_within = \"1 month\"", "reply_within = \"30 days\"")]);
        assert_error_at(&src, "reply_within", "longer than GDPR art. 12(3)");
        let src = minimal(&[("reply_within = \"1 month\"", "reply_within = \"15 days\"")]);
        assert!(!run(&src).has_errors());
    }

    // ---- the example register ---------------------------------------------------------------

    #[test]
    fn example_register_is_valid_without_warnings() {
        let (register, diagnostics) = check(EXAMPLE_REGISTER, "examples/policy.toml");
        print!("{diagnostics}");
        assert!(!diagnostics.has_errors(), "{diagnostics}");
        assert_eq!(diagnostics.warnings().count(), 0, "{diagnostics}");
        assert!(register.is_some());
        assert!(load(EXAMPLE_REGISTER, "examples/policy.toml").is_ok());
    }

    #[test]
    fn minimal_fixture_is_valid() {
        let d = run(MINIMAL);
        assert!(d.is_empty(), "{d}");
    }

    #[test]
    fn example_register_keeps_every_promise_of_the_spec() {
        let reg = load(EXAMPLE_REGISTER, "examples/policy.toml").unwrap();
        let period = |s: &str| Some(Period::parse(s));
        let purpose = |id: &str| reg.purpose(id).unwrap_or_else(|| panic!("purpose {id}"));

        // Website audience statistics: 180 days, legitimate interest, never shared, minimised.
        let stats = purpose("audience_statistics");
        assert_eq!(stats.legal_basis, LegalBasis::LegitimateInterest);
        assert!(stats.recipients.is_empty());
        for cat in &stats.categories {
            let rule = stats.retention_for(cat).unwrap();
            assert_eq!(
                (&rule.from, &rule.keep),
                (&Anchor::Collection, &period("180 days"))
            );
            let minimise = reg.category(cat).unwrap().minimise.clone();
            assert!(
                matches!(
                    minimise,
                    Some(
                        MinimisationRule::IpHalf
                            | MinimisationRule::UserAgentSummary
                            | MinimisationRule::UrlWithoutQuery
                            | MinimisationRule::KeyedPseudonym
                    )
                ),
                "{cat} is not minimised"
            );
        }

        // Security: connection data about content changes, 1 year under legal obligation.
        let security = purpose("platform_security");
        assert_eq!(security.legal_basis, LegalBasis::LegitimateInterest);
        let rule = security.retention_for("content_change_logs").unwrap();
        assert_eq!(
            (&rule.from, &rule.keep),
            (&Anchor::Collection, &period("1 year"))
        );
        assert_eq!(rule.basis, Some(LegalBasis::LegalObligation));
        assert!(rule.is_legal_obligation(&security.legal_basis));
        assert!(
            !security
                .retention_for("ip_address")
                .unwrap()
                .is_legal_obligation(&security.legal_basis)
        );

        // Accounts and billing: contract, then legal obligation (accounting records 10 years).
        let accounts = purpose("customer_accounts");
        assert_eq!(accounts.legal_basis, LegalBasis::Contract);
        let invoices = accounts.retention_for("invoices").unwrap();
        assert_eq!(invoices.from, Anchor::ContractThenLegal);
        assert_eq!(invoices.keep, period("10 years"));
        assert!(invoices.law.as_ref().unwrap().get("en").contains("L123-22"));
        assert_eq!(
            accounts.retention_for("email").unwrap().from,
            Anchor::ContractThenLegal
        );
        assert!(reg.category("payment_card").unwrap().never_store);
        assert!(accounts.categories.iter().any(|c| c == "payment_card"));
        assert!(reg.category("password").unwrap().minimise == Some(MinimisationRule::PasswordHash));
        assert!(!accounts.recipients.is_empty());

        // Support: contract, live chat with its functional cookie.
        let support = purpose("support");
        assert_eq!(support.legal_basis, LegalBasis::Contract);
        assert!(
            support
                .cookies
                .iter()
                .any(|c| c.category == CookieCategory::Functional)
        );

        // Hotline: while the request is handled.
        let hotline = purpose("hotline");
        assert_eq!(
            hotline.retention_for("phone").unwrap().from,
            Anchor::WhileOpen
        );
        assert_eq!(hotline.retention_for("phone").unwrap().keep, None);

        // Recruitment: at most 12 months after the last contact, longer with consent.
        let recruitment = purpose("recruitment");
        let rule = recruitment.retention_for("resume").unwrap();
        assert_eq!(
            (&rule.from, &rule.keep),
            (&Anchor::LastContact, &period("12 months"))
        );
        assert!(rule.extendable_with_consent);
        assert!(recruitment.recipients.is_empty());

        // Rights requests: legal obligation, 1 year from the reply.
        let requests = purpose("rights_requests");
        assert_eq!(requests.legal_basis, LegalBasis::LegalObligation);
        let rule = requests.retention_for("request_records").unwrap();
        assert_eq!(
            (&rule.from, &rule.keep),
            (&Anchor::RequestReply, &period("1 year"))
        );

        // Consent-based advertising with targeting cookies.
        let ads = purpose("social_advertising");
        assert_eq!(ads.legal_basis, LegalBasis::Consent);
        assert_eq!(ads.consent_category, Some(CookieCategory::Targeting));
        assert_eq!(
            reg.cookie_categories(),
            [
                CookieCategory::Functional,
                CookieCategory::Analytics,
                CookieCategory::Targeting
            ]
        );

        // Rights: 1 month, + 2 months, records 1 year, destroyed after death; CNIL and the EDPB.
        assert_eq!(reg.rights.reply_within, Period::parse("1 month"));
        assert_eq!(reg.rights.max_extension, Period::parse("2 months"));
        assert_eq!(reg.rights.request_records_kept, Period::parse("1 year"));
        assert_eq!(reg.rights.after_death, AfterDeath::Destroy);
        assert!(reg.authority.name.get("fr").contains("CNIL"));
        assert!(
            reg.authority
                .authorities_list_url
                .contains("edpb.europa.eu")
        );
        assert_eq!(reg.notice.languages, ["en", "fr"]);
        assert!(reg.revisions.len() >= 2);
    }

    // ---- several mistakes at once -----------------------------------------------------------

    #[test]
    fn three_mistakes_are_all_reported_on_their_lines() {
        let src = edit(
            EXAMPLE_REGISTER,
            &[
                (
                    "categories = [\"phone\"]",
                    "categories = [\"phone\", \"call_recording\"]",
                ),
                ("keep = \"12 months\"", "keep = \"six months\""),
                ("label.fr = \"Recrutement\"\n", ""),
            ],
        );
        let d = run(&src);
        println!("{d}");
        assert_eq!(d.len(), 3, "{d}");
        assert!(d.iter().all(Diagnostic::is_error));

        let unknown = &d.0[0];
        assert_eq!(unknown.line, line_of(&src, "\"call_recording\""));
        let expected_col = src
            .lines()
            .nth(unknown.line - 1)
            .unwrap()
            .find("\"call_recording\"")
            .unwrap()
            + 1;
        assert_eq!(unknown.column, expected_col);
        assert!(
            unknown
                .message
                .contains("purpose `hotline` names an unknown category `call_recording`")
        );

        let missing = &d.0[1];
        assert_eq!(missing.line, line_of(&src, "label.en = \"Recruitment\""));
        assert!(missing.message.contains("French"), "{missing}");
        assert!(missing.hint.as_deref().unwrap().contains("label.fr"));

        let duration = &d.0[2];
        assert_eq!(duration.line, line_of(&src, "\"six months\""));
        assert!(duration.message.contains("`six months` is not a duration"));
        assert!(duration.hint.as_deref().unwrap().contains("12 months"));

        assert!(load(&src, "policy.toml").is_err());
    }

    // ---- syntax and shape -------------------------------------------------------------------

    #[test]
    fn syntax_error_has_a_line() {
        let src = minimal(&[(
            "title.fr = \"Confidentialité\"",
            "title.fr = \"Confidentialité",
        )]);
        assert_error_at(&src, "title.fr", "");
        let src = minimal(&[("[[revisions]]", "[[revisions]")]);
        assert_error_at(&src, "[[revisions]", "");
    }

    #[test]
    fn missing_field_points_at_its_table() {
        let src = minimal(&[("email = \"dpo@acme.example.com\"\n", "")]);
        assert_error_at(&src, "[controller.dpo]", "missing field `email`");
    }

    #[test]
    fn wrong_type_points_at_the_value() {
        let src = minimal(&[("schema = 1", "schema = \"1\"")]);
        assert_error_at(&src, "schema", "invalid type");
        let src = minimal(&[(
            "label.en = \"Visitors\"\nlabel.fr = \"Visiteurs\"",
            "label = \"Visitors\"",
        )]);
        let e = assert_error_at(&src, "label = \"Visitors\"", "expected a map");
        assert!(e.hint.unwrap().contains("label.en"));
    }

    #[test]
    fn unknown_field_points_at_the_key() {
        let src = minimal(&[(
            "name = \"Acme SAS\"",
            "name = \"Acme SAS\"\ncolour = \"blue\"",
        )]);
        assert_error_at(&src, "colour", "unknown field `colour`");
    }

    #[test]
    fn oversized_register_is_refused() {
        let src = format!("{MINIMAL}\n# {}\n", "x".repeat(MAX_REGISTER_BYTES));
        let (reg, d) = check(&src, "policy.toml");
        assert!(reg.is_none());
        assert_eq!(d.len(), 1);
        assert!(d.0[0].message.contains("1 MiB"), "{d}");
    }

    // ---- one test per rule ------------------------------------------------------------------

    #[test]
    fn schema_version_must_be_1() {
        let src = minimal(&[("schema = 1", "schema = 2")]);
        assert_error_at(&src, "schema = 2", "schema version 2");
    }

    #[test]
    fn unknown_enum_values_list_the_accepted_ones() {
        let cases: [(&str, &str, &str, &[&str]); 10] = [
            (
                "legal_basis = \"contract\"",
                "legal_basis = \"contrat\"",
                "legal basis",
                LegalBasis::ALL,
            ),
            (
                "from = \"last_contact\"",
                "from = \"last_contract\"",
                "retention anchor",
                Anchor::ALL,
            ),
            (
                "keep = \"3 years\"",
                "keep = \"3 years\"\nbasis = \"law\"",
                "legal basis",
                LegalBasis::ALL,
            ),
            (
                "category = \"functional\"",
                "category = \"necessary\"",
                "cookie category",
                CookieCategory::ALL,
            ),
            (
                "legal_basis = \"contract\"",
                "legal_basis = \"contract\"\nconsent_category = \"ads\"",
                "cookie category",
                CookieCategory::ALL,
            ),
            (
                "sensitivity = \"identifier\"",
                "sensitivity = \"personal\"",
                "sensitivity",
                Sensitivity::ALL,
            ),
            (
                "minimise = \"ip_half\"",
                "minimise = \"truncate\"",
                "minimisation rule",
                MinimisationRule::ALL,
            ),
            (
                "role = \"processor\"",
                "role = \"subprocessor\"",
                "recipient role",
                RecipientRole::ALL,
            ),
            (
                "after_death = \"destroy\"",
                "after_death = \"delete\"",
                "after-death rule",
                AfterDeath::ALL,
            ),
            (
                "after_death = \"destroy\"",
                "after_death = \"Destroy\"",
                "after-death rule",
                AfterDeath::ALL,
            ),
        ];
        for (from, to, what, all) in cases {
            let src = minimal(&[(from, to)]);
            let bad = to.lines().last().unwrap();
            let e = assert_error_at(&src, bad, &format!("unknown {what}"));
            let hint = e.hint.unwrap();
            for accepted in all {
                assert!(
                    hint.contains(&format!("`{accepted}`")),
                    "{hint} lacks {accepted}"
                );
            }
        }
        // Close misspellings get a suggestion.
        let src = minimal(&[("legal_basis = \"contract\"", "legal_basis = \"contrat\"")]);
        assert!(
            only_error(&src)
                .hint
                .unwrap()
                .starts_with("did you mean `contract`?")
        );
    }

    #[test]
    fn durations_must_parse() {
        for (from, to) in [
            ("keep = \"180 days\"", "keep = \"six months\""),
            ("reply_within = \"1 month\"", "reply_within = \"a month\""),
            (
                "max_extension = \"2 months\"",
                "max_extension = \"2 moons\"",
            ),
            (
                "request_records_kept = \"1 year\"",
                "request_records_kept = \"0 years\"",
            ),
            ("lifetime = \"6 months\"", "lifetime = \"forever\""),
        ] {
            let src = minimal(&[(from, to)]);
            let e = assert_error_at(&src, to, "is not a duration");
            assert!(
                e.hint
                    .unwrap()
                    .contains("`180 days`, `12 months` or `1 year`")
            );
        }
    }

    #[test]
    fn purpose_needs_a_retention_rule() {
        let src = minimal(&[(
            "[[purposes.retention]]\nfrom = \"collection\"\nkeep = \"180 days\"\n",
            "",
        )]);
        assert_error_at(
            &src,
            "id = \"stats\"",
            "purpose `stats` has no retention rule",
        );
    }

    #[test]
    fn while_open_takes_no_duration() {
        let src = minimal(&[("from = \"last_contact\"", "from = \"while_open\"")]);
        assert_error_at(
            &src,
            "keep = \"3 years\"",
            "`while_open` retention rule has no duration",
        );
        let src = minimal(&[(
            "from = \"last_contact\"\nkeep = \"3 years\"",
            "from = \"while_open\"",
        )]);
        assert!(run(&src).is_empty());
    }

    #[test]
    fn other_anchors_need_a_duration() {
        let src = minimal(&[("keep = \"180 days\"\n", "")]);
        assert_error_at(
            &src,
            "from = \"collection\"",
            "counted from `collection` needs a duration",
        );
    }

    #[test]
    fn only_one_default_rule_per_purpose() {
        let src = minimal(&[(
            "keep = \"180 days\"\n",
            "keep = \"180 days\"\n\n[[purposes.retention]]\nfrom = \"last_contact\"\nkeep = \"1 year\"\n",
        )]);
        let e = only_error(&src);
        assert!(e.message.contains("two default retention rules"), "{e}");
        // The span of a `[[purposes.retention]]` table is its header, two lines above `keep`.
        assert_eq!(e.line, line_of(&src, "keep = \"1 year\"") - 2);
    }

    #[test]
    fn retention_rule_categories_must_belong_to_the_purpose() {
        let src = minimal(&[(
            "keep = \"180 days\"\n",
            "keep = \"180 days\"\n\n[[purposes.retention]]\ncategories = [\"email\"]\nfrom = \"collection\"\nkeep = \"1 year\"\n",
        )]);
        let e = only_error(&src);
        assert!(
            e.message
                .contains("names category `email`, which purpose `stats` does not declare"),
            "{e}"
        );
        assert_eq!(e.line, line_of(&src, "keep = \"1 year\"") - 2);
        assert_eq!(e.column, "categories = [".len() + 1);
    }

    #[test]
    fn a_category_gets_one_retention_rule_per_purpose() {
        let src = minimal(&[(
            "keep = \"180 days\"\n",
            "keep = \"180 days\"\n\n[[purposes.retention]]\ncategories = [\"ip_half\"]\nfrom = \"collection\"\nkeep = \"1 year\"\n\n[[purposes.retention]]\ncategories = [\"ip_half\"]\nfrom = \"collection\"\nkeep = \"2 years\"\n",
        )]);
        let e = only_error(&src);
        assert!(
            e.message
                .contains("category `ip_half` has two retention rules"),
            "{e}"
        );
        assert_eq!(e.line, line_of(&src, "keep = \"2 years\"") - 2);
    }

    #[test]
    fn every_category_needs_a_retention_rule() {
        let src = minimal(&[
            (
                "categories = [\"ip_half\"]",
                "categories = [\"ip_half\", \"email\"]",
            ),
            (
                "from = \"collection\"",
                "categories = [\"ip_half\"]\nfrom = \"collection\"",
            ),
        ]);
        assert_error_at(
            &src,
            "categories = [\"ip_half\", \"email\"]",
            "category `email` of purpose `stats` has no retention rule",
        );
        // Never-stored data needs none.
        let src = minimal(&[
            (
                "categories = [\"ip_half\"]",
                "categories = [\"ip_half\", \"email\"]",
            ),
            (
                "from = \"collection\"",
                "categories = [\"ip_half\"]\nfrom = \"collection\"",
            ),
            (
                "sensitivity = \"identifier\"",
                "sensitivity = \"identifier\"\nnever_store = true",
            ),
        ]);
        assert!(!run(&src).has_errors(), "{}", run(&src));
    }

    #[test]
    fn ids_must_be_unique() {
        // (where to insert, the duplicate declaration, message, a line right below its `id`,
        //  the first declaration's `id` line)
        let cases = [
            (
                "[[recipients]]",
                "[[categories]]\nid = \"email\"\nlabel.en = \"Mail\"\nlabel.fr = \"Courriel\"\n\n[[recipients]]",
                "duplicate category id `email`",
                "label.en = \"Mail\"",
                "label.en = \"E-mail address\"",
            ),
            (
                "[[categories]]\nid = \"ip_half\"",
                "[[subjects]]\nid = \"visitor\"\nlabel.en = \"Guests\"\nlabel.fr = \"Invités\"\n\n[[categories]]\nid = \"ip_half\"",
                "duplicate subject id `visitor`",
                "label.en = \"Guests\"",
                "label.en = \"Visitors\"",
            ),
            (
                "[[purposes]]\nid = \"stats\"",
                "[[recipients]]\nid = \"chat\"\nname = \"Other\"\nrole = \"processor\"\nservice.en = \"X\"\nservice.fr = \"X\"\n\n[[purposes]]\nid = \"stats\"",
                "duplicate recipient id `chat`",
                "name = \"Other\"",
                "name = \"Chat Co\"",
            ),
            (
                "summary.fr = \"Première version.\"\n",
                "summary.fr = \"Première version.\"\n\n[[revisions]]\nid = \"v1\"\ndate = \"2026-11-30\"\nsummary.en = \"Again.\"\nsummary.fr = \"Encore.\"\n",
                "duplicate revision id `v1`",
                "date = \"2026-11-30\"",
                "date = \"2026-11-29\"",
            ),
        ];
        for (anchor, insert, message, below, first_below) in cases {
            let src = minimal(&[(anchor, insert)]);
            let e = only_error(&src);
            assert!(e.message.contains(message), "{e}");
            assert_eq!(e.line, line_of(&src, below) - 1, "{e}");
            let first = line_of(&src, first_below) - 1;
            assert!(e.hint.unwrap().contains(&format!("at line {first}")));
        }

        // A second purpose `stats`, at the end of the file.
        let start = MINIMAL.find("[[purposes]]\nid = \"stats\"").unwrap();
        let end = MINIMAL.find("[[purposes]]\nid = \"support\"").unwrap();
        let src = format!("{MINIMAL}\n{}", &MINIMAL[start..end]);
        let e = only_error(&src);
        assert!(e.message.contains("duplicate purpose id `stats`"), "{e}");
        let last_id = src
            .lines()
            .enumerate()
            .filter(|(_, l)| *l == "id = \"stats\"")
            .last();
        assert_eq!(e.line, last_id.unwrap().0 + 1);
    }

    #[test]
    fn cookie_names_are_unique_within_a_purpose() {
        let cookie = "\n[[purposes.cookies]]\nname = \"chat_session\"\ncategory = \"functional\"\nlifetime = \"1 day\"\nprovider = \"chat\"\ndescription.en = \"Again.\"\ndescription.fr = \"Encore.\"\n";
        let src = minimal(&[("\n[[revisions]]", &format!("{cookie}\n[[revisions]]"))]);
        let e = only_error(&src);
        assert!(
            e.message
                .contains("cookie `chat_session` is declared twice"),
            "{e}"
        );
        assert_eq!(e.line, line_of(&src, "lifetime = \"1 day\"") - 2);
    }

    #[test]
    fn purposes_reference_declared_things() {
        let src = minimal(&[("categories = [\"email\"]", "categories = [\"emial\"]")]);
        let e = assert_error_at(&src, "\"emial\"", "unknown category `emial`");
        assert_eq!(e.hint.as_deref(), Some("did you mean `email`?"));
        let src = minimal(&[(
            "recipients = [\"chat\"]",
            "recipients = [\"chat\", \"mailer\"]",
        )]);
        assert_error_at(&src, "\"mailer\"", "unknown recipient `mailer`");
        let src = minimal(&[(
            "subjects = [\"visitor\"]\ncategories = [\"email\"]",
            "subjects = [\"customer\"]\ncategories = [\"email\"]",
        )]);
        // The subject `visitor` is then still used by `stats`: only the unknown one is reported.
        assert_error_at(&src, "\"customer\"", "unknown subject `customer`");
    }

    #[test]
    fn consent_purpose_needs_a_consent_category() {
        let src = minimal(&[(
            "legal_basis = \"legitimate_interest\"",
            "legal_basis = \"consent\"",
        )]);
        assert_error_at(
            &src,
            "legal_basis = \"consent\"",
            "has no `consent_category`",
        );
        let src = minimal(&[(
            "legal_basis = \"legitimate_interest\"",
            "legal_basis = \"consent\"\nconsent_category = \"analytics\"",
        )]);
        // (Warnings remain: no purpose keeps proof of consent; see the consent tests below.)
        assert!(!run(&src).has_errors(), "{}", run(&src));
        // A consent purpose whose cookies all share a category needs no explicit one.
        let src = minimal(&[("legal_basis = \"contract\"", "legal_basis = \"consent\"")]);
        assert!(!run(&src).has_errors(), "{}", run(&src));
    }

    #[test]
    fn legitimate_interest_must_be_stated() {
        let src = minimal(&[(
            "legitimate_interest.en = \"Improve the site.\"\nlegitimate_interest.fr = \"Améliorer le site.\"\n",
            "",
        )]);
        assert_error_at(
            &src,
            "legal_basis = \"legitimate_interest\"",
            "does not say which",
        );
    }

    #[test]
    fn cookie_provider_is_first_party_or_a_recipient() {
        let src = minimal(&[("provider = \"chat\"", "provider = \"chatco\"")]);
        let e = assert_error_at(
            &src,
            "provider = \"chatco\"",
            "neither `first-party` nor a recipient",
        );
        assert_eq!(e.hint.as_deref(), Some("did you mean `chat`?"));
        let src = minimal(&[("provider = \"chat\"", "provider = \"first-party\"")]);
        assert!(run(&src).is_empty());
        // A recipient that is not one of the purpose's own recipients: a warning.
        let src = minimal(&[("recipients = [\"chat\"]\n", "")]);
        let d = run(&src);
        assert!(!d.has_errors(), "{d}");
        let w: Vec<_> = d.warnings().collect();
        assert_eq!(w.len(), 1, "{d}");
        assert!(
            w[0].message
                .contains("not a recipient of purpose `support`")
        );
    }

    #[test]
    fn default_language_must_be_a_notice_language() {
        let src = minimal(&[("default_language = \"en\"", "default_language = \"de\"")]);
        let e = assert_error_at(&src, "default_language", "default language `de`");
        assert!(e.hint.unwrap().contains("`en`, `fr`"));
    }

    #[test]
    fn languages_must_include_english() {
        let src = minimal(&[
            ("languages = [\"en\", \"fr\"]", "languages = [\"fr\"]"),
            ("default_language = \"en\"", "default_language = \"fr\""),
        ]);
        let d = run(&src);
        assert_error_at(&src, "languages = [\"fr\"]", "do not include English");
        // Every English text is then reported as a translation into an undeclared language.
        assert!(d.warnings().count() > 10);
    }

    #[test]
    fn every_text_needs_every_language() {
        let src = minimal(&[("summary.fr = \"Première version.\"\n", "")]);
        let e = assert_error_at(
            &src,
            "summary.en",
            "`summary` of revision `v1` has no French translation",
        );
        assert!(e.hint.unwrap().contains("summary.fr"));
        // Deep inside a purpose, and an empty one.
        let src = minimal(&[(
            "description.fr = \"Garde la discussion ouverte.\"",
            "description.fr = \"  \"",
        )]);
        assert_error_at(
            &src,
            "description.fr = \"  \"",
            "`description` of cookie `chat_session` of purpose `support` has an empty French translation",
        );
        let src = minimal(&[("name.en = \"CNIL\"\n", "")]);
        assert_error_at(&src, "name.fr = \"CNIL\"", "no English translation");
        // Inline tables work too.
        let src = minimal(&[(
            "label.en = \"Visitors\"\nlabel.fr = \"Visiteurs\"",
            "label = { en = \"Visitors\" }",
        )]);
        assert_error_at(
            &src,
            "label = { en",
            "`label` of subject `visitor` has no French translation",
        );
        // Optional texts are checked when present.
        let src = minimal(&[(
            "keep = \"3 years\"",
            "keep = \"3 years\"\nnote.en = \"Three years.\"",
        )]);
        assert_error_at(
            &src,
            "note.en",
            "`note` of retention rule 1 of purpose `support` has no French",
        );
    }

    #[test]
    fn revision_dates_are_iso_dates() {
        for bad in [
            "29/11/2026",
            "2026-02-30",
            "2026-11-29T10:00",
            "20261129",
            "",
        ] {
            let src = minimal(&[("date = \"2026-11-29\"", &format!("date = \"{bad}\""))]);
            assert_error_at(&src, "date = ", "is not a date");
        }
        let src = minimal(&[("date = \"2026-11-29\"", "date = 2026-11-29")]);
        let e = assert_error_at(&src, "date = ", "expected a string");
        assert!(e.hint.unwrap().contains("\"2026-11-29\""));
    }

    #[test]
    fn a_register_needs_a_revision() {
        let at = MINIMAL.find("[[revisions]]").unwrap();
        let src = &MINIMAL[..at];
        let e = only_error(src);
        assert!(e.message.contains("no revision"), "{e}");
    }

    #[test]
    fn never_stored_categories_are_fine() {
        let src = minimal(&[(
            "sensitivity = \"identifier\"",
            "sensitivity = \"high\"\nminimise = \"none\"\nnever_store = true",
        )]);
        assert!(run(&src).is_empty(), "{}", run(&src));
    }

    #[test]
    fn unused_declarations_are_warnings() {
        let src = minimal(&[(
            "[[recipients]]",
            "[[categories]]\nid = \"fax\"\nlabel.en = \"Fax number\"\nlabel.fr = \"Numéro de fax\"\n\n[[recipients]]",
        )]);
        let (reg, d) = check(&src, "policy.toml");
        assert!(reg.is_some(), "{d}");
        assert!(!d.has_errors());
        let w: Vec<_> = d.warnings().collect();
        assert_eq!(w.len(), 1, "{d}");
        assert_eq!(w[0].line, line_of(&src, "id = \"fax\""));
        assert!(
            w[0].message
                .contains("category `fax` is not used by any purpose")
        );
        assert!(load(&src, "policy.toml").is_ok());
        assert!(d.to_string().contains("policy.toml:"));
        assert!(d.to_string().contains(": warning: category `fax`"));
    }

    #[test]
    fn load_fails_with_every_finding() {
        let src = minimal(&[
            ("schema = 1", "schema = 3"),
            ("after_death = \"destroy\"", "after_death = \"burn\""),
            (
                "[[recipients]]",
                "[[categories]]\nid = \"fax\"\nlabel.en = \"Fax\"\nlabel.fr = \"Fax\"\n\n[[recipients]]",
            ),
        ]);
        let d = load(&src, "policy.toml").unwrap_err();
        assert_eq!((d.errors().count(), d.warnings().count()), (2, 1), "{d}");
        // In file order.
        let lines: Vec<usize> = d.iter().map(|x| x.line).collect();
        assert!(lines.is_sorted());
    }

    // ---- plumbing ---------------------------------------------------------------------------

    #[test]
    fn display_format() {
        let d = Diagnostic {
            file: "policy.toml".into(),
            line: 3,
            column: 7,
            severity: Severity::Error,
            message: "bad".into(),
            hint: Some("fix it".into()),
            path: None,
        };
        assert_eq!(
            d.to_string(),
            "policy.toml:3:7: error: bad\n  hint: fix it\n"
        );
        let w = Diagnostic {
            severity: Severity::Warning,
            hint: None,
            ..d
        };
        assert_eq!(w.to_string(), "policy.toml:3:7: warning: bad\n");
    }

    #[test]
    fn columns_count_characters() {
        let src = "a = 1\nété = \"x\"\n";
        let idx = LineIndex::new(src);
        assert_eq!(idx.locate(src, 0), (1, 1));
        assert_eq!(idx.locate(src, 6), (2, 1));
        let x = src.find("\"x\"").unwrap();
        assert_eq!(idx.locate(src, x), (2, 7));
        assert_eq!(idx.locate(src, src.len()), (3, 1));
    }

    #[test]
    fn paths_fall_back_to_their_nearest_parent() {
        let c = Checker {
            file: "x",
            source: MINIMAL,
            lines: LineIndex::new(MINIMAL),
            doc: DeTable::parse(MINIMAL).ok(),
            out: Vec::new(),
        };
        assert_eq!(
            c.line_of("purposes[1].retention[0].keep"),
            line_of(MINIMAL, "keep = \"3 years\"")
        );
        assert_eq!(
            c.line_of("purposes[1].retention[0].note"),
            line_of(MINIMAL, "from = \"last_contact\"") - 1
        );
        assert_eq!(
            c.line_of("purposes[0].recipients"),
            line_of(MINIMAL, "id = \"stats\"") - 1
        );
        assert_eq!(
            c.line_of("purposes[9]"),
            line_of(MINIMAL, "id = \"stats\"") - 1
        );
        assert_eq!(c.line_of("notice.title.de"), line_of(MINIMAL, "title.en"));
        assert_eq!(c.line_of("nowhere"), 1);
    }
}

//! What templates see: the frame of every page, generic form fields with their errors, and
//! small formatting helpers. Templates only loop and print; decisions are made here.

use askama::Template;
use palisade_control::supervisor as sup;
use palisade_store::Problem;

use crate::auth::{Perm, Principal, allows};
use crate::error::AppError;
use crate::state::AppState;

pub struct Nav {
    pub href: &'static str,
    pub label: &'static str,
    pub active: bool,
}

/// The frame around every page: who is logged in, the navigation their role may use, the
/// CSRF token for forms, a message from the previous action.
pub struct Page {
    pub title: String,
    pub user: String,
    pub role: String,
    pub hostname: String,
    pub nav: Vec<Nav>,
    pub csrf: String,
    pub flash: Option<String>,
    /// Red banners about the appliance's health (a crash-looping service), on every page.
    pub alerts: Vec<String>,
    /// The user may open the System page the alerts point to.
    pub alert_link: bool,
}

const NAV: &[(&str, &str, &str, Perm)] = &[
    ("dashboard", "/", "Dashboard", Perm::Dashboard),
    ("mailflow", "/mailflow", "Mail flow", Perm::ViewConfig),
    ("protection", "/protection", "Protection", Perm::ViewConfig),
    ("dlp", "/dlp", "Data protection", Perm::ViewConfig),
    ("queue", "/queue", "Queue", Perm::ViewQueue),
    (
        "quarantine",
        "/quarantine",
        "Quarantine",
        Perm::ViewQuarantine,
    ),
    (
        "tracking",
        "/tracking",
        "Message tracking",
        Perm::ViewTracking,
    ),
    ("audit", "/audit", "Audit log", Perm::ViewAudit),
    ("users", "/users", "Users", Perm::ViewUsers),
    ("system", "/system", "System", Perm::ViewSystem),
];

impl Page {
    /// Builds the frame; takes the pending flash message of the session.
    pub async fn load(
        state: &AppState,
        p: &Principal,
        active: &str,
        title: &str,
    ) -> Result<Page, AppError> {
        let cookie = p.session.as_ref().map(|s| s.cookie.clone());
        let (flash, hostname) = state
            .db(move |s| {
                let flash = match cookie {
                    Some(c) => s.accounts.take_flash(&c)?,
                    None => None,
                };
                let hostname = s
                    .config
                    .current()?
                    .map(|r| r.config.system.hostname)
                    .unwrap_or_default();
                Ok((flash, hostname))
            })
            .await?;
        let nav = if p.user.must_change_password {
            vec![]
        } else {
            NAV.iter()
                .filter(|(_, _, _, perm)| allows(p.user.role, *perm))
                .map(|(key, href, label, _)| Nav {
                    href,
                    label,
                    active: *key == active,
                })
                .collect()
        };
        let mut alerts = state
            .supervisor_status_cached()
            .await
            .map(|st| service_alerts(&st))
            .unwrap_or_default();
        alerts.extend(state.engine_degraded_cached().await);
        Ok(Page {
            title: title.to_string(),
            user: p.user.name.clone(),
            role: p.user.role.to_string(),
            hostname,
            nav,
            csrf: p.csrf(),
            flash,
            alerts,
            alert_link: allows(p.user.role, Perm::ViewSystem),
        })
    }
}

/// One sentence per crash-looping service, for the banner.
pub fn service_alerts(st: &sup::Status) -> Vec<String> {
    st.children
        .iter()
        .filter(|c| c.state == sup::ChildState::CrashLoop)
        .map(|c| {
            let consequence = match c.name.as_str() {
                "engine" => "mail is accepted only while it is up",
                "console" => "this console is unavailable while it is down",
                _ => "it is restarted automatically",
            };
            format!(
                "The {} is crash-looping ({} crashes in the last {} s); {consequence}.",
                c.name, c.crashes, c.crash_window_secs
            )
        })
        .collect()
}

#[derive(Template)]
#[template(path = "error.html")]
pub struct ErrorPage {
    pub title: String,
    pub message: String,
}

/// One input of a form, with the configuration path its errors are reported under.
pub struct Field {
    pub id: String,
    pub name: String,
    pub label: String,
    /// `text`, `number`, `textarea`, `select`, `password`, `file`, `checkbox`.
    pub kind: &'static str,
    /// For a checkbox: what it sends when ticked.
    pub value: String,
    /// For a checkbox: whether it is ticked.
    pub checked: bool,
    pub options: Vec<(String, String)>,
    pub help: String,
    pub path: String,
    pub errors: Vec<String>,
    pub rows: usize,
}

impl Field {
    pub fn new(name: &str, label: &str, kind: &'static str, value: impl Into<String>) -> Field {
        Field {
            id: String::new(),
            name: name.into(),
            label: label.into(),
            kind,
            value: value.into(),
            checked: false,
            options: vec![],
            help: String::new(),
            path: String::new(),
            errors: vec![],
            rows: 4,
        }
    }

    /// A checkbox sending `yes` when ticked (and nothing when not).
    pub fn checkbox(name: &str, label: &str, checked: bool) -> Field {
        Field {
            checked,
            ..Field::new(name, label, "checkbox", "yes")
        }
    }

    pub fn path(mut self, p: impl Into<String>) -> Self {
        self.path = p.into();
        self
    }

    pub fn help(mut self, h: &str) -> Self {
        self.help = h.into();
        self
    }

    pub fn options(mut self, o: &[(&str, &str)]) -> Self {
        self.options = o
            .iter()
            .map(|(v, l)| (v.to_string(), l.to_string()))
            .collect();
        self
    }

    pub fn rows(mut self, r: usize) -> Self {
        self.rows = r;
        self
    }
}

/// A form: fields, hidden values, the button; and errors that belong to no single field.
pub struct FormView {
    pub id: String,
    pub action: String,
    pub title: String,
    pub intro: String,
    pub fields: Vec<Field>,
    pub hidden: Vec<(String, String)>,
    pub submit: String,
    pub submit_action: String,
    pub errors: Vec<String>,
    pub editable: bool,
    pub danger: bool,
    pub multipart: bool,
}

impl FormView {
    pub fn new(id: &str, action: &str, title: &str, submit: &str) -> FormView {
        FormView {
            id: id.into(),
            action: action.into(),
            title: title.into(),
            intro: String::new(),
            fields: vec![],
            hidden: vec![],
            submit: submit.into(),
            submit_action: String::new(),
            errors: vec![],
            editable: true,
            danger: false,
            multipart: false,
        }
    }

    pub fn field(mut self, f: Field) -> Self {
        self.fields.push(f);
        self
    }

    pub fn hidden(mut self, name: &str, value: impl ToString) -> Self {
        self.hidden.push((name.into(), value.to_string()));
        self
    }

    pub fn intro(mut self, s: &str) -> Self {
        self.intro = s.into();
        self
    }

    pub fn action_value(mut self, v: &str) -> Self {
        self.submit_action = v.into();
        self
    }

    pub fn danger(mut self) -> Self {
        self.danger = true;
        self
    }

    pub fn multipart(mut self) -> Self {
        self.multipart = true;
        self
    }

    pub fn editable(mut self, e: bool) -> Self {
        self.editable = e;
        self
    }

    /// Fills in ids, the values a user submitted (when re-showing this form) and every
    /// problem: next to its field when a field has its path, otherwise at the top.
    pub fn finish(mut self, submitted: Option<&Submitted>) -> Self {
        for f in &mut self.fields {
            f.id = format!("{}-{}", self.id, f.name);
        }
        let Some(sub) = submitted.filter(|s| s.form == self.id) else {
            return self;
        };
        for f in &mut self.fields {
            if f.kind == "checkbox" {
                f.checked = sub.raw.get(&f.name).is_some_and(|v| *v == f.value);
            } else if f.kind != "file"
                && f.kind != "password"
                && let Some(v) = sub.raw.get(&f.name)
            {
                f.value = v.clone();
            }
        }
        for p in &sub.problems {
            let owner = self
                .fields
                .iter_mut()
                .find(|f| !f.path.is_empty() && path_matches(&p.path, &f.path));
            match owner {
                Some(f) => f.errors.push(p.message.clone()),
                None if p.path.is_empty() => self.errors.push(p.message.clone()),
                None => self.errors.push(format!("{}: {}", p.path, p.message)),
            }
        }
        self
    }
}

/// `smtp.listen[1]` belongs to the field `smtp.listen`; `domain[0].name` to `domain[0].name`.
fn path_matches(problem: &str, field: &str) -> bool {
    problem == field
        || problem
            .strip_prefix(field)
            .is_some_and(|rest| rest.starts_with('[') || rest.starts_with('.'))
}

/// A form that came back with problems: which one, what the user typed, what is wrong.
pub struct Submitted {
    pub form: String,
    pub raw: std::collections::HashMap<String, String>,
    pub problems: Vec<Problem>,
}

pub fn fmt_time(ts: i64) -> String {
    let fmt = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    time::OffsetDateTime::from_unix_timestamp(ts)
        .ok()
        .and_then(|t| t.format(&fmt).ok())
        .unwrap_or_else(|| ts.to_string())
}

pub fn fmt_opt_time(ts: Option<i64>) -> String {
    ts.map(fmt_time).unwrap_or_else(|| "—".into())
}

/// `2026-11-23T09:08` (an HTML datetime-local value, UTC) for a timestamp.
pub fn datetime_local(ts: i64) -> String {
    let fmt = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]");
    time::OffsetDateTime::from_unix_timestamp(ts)
        .ok()
        .and_then(|t| t.format(&fmt).ok())
        .unwrap_or_default()
}

/// Parses a datetime-local value (taken as UTC).
pub fn parse_datetime_local(s: &str) -> Option<i64> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    let long = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
    let short = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]");
    let day = time::macros::format_description!("[year]-[month]-[day]");
    time::PrimitiveDateTime::parse(s, &long)
        .or_else(|_| time::PrimitiveDateTime::parse(s, &short))
        .map(|t| t.assume_utc().unix_timestamp())
        .ok()
        .or_else(|| {
            time::Date::parse(s, &day)
                .ok()
                .map(|d| d.midnight().assume_utc().unix_timestamp())
        })
}

pub fn fmt_size(n: u64) -> String {
    const K: f64 = 1024.0;
    let f = n as f64;
    if f < K {
        format!("{n} B")
    } else if f < K * K {
        format!("{:.1} KiB", f / K)
    } else if f < K * K * K {
        format!("{:.1} MiB", f / K / K)
    } else {
        format!("{:.2} GiB", f / K / K / K)
    }
}

pub fn fmt_duration(secs: u64) -> String {
    let (d, h, m) = (secs / 86400, secs % 86400 / 3600, secs % 3600 / 60);
    if d > 0 {
        format!("{d}d {h}h")
    } else if h > 0 {
        format!("{h}h {m}m")
    } else {
        format!("{m}m {}s", secs % 60)
    }
}

/// One item per line, for textareas.
pub fn lines<T: ToString>(items: &[T]) -> String {
    items
        .iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_crash_looping_service_gets_a_banner() {
        let child = |name: &str, state| sup::ChildStatus {
            name: name.into(),
            state,
            pid: None,
            ready: false,
            up_secs: None,
            restarts: 7,
            last_exit: None,
            last_exit_code: Some(1),
            last_exit_signal: None,
            crashes: 7,
            crash_window_secs: 120,
            crash_loop_since: Some(1),
            next_restart_at: Some(2),
        };
        let mut st = sup::Status {
            pid: 1,
            started_at: 0,
            degraded: vec!["engine".into()],
            children: vec![
                child("engine", sup::ChildState::CrashLoop),
                child("console", sup::ChildState::Running),
            ],
        };
        assert_eq!(
            service_alerts(&st),
            [
                "The engine is crash-looping (7 crashes in the last 120 s); mail is accepted only while it is up."
            ]
        );
        st.children[0].state = sup::ChildState::Backoff;
        assert!(service_alerts(&st).is_empty());
    }

    #[test]
    fn problem_paths_find_their_fields() {
        assert!(path_matches("smtp.listen[1]", "smtp.listen"));
        assert!(path_matches("domain[0].name", "domain[0].name"));
        assert!(!path_matches("domain[0].name", "domain[0].smarthosts"));
        assert!(!path_matches("smtp.listener", "smtp.listen"));
        assert_eq!(
            parse_datetime_local("2026-11-23T09:08"),
            Some(1_795_424_880)
        );
        assert_eq!(datetime_local(1_795_424_880), "2026-11-23T09:08");
        assert_eq!(parse_datetime_local("nonsense"), None);
    }
}

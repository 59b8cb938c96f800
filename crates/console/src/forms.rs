//! Turning submitted form text into configuration values, and the one path by which a page
//! changes the configuration: edit a copy of the revision the user saw, validate all of it,
//! commit it as a new audited revision, ask the engine to reload.

use std::collections::HashMap;
use std::fmt::Display;
use std::str::FromStr;

use palisade_store::{Config, Problem, StoreError};

use crate::auth::Principal;
use crate::error::AppError;
use crate::state::AppState;
use crate::view::Field;

pub type Raw = HashMap<String, String>;

pub fn get<'a>(raw: &'a Raw, name: &str) -> &'a str {
    raw.get(name).map(|s| s.as_str()).unwrap_or("")
}

/// Items one per line (commas also separate), blanks skipped; a bad item is reported as
/// `path[i]`.
pub fn parse_list<T>(text: &str, path: &str, problems: &mut Vec<Problem>) -> Vec<T>
where
    T: FromStr,
    T::Err: Display,
{
    let mut out = Vec::new();
    for (i, item) in text
        .split(['\n', ','])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .enumerate()
    {
        match item.parse::<T>() {
            Ok(v) => out.push(v),
            Err(e) => problems.push(Problem::new(
                format!("{path}[{i}]"),
                format!("'{item}': {e}"),
            )),
        }
    }
    out
}

pub fn parse_strings(text: &str) -> Vec<String> {
    text.split(['\n', ','])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

/// A whole number; `None` (with a problem at `path`) when it is not one.
pub fn parse_num<T: FromStr>(text: &str, path: &str, problems: &mut Vec<Problem>) -> Option<T> {
    match text.trim().parse::<T>() {
        Ok(v) => Some(v),
        Err(_) => {
            problems.push(Problem::new(
                path,
                format!("'{}' is not a whole number in range", text.trim()),
            ));
            None
        }
    }
}

/// Sets `*slot` from the field if it parses.
pub fn set_num<T: FromStr>(slot: &mut T, raw: &Raw, name: &str, path: &str, p: &mut Vec<Problem>) {
    if let Some(v) = parse_num(get(raw, name), path, p) {
        *slot = v;
    }
}

/// The revision a settings form was rendered from (its hidden `revision` field).
pub fn revision(raw: &Raw) -> Result<i64, AppError> {
    get(raw, "revision")
        .parse()
        .map_err(|_| AppError::BadRequest("The form did not say which revision it edits.".into()))
}

pub enum EditOutcome {
    Committed {
        revision: i64,
        engine: String,
    },
    Unchanged,
    /// Nothing was committed: the problems, each with its path.
    Invalid(Vec<Problem>),
}

/// A passive unit of an HA pair takes its configuration from the active one: changes made
/// here (forms, the API, rollbacks) are refused with a sentence naming where to make them.
pub fn refuse_if_passive(state: &AppState) -> Result<(), AppError> {
    match crate::pages::dashboard::passive_refusal(state.data()) {
        Some(why) => Err(AppError::Conflict(why)),
        None => Ok(()),
    }
}

/// Applies `edit` to the revision the form was rendered from (`revision`) and commits it.
/// `edit` returns the revision comment and the problems it met while parsing; the
/// configuration's own validation adds the rest (one report with everything).
pub async fn edit_config<F>(
    state: &AppState,
    p: &Principal,
    revision: i64,
    edit: F,
) -> Result<EditOutcome, AppError>
where
    F: FnOnce(&mut Config) -> (String, Vec<Problem>) + Send + 'static,
{
    refuse_if_passive(state)?;
    let (actor, source) = (p.actor(), p.source.clone());
    let outcome = state
        .db(move |s| {
            let current = s
                .config
                .current()?
                .ok_or_else(|| AppError::internal("no configuration"))?;
            if current.id != revision {
                return Err(StoreError::Conflict {
                    expected: revision,
                    current: current.id,
                }
                .into());
            }
            let mut cfg = current.config.clone();
            let (comment, mut problems) = edit(&mut cfg);
            for q in cfg.problems() {
                if !problems.iter().any(|x| x.path == q.path) {
                    problems.push(q);
                }
            }
            if !problems.is_empty() {
                return Ok(EditOutcome::Invalid(problems));
            }
            if cfg == current.config {
                return Ok(EditOutcome::Unchanged);
            }
            let rev = s.config.commit_audited(
                &mut s.audit,
                &cfg,
                &actor,
                &source,
                &comment,
                Some(revision),
            )?;
            Ok(EditOutcome::Committed {
                revision: rev.id,
                engine: String::new(),
            })
        })
        .await?;
    Ok(match outcome {
        EditOutcome::Committed { revision, .. } => EditOutcome::Committed {
            revision,
            engine: state.reload_engine().await,
        },
        o => o,
    })
}

/// [`edit_config`], then back to `back` with the outcome as the flash message; `Err` with the
/// problems when nothing was committed (the page shows the form again with them).
pub async fn commit_edit<F>(
    state: &AppState,
    p: &Principal,
    revision: i64,
    back: &str,
    edit: F,
) -> Result<Result<axum::response::Response, Vec<Problem>>, AppError>
where
    F: FnOnce(&mut Config) -> (String, Vec<Problem>) + Send + 'static,
{
    use axum::response::{IntoResponse, Redirect};
    let msg = match edit_config(state, p, revision, edit).await? {
        EditOutcome::Committed { revision, engine } => committed_message(revision, &engine),
        EditOutcome::Unchanged => "Nothing changed.".into(),
        EditOutcome::Invalid(problems) => return Ok(Err(problems)),
    };
    flash(state, p, msg).await?;
    Ok(Ok(Redirect::to(back).into_response()))
}

/// Sets the flash message of a browser session (nothing for API callers).
pub async fn flash(state: &AppState, p: &Principal, msg: String) -> Result<(), AppError> {
    if let Some(s) = &p.session {
        let c = s.cookie.clone();
        state
            .db(move |st| Ok(st.accounts.set_flash(&c, &msg)?))
            .await?;
    }
    Ok(())
}

pub fn committed_message(revision: i64, engine: &str) -> String {
    format!("Saved as configuration revision {revision}; {engine}.")
}

/// A select's choices: form value, label, configuration value.
pub type Choices<T> = &'static [(&'static str, &'static str, T)];

pub fn options<T>(choices: Choices<T>) -> Vec<(&'static str, &'static str)> {
    choices.iter().map(|(v, l, _)| (*v, *l)).collect()
}

pub fn value_of<T: PartialEq>(choices: Choices<T>, current: &T) -> &'static str {
    choices
        .iter()
        .find(|(_, _, t)| t == current)
        .map(|(v, _, _)| *v)
        .unwrap_or("")
}

/// The configuration value of a select; a value not offered is a problem at `path`.
pub fn choose<T: Copy>(
    choices: Choices<T>,
    raw: &Raw,
    name: &str,
    path: &str,
    current: T,
    problems: &mut Vec<Problem>,
) -> T {
    let v = get(raw, name);
    match choices.iter().find(|(value, _, _)| *value == v) {
        Some((_, _, t)) => *t,
        None => {
            problems.push(Problem::new(
                path,
                format!("'{v}' is not one of the choices"),
            ));
            current
        }
    }
}

pub fn select<T: PartialEq>(
    name: &str,
    label: &str,
    choices: Choices<T>,
    current: &T,
    path: &str,
) -> Field {
    Field::new(name, label, "select", value_of(choices, current))
        .options(&options(choices))
        .path(path)
}

pub fn checked(raw: &Raw, name: &str) -> bool {
    get(raw, name) == "yes"
}

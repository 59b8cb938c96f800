//! Console users: create (with a one-time password shown once), change role, reset the
//! password, remove the second factor, delete.

use askama::Template;
use axum::Form;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use palisade_store::accounts::{Role, User};
use serde::Deserialize;

use crate::auth::{Perm, Principal, allows};
use crate::error::{AppError, render};
use crate::forms::flash;
use crate::state::AppState;
use crate::view::{Page, fmt_opt_time, fmt_time};

pub struct UserView {
    pub id: i64,
    pub name: String,
    pub role: String,
    pub totp: bool,
    pub must_change: bool,
    pub created: String,
    pub last_login: String,
    pub is_self: bool,
}

fn view(u: &User, me: i64) -> UserView {
    UserView {
        id: u.id,
        name: u.name.clone(),
        role: u.role.to_string(),
        totp: u.totp_enabled,
        must_change: u.must_change_password,
        created: fmt_time(u.created_at),
        last_login: fmt_opt_time(u.last_login_at),
        is_self: u.id == me,
    }
}

#[derive(Template)]
#[template(path = "users.html")]
struct UsersPage {
    page: Page,
    users: Vec<UserView>,
    roles: Vec<&'static str>,
    manage: bool,
}

pub async fn list(State(state): State<AppState>, p: Principal) -> Result<Response, AppError> {
    let page = Page::load(&state, &p, "users", "Users").await?;
    let users = state.db(|s| Ok(s.accounts.users()?)).await?;
    render(&UsersPage {
        page,
        users: users.iter().map(|u| view(u, p.user.id)).collect(),
        roles: Role::ALL.iter().map(|r| r.as_str()).collect(),
        manage: allows(p.user.role, Perm::ManageUsers),
    })
}

/// Shown once, right after it was made: never stored in a redirect or a flash message.
#[derive(Template)]
#[template(path = "onetime.html")]
pub struct OneTimePage {
    pub page: Page,
    pub heading: String,
    pub what: String,
    pub secret: String,
    pub back: String,
}

#[derive(Deserialize)]
pub struct CreateForm {
    name: String,
    role: String,
}

fn role(s: &str) -> Result<Role, AppError> {
    Role::parse(s).ok_or_else(|| AppError::BadRequest(format!("unknown role '{s}'")))
}

pub async fn create(
    State(state): State<AppState>,
    p: Principal,
    Form(f): Form<CreateForm>,
) -> Result<Response, AppError> {
    let role = role(&f.role)?;
    let (actor, source) = (p.actor(), p.source.clone());
    let name = f.name.trim().to_string();
    let (user, password) = state
        .db(move |s| {
            Ok(s.accounts
                .create_user(&mut s.audit, &name, role, &actor, &source)?)
        })
        .await?;
    let page = Page::load(&state, &p, "users", "User created").await?;
    render(&OneTimePage {
        page,
        heading: format!("{} ({})", user.name, user.role),
        what: "One-time password. Give it to the user through a channel you trust; they must choose their own password when they first log in. It is not shown again.".into(),
        secret: password,
        back: "/users".into(),
    })
}

#[derive(Deserialize)]
pub struct ActionForm {
    action: String,
    #[serde(default)]
    role: String,
}

pub async fn action(
    State(state): State<AppState>,
    p: Principal,
    Path(id): Path<i64>,
    Form(f): Form<ActionForm>,
) -> Result<Response, AppError> {
    let (actor, source) = (p.actor(), p.source.clone());
    match f.action.as_str() {
        "role" => {
            let role = role(&f.role)?;
            let u = state
                .db(move |s| {
                    Ok(s.accounts
                        .set_role(&mut s.audit, id, role, &actor, &source)?)
                })
                .await?;
            flash(&state, &p, format!("{} is now {}.", u.name, u.role)).await?;
        }
        "reset" => {
            let (name, password) = state
                .db(move |s| {
                    let u = s.accounts.user(id)?;
                    let pw = s
                        .accounts
                        .reset_password(&mut s.audit, &u.name, &actor, &source)?;
                    Ok((u.name, pw))
                })
                .await?;
            let page = Page::load(&state, &p, "users", "Password reset").await?;
            return render(&OneTimePage {
                page,
                heading: name,
                what: "New one-time password. The user's sessions were ended and their authenticator was removed; they choose a new password (and can set up the authenticator again) at their next login. It is not shown again.".into(),
                secret: password,
                back: "/users".into(),
            });
        }
        "totp-off" => {
            state
                .db(move |s| Ok(s.accounts.totp_disable(&mut s.audit, id, &actor, &source)?))
                .await?;
            flash(&state, &p, "The second factor was removed.".into()).await?;
        }
        "delete" => {
            if id == p.user.id {
                return Err(AppError::BadRequest(
                    "You cannot delete your own account.".into(),
                ));
            }
            let name = state
                .db(move |s| {
                    let u = s.accounts.user(id)?;
                    s.accounts.delete_user(&mut s.audit, id, &actor, &source)?;
                    Ok(u.name)
                })
                .await?;
            flash(&state, &p, format!("{name} was deleted.")).await?;
        }
        other => return Err(AppError::BadRequest(format!("unknown action '{other}'"))),
    }
    Ok(Redirect::to("/users").into_response())
}

//! An axum service whose state-changing requests are audited by
//! [`auditrelay::middleware::AuditLayer`]: handlers that change the
//! database write their audit event in the same SQLite transaction
//! (through the outbox); everything else is recorded after the response.
//!
//! | route | what it does | what is recorded |
//! |---|---|---|
//! | `POST /groups` | creates a group | `group.create`, through the outbox |
//! | `POST /groups/{id}/members` | adds a member (`409` if already in) | `group.member.create` through the outbox; a `409` is recorded after the response as a failure |
//! | `POST /groups/{id}/archive` | fails (`500`) before touching the database | `group.archive.create`, failure, after the response |
//! | `POST /groups/{id}/rename` | renames, then rolls back on purpose (`409`) | nothing: the event was written in the transaction that rolled back |
//! | `GET /groups/{id}/export` | exports a group | `group.export.read` (configured as an export) |
//! | `GET /groups`, `GET /health` | reads | nothing |

use std::sync::Arc;

use auditrelay::envelope::{Actor, Target};
use auditrelay::middleware::{Audit, AuditLayer};
use auditrelay::outbox::{Dialect, Outbox};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use sqlx::SqlitePool;

/// What the handlers share.
#[derive(Clone)]
pub struct App {
    db: SqlitePool,
    outbox: Arc<Outbox>,
}

impl App {
    /// The app on `db`, creating its tables (its own and the outbox's).
    pub async fn new(db: SqlitePool) -> sqlx::Result<App> {
        let outbox = Outbox::new(Dialect::Sqlite);
        let tables = "CREATE TABLE IF NOT EXISTS groups (id TEXT PRIMARY KEY, name TEXT NOT NULL);
            CREATE TABLE IF NOT EXISTS members (grp TEXT NOT NULL, member TEXT NOT NULL, UNIQUE (grp, member));";
        sqlx::raw_sql(tables).execute(&db).await?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(outbox.schema()))
            .execute(&db)
            .await?;
        Ok(App {
            db,
            outbox: Arc::new(outbox),
        })
    }

    /// The routes, audited by `audit` (applied after routing, so that it
    /// sees the route templates).
    pub fn router(self, audit: AuditLayer) -> Router {
        Router::new()
            .route("/groups", post(create_group).get(list_groups))
            .route("/groups/{id}/members", post(add_member))
            .route("/groups/{id}/archive", post(archive))
            .route("/groups/{id}/rename", post(rename_then_roll_back))
            .route("/groups/{id}/export", get(export))
            .route("/health", get(|| async { "ok" }))
            .route_layer(audit.record_get("/groups/{id}/export"))
            .with_state(self)
    }
}

/// The layer this service uses: the actor from `x-user` (a stand-in for a
/// verified session), proxies in `10.0.0.0/8` trusted.
pub fn audit_layer(source: &str) -> AuditLayer {
    AuditLayer::new(source)
        .tenant("acme")
        .actor(|request| {
            let user = request.headers().get("x-user")?.to_str().ok()?;
            Some(Actor::user(user))
        })
        .trust_proxies(["10.0.0.0/8"])
        .expect("valid networks")
}

#[derive(serde::Deserialize)]
struct NewGroup {
    id: String,
    name: String,
}

type Answer = (StatusCode, String);

fn failed(error: impl std::fmt::Display) -> Answer {
    (StatusCode::INTERNAL_SERVER_ERROR, error.to_string())
}

async fn create_group(
    State(app): State<App>,
    Extension(audit): Extension<Audit>,
    Json(group): Json<NewGroup>,
) -> Answer {
    let result: Result<(), Answer> = async {
        let mut tx = app.db.begin().await.map_err(failed)?;
        sqlx::query("INSERT INTO groups (id, name) VALUES (?1, ?2)")
            .bind(&group.id)
            .bind(&group.name)
            .execute(&mut *tx)
            .await
            .map_err(|e| (StatusCode::CONFLICT, e.to_string()))?;
        audit.target(Target::new("group", group.id.as_str()).name(group.name.as_str()));
        audit
            .write_sqlite(&app.outbox, &mut tx)
            .await
            .map_err(failed)?;
        tx.commit().await.map_err(failed)
    }
    .await;
    match result {
        Ok(()) => (StatusCode::CREATED, "created".into()),
        Err(answer) => answer,
    }
}

#[derive(serde::Deserialize)]
struct NewMember {
    member: String,
}

async fn add_member(
    State(app): State<App>,
    Extension(audit): Extension<Audit>,
    Path(group): Path<String>,
    Json(new): Json<NewMember>,
) -> Answer {
    let result: Result<(), Answer> = async {
        let mut tx = app.db.begin().await.map_err(failed)?;
        sqlx::query("INSERT INTO members (grp, member) VALUES (?1, ?2)")
            .bind(&group)
            .bind(&new.member)
            .execute(&mut *tx)
            .await
            // Already a member: nothing changed; the layer records the
            // refused attempt after the response.
            .map_err(|_| {
                (
                    StatusCode::CONFLICT,
                    format!("{} is already in {group}", new.member),
                )
            })?;
        audit.target(Target::new("group", group.as_str()));
        audit.payload(serde_json::json!({ "member": new.member }));
        audit
            .write_sqlite(&app.outbox, &mut tx)
            .await
            .map_err(failed)?;
        tx.commit().await.map_err(failed)
    }
    .await;
    match result {
        Ok(()) => (StatusCode::CREATED, "added".into()),
        Err(answer) => answer,
    }
}

async fn archive(Path(group): Path<String>) -> Answer {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("archiving {group} failed"),
    )
}

async fn rename_then_roll_back(
    State(app): State<App>,
    Extension(audit): Extension<Audit>,
    Path(group): Path<String>,
) -> Answer {
    let result: Result<(), Answer> = async {
        let mut tx = app.db.begin().await.map_err(failed)?;
        sqlx::query("UPDATE groups SET name = name || ' (renamed)' WHERE id = ?1")
            .bind(&group)
            .execute(&mut *tx)
            .await
            .map_err(failed)?;
        audit
            .write_sqlite(&app.outbox, &mut tx)
            .await
            .map_err(failed)?;
        // A later check fails: the change and its event go together.
        tx.rollback().await.map_err(failed)
    }
    .await;
    match result {
        Ok(()) => (StatusCode::CONFLICT, "rolled back".into()),
        Err(answer) => answer,
    }
}

async fn export(
    State(app): State<App>,
    Path(group): Path<String>,
) -> Result<Json<Vec<String>>, Answer> {
    let members = sqlx::query_scalar("SELECT member FROM members WHERE grp = ?1 ORDER BY member")
        .bind(&group)
        .fetch_all(&app.db)
        .await
        .map_err(failed)?;
    Ok(Json(members))
}

async fn list_groups(State(app): State<App>) -> Result<Json<Vec<String>>, Answer> {
    let groups = sqlx::query_scalar("SELECT id FROM groups ORDER BY id")
        .fetch_all(&app.db)
        .await
        .map_err(failed)?;
    Ok(Json(groups))
}

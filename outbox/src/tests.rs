use super::*;

#[test]
fn a_table_name_is_a_plain_identifier_or_refused() {
    for good in ["auditrelay_outbox", "_x", "orders_audit_2"] {
        assert!(
            Outbox::with_table(Dialect::Postgres, good).is_ok(),
            "{good}"
        );
    }
    let long = "a".repeat(MAX_TABLE_NAME + 1);
    for bad in [
        "",
        "Outbox",
        "2fast",
        "a-b",
        "a b",
        "x; DROP TABLE users",
        "x\"",
        "schema.table",
        long.as_str(),
    ] {
        let error = Outbox::with_table(Dialect::Sqlite, bad).unwrap_err();
        assert!(error.to_string().contains("lower-case letters"), "{error}");
    }
}

#[test]
fn dialects_are_named_by_urls_and_by_name() {
    assert_eq!(
        Dialect::of_url("postgres://u@h/db"),
        Some(Dialect::Postgres)
    );
    assert_eq!(
        Dialect::of_url("postgresql://h/db"),
        Some(Dialect::Postgres)
    );
    assert_eq!(
        Dialect::of_url("sqlite:///var/app.db"),
        Some(Dialect::Sqlite)
    );
    assert_eq!(Dialect::of_url("sqlite:app.db"), Some(Dialect::Sqlite));
    assert_eq!(Dialect::of_url("mysql://h/db"), None);
    assert_eq!(Dialect::of_url("no scheme"), None);
    assert_eq!("sqlite".parse::<Dialect>(), Ok(Dialect::Sqlite));
    assert!(
        "oracle"
            .parse::<Dialect>()
            .unwrap_err()
            .contains("\"postgres\" or \"sqlite\"")
    );
}

#[test]
fn the_schema_names_the_configured_table_everywhere() {
    let outbox = Outbox::with_table(Dialect::Postgres, "orders_audit").unwrap();
    let schema = outbox.schema();
    assert!(!schema.contains(DEFAULT_TABLE), "{schema}");
    for name in [
        "orders_audit (",
        "orders_audit_rejected",
        "orders_audit_notify",
        "pg_notify('orders_audit'",
    ] {
        assert!(schema.contains(name), "{name} missing from\n{schema}");
    }
}

#[cfg(feature = "sqlite")]
mod sqlite {
    use super::*;
    use auditrelay_plugin_api::envelope::{Actor, Outcome};
    use sqlx::{Connection, SqliteConnection};

    fn event(n: usize) -> AuditEventEnvelope {
        AuditEventEnvelope::builder("billing-api", "invoice.approved")
            .actor(Actor::user(format!("u-{n}")))
            .outcome(Outcome::Success)
            .build()
            .unwrap()
    }

    async fn open() -> (tempfile::TempDir, SqliteConnection, Outbox) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("app.db").display());
        let mut db = SqliteConnection::connect(&url).await.unwrap();
        let outbox = Outbox::new(Dialect::Sqlite);
        sqlx::raw_sql(sqlx::AssertSqlSafe(outbox.schema()))
            .execute(&mut db)
            .await
            .unwrap();
        // The DDL runs twice without complaint (deployments re-apply it).
        sqlx::raw_sql(sqlx::AssertSqlSafe(outbox.schema()))
            .execute(&mut db)
            .await
            .unwrap();
        (dir, db, outbox)
    }

    async fn rows(db: &mut SqliteConnection) -> Vec<String> {
        sqlx::query_scalar("SELECT envelope FROM auditrelay_outbox ORDER BY seq")
            .fetch_all(db)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_row_commits_and_rolls_back_with_its_transaction() {
        let (_dir, mut db, outbox) = open().await;
        let committed = event(1);
        let mut tx = db.begin().await.unwrap();
        outbox.write_sqlite(&mut tx, &committed).await.unwrap();
        tx.commit().await.unwrap();
        let mut tx = db.begin().await.unwrap();
        outbox.write_sqlite(&mut tx, &event(2)).await.unwrap();
        tx.rollback().await.unwrap();

        let stored = rows(&mut db).await;
        assert_eq!(stored, [outbox.row(&committed).unwrap()]);
        let back = AuditEventEnvelope::from_json(stored[0].as_bytes()).unwrap();
        assert_eq!(back, committed);
    }

    #[tokio::test]
    async fn an_invalid_event_is_refused_before_the_insert_and_the_transaction_goes_on() {
        let (_dir, mut db, outbox) = open().await;
        let mut invalid = event(1);
        invalid.source = String::new();
        let mut tx = db.begin().await.unwrap();
        let error = outbox.write_sqlite(&mut tx, &invalid).await.unwrap_err();
        assert!(matches!(error, WriteError::Invalid(_)), "{error}");
        assert!(error.to_string().contains("source"), "{error}");
        outbox.write_sqlite(&mut tx, &event(2)).await.unwrap();
        tx.commit().await.unwrap();
        assert_eq!(rows(&mut db).await.len(), 1);
    }

    #[tokio::test]
    async fn the_documented_plain_insert_is_what_the_helper_runs() {
        let (_dir, mut db, outbox) = open().await;
        let json = r#"{"id":"x"}"#;
        sqlx::query(sqlx::AssertSqlSafe(outbox.insert_sql()))
            .bind(json)
            .execute(&mut db)
            .await
            .unwrap();
        assert_eq!(rows(&mut db).await, [json]);
    }
}

/// docs/outbox.md shows the DDL exactly as `schema()` writes it.
#[test]
fn the_documented_ddl_is_the_shipped_ddl() {
    let doc = include_str!("../../docs/outbox.md");
    for dialect in [Dialect::Postgres, Dialect::Sqlite] {
        let schema = Outbox::new(dialect).schema();
        assert!(
            doc.contains(&format!("```sql\n{schema}```")),
            "docs/outbox.md does not show the {dialect} DDL as it is:\n{schema}"
        );
    }
}

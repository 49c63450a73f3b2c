//! The PostgreSQL and SQLite migration trees give the same tables and columns, and every
//! down migration reverts cleanly.

use std::collections::BTreeSet;

use coopsync_tests::{Backend, TestDb, notice};
use diesel::{
    QueryableByName, RunQueryDsl,
    sql_types::{Integer, Text},
};

#[derive(QueryableByName)]
struct PgColumn {
    #[diesel(sql_type = Text)]
    table_name: String,
    #[diesel(sql_type = Text)]
    column_name: String,
    #[diesel(sql_type = Text)]
    is_nullable: String,
}

#[derive(QueryableByName)]
struct SqliteColumn {
    #[diesel(sql_type = Text)]
    table_name: String,
    #[diesel(sql_type = Text)]
    column_name: String,
    #[diesel(sql_type = Integer)]
    not_null: i32,
    #[diesel(sql_type = Integer)]
    pk: i32,
}

type Columns = BTreeSet<(String, String, bool)>;

fn columns(db: &TestDb) -> Columns {
    let mut conn = db.connect();
    coopsync::db::run_migrations(&mut conn).unwrap();
    match db.backend {
        Backend::Postgres => diesel::sql_query(
            "SELECT table_name::text AS table_name, column_name::text AS column_name, \
             is_nullable::text AS is_nullable FROM information_schema.columns \
             WHERE table_schema = 'public' AND table_name <> '__diesel_schema_migrations'",
        )
        .load::<PgColumn>(&mut conn)
        .unwrap()
        .into_iter()
        .map(|c| (c.table_name, c.column_name, c.is_nullable == "YES"))
        .collect(),
        Backend::Sqlite => diesel::sql_query(
            "SELECT m.name AS table_name, p.name AS column_name, p.\"notnull\" AS not_null, p.pk AS pk \
             FROM sqlite_master m JOIN pragma_table_info(m.name) p \
             WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' \
             AND m.name <> '__diesel_schema_migrations'",
        )
        .load::<SqliteColumn>(&mut conn)
        .unwrap()
        .into_iter()
        .map(|c| (c.table_name, c.column_name, c.not_null == 0 && c.pk == 0))
        .collect(),
    }
}

#[test]
fn postgres_and_sqlite_migrations_give_the_same_tables_and_columns() {
    let sqlite = TestDb::create(Backend::Sqlite).unwrap();
    let Some(pg) = TestDb::create(Backend::Postgres) else {
        notice("schema parity not checked: PostgreSQL unavailable");
        return;
    };
    let (a, b) = (columns(&sqlite), columns(&pg));
    assert!(a.len() > 40, "suspiciously few columns: {}", a.len());
    let only_sqlite: Vec<_> = a.difference(&b).collect();
    let only_pg: Vec<_> = b.difference(&a).collect();
    assert!(
        only_sqlite.is_empty() && only_pg.is_empty(),
        "only in SQLite: {only_sqlite:?}\nonly in PostgreSQL: {only_pg:?}"
    );
}

fn down_migrations_revert_and_reapply(backend: Backend) {
    let Some(db) = TestDb::create(backend) else {
        return;
    };
    let before = columns(&db);
    let mut conn = db.connect();
    let reverted = coopsync::db::revert_all_migrations(&mut conn).unwrap();
    assert!(reverted >= 1);
    let applied = coopsync::db::run_migrations(&mut conn).unwrap();
    assert_eq!(applied.len(), reverted);
    assert_eq!(columns(&db), before);
}

#[test]
fn sqlite_down_migrations_revert_and_reapply() {
    down_migrations_revert_and_reapply(Backend::Sqlite);
}

#[test]
fn postgres_down_migrations_revert_and_reapply() {
    down_migrations_revert_and_reapply(Backend::Postgres);
}

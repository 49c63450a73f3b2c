//! Hand-written SQL for the aggregate reports (GROUP BY, COUNT(DISTINCT …) over joins
//! that the query builder cannot type on both backends): text with text binds, numbered
//! `$n` for PostgreSQL and `?` for SQLite, run on either connection. Only constant SQL
//! and binds go in: no caller text is ever pasted into the statement.

use diesel::{
    QueryResult, RunQueryDsl, pg::Pg, query_builder::QueryFragment, sql_types::Text, sqlite::Sqlite,
};

use super::{Backend, DbConnection};
use crate::domain::scope::Scope;

/// A statement being built.
#[derive(Debug, Clone)]
pub struct Sql {
    text: String,
    binds: Vec<String>,
    backend: Backend,
}

impl Sql {
    pub fn new(conn: &DbConnection) -> Sql {
        let backend = match conn {
            DbConnection::Postgresql(_) => Backend::Postgres,
            DbConnection::Sqlite(_) => Backend::Sqlite,
        };
        Sql {
            text: String::new(),
            binds: Vec::new(),
            backend,
        }
    }

    /// Appends constant SQL.
    pub fn push(&mut self, sql: &str) -> &mut Self {
        self.text.push_str(sql);
        self
    }

    /// Appends a placeholder bound to `value`.
    pub fn bind(&mut self, value: impl Into<String>) -> &mut Self {
        self.binds.push(value.into());
        match self.backend {
            Backend::Postgres => {
                let n = self.binds.len();
                self.text.push_str(&format!("${n}"));
            }
            Backend::Sqlite => self.text.push('?'),
        }
        self
    }

    /// `column IN (…)` over `values`; an empty list is a condition that is never true
    /// (`IN ()` is not valid SQL on PostgreSQL).
    pub fn in_list<'a>(
        &mut self,
        column: &str,
        values: impl IntoIterator<Item = &'a String>,
    ) -> &mut Self {
        let values: Vec<&String> = values.into_iter().collect();
        if values.is_empty() {
            return self.push("1 = 0");
        }
        self.push(column).push(" IN (");
        for (i, v) in values.into_iter().enumerate() {
            if i > 0 {
                self.push(", ");
            }
            self.bind(v.clone());
        }
        self.push(")")
    }

    /// The scope rule (`domain::scope::Scope`) as a condition on the `documents` row
    /// aliased `doc` (the caller joins it): the hand-written SQL form of the rule, pinned
    /// to it and to `db::scoped!` by `scope::*::the_sql_scope_selects_exactly_what_the_rule_sees`.
    pub fn in_scope(&mut self, doc: &str, scope: &Scope) -> &mut Self {
        if scope.all {
            return self.push("1 = 1");
        }
        // An empty list is left out rather than written `1 = 0`: `x IN (…) OR 1 = 0`
        // keeps SQLite from using the index on x (a provincial report scanned all
        // 90,000 attendance rows instead of its province's 3,600: 84 ms against 13 ms).
        let provinces = format!("{doc}.province_code");
        let cooperatives = format!("{doc}.cooperative_id");
        match (scope.provinces.is_empty(), scope.cooperatives.is_empty()) {
            (true, true) => self.push("1 = 0"),
            (false, true) => self.in_list(&provinces, &scope.provinces),
            (true, false) => self.in_list(&cooperatives, &scope.cooperatives),
            (false, false) => {
                self.push("(");
                self.in_list(&provinces, &scope.provinces).push(" OR ");
                self.in_list(&cooperatives, &scope.cooperatives).push(")")
            }
        }
    }

    pub fn load<T>(&self, conn: &mut DbConnection) -> QueryResult<Vec<T>>
    where
        T: diesel::QueryableByName<Pg> + diesel::QueryableByName<Sqlite> + 'static,
    {
        match conn {
            DbConnection::Postgresql(c) => {
                let mut q = diesel::sql_query(self.text.clone()).into_boxed::<Pg>();
                for b in &self.binds {
                    q = q.bind::<Text, _>(b.clone());
                }
                check::<Pg>(&q);
                q.load(c)
            }
            DbConnection::Sqlite(c) => {
                let mut q = diesel::sql_query(self.text.clone()).into_boxed::<Sqlite>();
                for b in &self.binds {
                    q = q.bind::<Text, _>(b.clone());
                }
                check::<Sqlite>(&q);
                q.load(c)
            }
        }
    }
}

fn check<DB: diesel::backend::Backend>(_: &impl QueryFragment<DB>) {}

#[cfg(test)]
mod tests {
    use super::*;

    fn sql(backend: Backend) -> Sql {
        Sql {
            text: String::new(),
            binds: Vec::new(),
            backend,
        }
    }

    #[test]
    fn placeholders_follow_the_backend() {
        let scope = Scope {
            all: false,
            provinces: ["07".to_string()].into(),
            cooperatives: Default::default(),
        };
        let mut pg = sql(Backend::Postgres);
        pg.push("SELECT 1 WHERE ")
            .in_scope("d", &scope)
            .push(" AND x = ")
            .bind("y");
        assert_eq!(pg.text, "SELECT 1 WHERE d.province_code IN ($1) AND x = $2");
        let mut lite = sql(Backend::Sqlite);
        lite.push("x = ").bind("a").push(" AND y = ").bind("b");
        assert_eq!(
            (lite.text.as_str(), lite.binds.len()),
            ("x = ? AND y = ?", 2)
        );
    }
}

//! The authorization matrix: every route, called by every role, on a target inside and
//! outside the caller's scope, gives the expected status.

use coopsync_tests::{PASSWORD, TestApp, dual_backend_tests};
use serde_json::{Value, json};

struct Case {
    method: &'static str,
    path: String,
    body: Value,
    caller: &'static str,
    expect: u16,
}

fn case(
    method: &'static str,
    path: String,
    body: Value,
    caller: &'static str,
    expect: u16,
) -> Case {
    Case {
        method,
        path,
        body,
        caller,
        expect,
    }
}

fn every_route_by_every_role_in_and_out_of_scope(app: &TestApp) {
    app.create_user("nat", "national_admin", &[], &[]);
    app.create_user("prov07", "provincial_admin", &["07"], &[]);
    app.create_user("enum07", "enumerator", &["07"], &[]);
    let enum07b = app.create_user("enum07b", "enumerator", &["07"], &[]);
    let enum07c = app.create_user("enum07c", "enumerator", &["07"], &[]);
    let enum12 = app.create_user("enum12", "enumerator", &["12"], &[]);
    let prov12 = app.create_user("prov12", "provincial_admin", &["12"], &[]);
    let sessions: std::collections::HashMap<&str, coopsync_tests::Session> =
        ["nat", "prov07", "enum07"]
            .into_iter()
            .map(|u| (u, app.login(u)))
            .collect();
    let enum07 = sessions["enum07"].user_id.clone();
    let dev_07b = app.login("enum07b").device_id;
    let dev_07c = app.login("enum07c").device_id;
    let dev_12 = app.login("enum12").device_id;
    let new_user = |name: &str, role: &str, province: &str| json!({"username": name, "password": PASSWORD, "role": role, "provinces": [province]});
    let mut cases = Vec::new();
    for (caller, ok) in [("nat", true), ("prov07", true), ("enum07", true)] {
        let s = if ok { 200 } else { 403 };
        cases.push(case("GET", "/api/v1/me".into(), Value::Null, caller, s));
        cases.push(case(
            "GET",
            "/api/v1/provinces".into(),
            Value::Null,
            caller,
            s,
        ));
        cases.push(case(
            "GET",
            "/api/v1/devices".into(),
            Value::Null,
            caller,
            s,
        ));
    }
    // Reads.
    for (caller, own, other, admin_other, list) in [
        ("nat", 200, 200, 200, 200),
        ("prov07", 200, 404, 404, 200),
        ("enum07", 403, 403, 403, 403),
    ] {
        cases.push(case(
            "GET",
            "/api/v1/users".into(),
            Value::Null,
            caller,
            list,
        ));
        cases.push(case(
            "GET",
            format!("/api/v1/users/{enum07}"),
            Value::Null,
            caller,
            own,
        ));
        cases.push(case(
            "GET",
            format!("/api/v1/users/{enum12}"),
            Value::Null,
            caller,
            other,
        ));
        cases.push(case(
            "GET",
            format!("/api/v1/users/{prov12}"),
            Value::Null,
            caller,
            admin_other,
        ));
        let audit = if caller == "nat" { 200 } else { 403 };
        cases.push(case(
            "GET",
            "/api/v1/audit".into(),
            Value::Null,
            caller,
            audit,
        ));
    }
    // Creating accounts.
    for (caller, in07, in12, admin07) in [
        ("nat", 201, 201, 201),
        ("prov07", 201, 403, 403),
        ("enum07", 403, 403, 403),
    ] {
        cases.push(case(
            "POST",
            "/api/v1/users".into(),
            new_user(&format!("{caller}.a"), "enumerator", "07"),
            caller,
            in07,
        ));
        cases.push(case(
            "POST",
            "/api/v1/users".into(),
            new_user(&format!("{caller}.b"), "enumerator", "12"),
            caller,
            in12,
        ));
        cases.push(case(
            "POST",
            "/api/v1/users".into(),
            new_user(&format!("{caller}.c"), "provincial_admin", "07"),
            caller,
            admin07,
        ));
    }
    // Updating accounts and assignments.
    for (caller, own, other) in [
        ("enum07", 403, 403),
        ("nat", 200, 200),
        ("prov07", 200, 404),
    ] {
        cases.push(case(
            "PATCH",
            format!("/api/v1/users/{enum07b}"),
            json!({"full_name": "X"}),
            caller,
            own,
        ));
        cases.push(case(
            "PATCH",
            format!("/api/v1/users/{enum12}"),
            json!({"full_name": "Y"}),
            caller,
            other,
        ));
        cases.push(case(
            "PUT",
            format!("/api/v1/users/{enum07b}/assignments"),
            json!({"provinces": ["07"]}),
            caller,
            own,
        ));
        cases.push(case(
            "PUT",
            format!("/api/v1/users/{enum12}/assignments"),
            json!({"provinces": ["12"]}),
            caller,
            other,
        ));
    }
    // A provincial admin cannot move an enumerator out of their provinces or promote one.
    cases.push(case(
        "PUT",
        format!("/api/v1/users/{enum07b}/assignments"),
        json!({"provinces": ["07", "12"]}),
        "prov07",
        403,
    ));
    cases.push(case(
        "PATCH",
        format!("/api/v1/users/{enum07b}"),
        json!({"role": "provincial_admin"}),
        "prov07",
        403,
    ));
    // Password resets and device revocation (destructive: on dedicated targets).
    for (caller, own, other) in [
        ("enum07", 403, 403),
        ("prov07", 204, 404),
        ("nat", 204, 204),
    ] {
        cases.push(case(
            "POST",
            format!("/api/v1/users/{enum07c}/password"),
            json!({"password": "another-good-password"}),
            caller,
            own,
        ));
        cases.push(case(
            "POST",
            format!("/api/v1/users/{enum12}/password"),
            json!({"password": "another-good-password"}),
            caller,
            other,
        ));
    }
    cases.push(case(
        "POST",
        format!("/api/v1/devices/{dev_12}/revoke"),
        json!({}),
        "enum07",
        404,
    ));
    cases.push(case(
        "POST",
        format!("/api/v1/devices/{dev_12}/revoke"),
        json!({}),
        "prov07",
        404,
    ));
    cases.push(case(
        "POST",
        format!("/api/v1/devices/{dev_07b}/revoke"),
        json!({}),
        "enum07",
        404,
    ));
    cases.push(case(
        "POST",
        format!("/api/v1/devices/{dev_07b}/revoke"),
        json!({}),
        "prov07",
        200,
    ));
    cases.push(case(
        "POST",
        format!("/api/v1/devices/{dev_12}/revoke"),
        json!({}),
        "nat",
        200,
    ));
    cases.push(case(
        "POST",
        format!("/api/v1/devices/{dev_07c}/revoke"),
        json!({}),
        "nat",
        200,
    ));
    // The review queues: admins in scope; a conflict that does not exist (or is outside
    // the caller's scope) is 404; enumerators 403.
    for (caller, list, item) in [
        ("nat", 200, 404),
        ("prov07", 200, 404),
        ("enum07", 403, 403),
    ] {
        cases.push(case(
            "GET",
            "/api/v1/conflicts".into(),
            Value::Null,
            caller,
            list,
        ));
        cases.push(case(
            "GET",
            "/api/v1/conflicts/999999".into(),
            Value::Null,
            caller,
            item,
        ));
        cases.push(case(
            "POST",
            "/api/v1/conflicts/999999/resolve".into(),
            json!({"choice": 0}),
            caller,
            item,
        ));
    }
    for (caller, status) in [("nat", 200), ("prov07", 200), ("enum07", 403)] {
        for path in [
            "/api/v1/exports/cooperatives",
            "/api/v1/reports",
            "/api/v1/reports/people_trained",
        ] {
            cases.push(case("GET", path.into(), Value::Null, caller, status));
        }
    }
    // Duplicates: admins in scope; a pair or merge that does not exist (or is outside
    // the caller's scope) is 404; enumerators 403.
    let pair = "/api/v1/duplicates/00000000-0000-5000-8000-000000000000";
    for (caller, status, item) in [
        ("nat", 200, 404),
        ("prov07", 200, 404),
        ("enum07", 403, 403),
    ] {
        cases.push(case(
            "GET",
            "/api/v1/duplicates?province=07".into(),
            Value::Null,
            caller,
            status,
        ));
        cases.push(case("GET", pair.into(), Value::Null, caller, item));
        cases.push(case(
            "POST",
            format!("{pair}/merge"),
            json!({"survivor": "00000000-0000-4000-8000-000000000000"}),
            caller,
            item,
        ));
        cases.push(case(
            "POST",
            format!("{pair}/not-same"),
            json!({}),
            caller,
            item,
        ));
        cases.push(case(
            "POST",
            "/api/v1/merges/00000000-0000-4000-8000-000000000000/undo".into(),
            Value::Null,
            caller,
            item,
        ));
    }
    // Walk-ins: as the duplicates.
    let walk_in = "/api/v1/walk-ins/00000000-0000-5000-8000-000000000000";
    for (caller, status, item) in [
        ("nat", 200, 404),
        ("prov07", 200, 404),
        ("enum07", 403, 403),
    ] {
        cases.push(case(
            "GET",
            "/api/v1/walk-ins?province=07".into(),
            Value::Null,
            caller,
            status,
        ));
        cases.push(case("GET", walk_in.into(), Value::Null, caller, item));
        cases.push(case(
            "POST",
            format!("{walk_in}/link"),
            json!({"member_id": "00000000-0000-4000-8000-000000000000"}),
            caller,
            item,
        ));
        cases.push(case(
            "POST",
            format!("{walk_in}/promote"),
            json!({}),
            caller,
            item,
        ));
        cases.push(case(
            "POST",
            format!("{walk_in}/undo"),
            Value::Null,
            caller,
            item,
        ));
    }
    // Imports are national admins' work; the template is for every admin.
    let unknown = "/api/v1/imports/00000000-0000-4000-8000-000000000000";
    for (caller, list, item, upload, template) in [
        ("nat", 200, 404, 202, 200),
        ("prov07", 403, 403, 403, 200),
        ("enum07", 403, 403, 403, 403),
    ] {
        cases.push(case(
            "GET",
            "/api/v1/imports".into(),
            Value::Null,
            caller,
            list,
        ));
        cases.push(case("GET", unknown.into(), Value::Null, caller, item));
        cases.push(case(
            "POST",
            format!("{unknown}/apply"),
            Value::Null,
            caller,
            item,
        ));
        cases.push(case(
            "POST",
            "/api/v1/imports/members".into(),
            Value::Null,
            caller,
            upload,
        ));
        cases.push(case(
            "GET",
            "/api/v1/imports/templates/members".into(),
            Value::Null,
            caller,
            template,
        ));
    }
    // The audit log leaves only with national admins.
    for (caller, status) in [("nat", 200), ("prov07", 403), ("enum07", 403)] {
        cases.push(case(
            "GET",
            "/api/v1/exports/audit".into(),
            Value::Null,
            caller,
            status,
        ));
    }
    for (caller, list, item) in [
        ("nat", 200, 404),
        ("prov07", 200, 404),
        ("enum07", 403, 403),
    ] {
        cases.push(case(
            "GET",
            "/api/v1/quarantine".into(),
            Value::Null,
            caller,
            list,
        ));
        cases.push(case(
            "GET",
            "/api/v1/pending".into(),
            Value::Null,
            caller,
            list,
        ));
        cases.push(case(
            "GET",
            "/api/v1/flags".into(),
            Value::Null,
            caller,
            list,
        ));
        cases.push(case(
            "GET",
            "/api/v1/flags/999999".into(),
            Value::Null,
            caller,
            item,
        ));
        cases.push(case(
            "POST",
            "/api/v1/flags/999999/accept".into(),
            json!({"note": "ok"}),
            caller,
            item,
        ));
        cases.push(case(
            "POST",
            "/api/v1/flags/999999/correct".into(),
            json!({"value": "x"}),
            caller,
            item,
        ));
        for path in [
            "/api/v1/quarantine/999999",
            "/api/v1/quarantine/999999/bytes",
        ] {
            cases.push(case("GET", path.into(), Value::Null, caller, item));
        }
        cases.push(case(
            "POST",
            "/api/v1/quarantine/999999/release".into(),
            json!({}),
            caller,
            item,
        ));
        cases.push(case(
            "POST",
            "/api/v1/quarantine/999999/dismiss".into(),
            json!({"reason": "test"}),
            caller,
            item,
        ));
    }
    for (caller, status) in [("nat", 200), ("prov07", 200), ("enum07", 403)] {
        cases.push(case(
            "GET",
            "/api/v1/records?type=member".into(),
            Value::Null,
            caller,
            status,
        ));
    }
    for (caller, status) in [("nat", 404), ("prov07", 404), ("enum07", 403)] {
        cases.push(case(
            "GET",
            format!("/api/v1/records/{}", uuid::Uuid::new_v4()),
            Value::Null,
            caller,
            status,
        ));
        cases.push(case(
            "GET",
            format!("/api/v1/records/{}/history", uuid::Uuid::new_v4()),
            Value::Null,
            caller,
            status,
        ));
        cases.push(case(
            "PATCH",
            format!("/api/v1/records/{}", uuid::Uuid::new_v4()),
            json!({"fields": {"village": "X"}}),
            caller,
            status,
        ));
    }
    // Every operation of the OpenAPI document is in the matrix.
    let doc = app.get("/api/v1/openapi.json", None).body;
    let matches = |template: &str, path: &str| {
        let path = path.split('?').next().unwrap_or(path);
        let (t, p): (Vec<&str>, Vec<&str>) =
            (template.split('/').collect(), path.split('/').collect());
        t.len() == p.len()
            && t.iter()
                .zip(&p)
                .all(|(a, b)| a == b || (a.starts_with('{') && a.ends_with('}')))
    };
    let mut uncovered = Vec::new();
    for (template, ops) in doc["paths"].as_object().unwrap() {
        for method in ops.as_object().unwrap().keys() {
            let method = method.to_ascii_uppercase();
            // No role involved; sync's scope is the sync tests' subject; sign-out ends
            // the sessions, so it is checked for every role after the matrix.
            let skipped = [
                "/healthz",
                "/readyz",
                "/api/v1/auth/login",
                "/api/v1/auth/refresh",
                "/api/v1/auth/logout",
                "/api/v1/sync",
            ];
            if skipped.contains(&template.as_str()) {
                continue;
            }
            if !cases
                .iter()
                .any(|c| c.method == method && matches(template, &c.path))
            {
                uncovered.push(format!("{method} {template}"));
            }
        }
    }
    assert!(
        uncovered.is_empty(),
        "routes missing from the matrix: {uncovered:?}"
    );
    let mut failures = Vec::new();
    for c in &cases {
        let r = app.send(c.method, &c.path, Some(&sessions[c.caller].access), &c.body);
        if r.status != c.expect {
            failures.push(format!(
                "{} {} as {}: expected {}, got {} {}",
                c.method, c.path, c.caller, c.expect, r.status, r.body
            ));
        }
        if r.status >= 400 {
            assert!(
                !r.code().is_empty(),
                "error without envelope: {} {}",
                c.method,
                c.path
            );
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    // Sign-out works for every role.
    for caller in ["nat", "prov07", "enum07"] {
        let r = app.post(
            "/api/v1/auth/logout",
            Some(&sessions[caller].access),
            &json!({}),
        );
        assert_eq!(r.status, 204);
    }
}

fn lists_show_only_what_is_in_scope(app: &TestApp) {
    app.create_user("prov07", "provincial_admin", &["07"], &[]);
    app.create_user("enum07", "enumerator", &["07"], &[]);
    app.create_user("enum12", "enumerator", &["12"], &[]);
    app.create_user("straddle", "enumerator", &["07", "12"], &[]);
    let admin = app.login("prov07");
    let e07 = app.login("enum07");
    let e12 = app.login("enum12");
    let users = app.get("/api/v1/users", Some(&admin.access));
    let mut names: Vec<&str> = users.body["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["enum07", "prov07"]);
    let devices = app.get("/api/v1/devices", Some(&admin.access));
    let ids: Vec<&str> = devices.body["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&e07.device_id.as_str()));
    assert!(ids.contains(&admin.device_id.as_str()));
    assert!(!ids.contains(&e12.device_id.as_str()));
    let own = app.get("/api/v1/devices", Some(&e07.access));
    assert_eq!(own.body["devices"].as_array().unwrap().len(), 1);
}

fn user_list_pages_with_a_cursor(app: &TestApp) {
    app.create_user("nat", "national_admin", &[], &[]);
    for i in 0..7 {
        app.create_user(&format!("u{i:02}"), "enumerator", &["07"], &[]);
    }
    let s = app.login("nat");
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/users?limit=3&cursor={c}"),
            None => "/api/v1/users?limit=3".to_string(),
        };
        let r = app.get(&path, Some(&s.access));
        assert_eq!(r.status, 200);
        for u in r.body["users"].as_array().unwrap() {
            seen.push(u["username"].as_str().unwrap().to_string());
        }
        match r.body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 8);
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted, seen);
    let bad = app.get("/api/v1/users?limit=abc", Some(&s.access));
    assert_eq!((bad.status, bad.code()), (400, "invalid_query"));
}

fn account_rules_give_clear_errors(app: &TestApp) {
    app.create_user("nat", "national_admin", &[], &[]);
    let s = app.login("nat");
    let dup = app.post(
        "/api/v1/users",
        Some(&s.access),
        &json!({"username": "nat", "password": PASSWORD, "role": "enumerator"}),
    );
    assert_eq!((dup.status, dup.code()), (409, "username_taken"));
    let bad = app.post("/api/v1/users", Some(&s.access), &json!({"username": "Bad Name", "password": PASSWORD, "role": "enumerator", "provinces": ["99"]}));
    assert_eq!((bad.status, bad.code()), (422, "validation_failed"));
    let unknown = app.post("/api/v1/users", Some(&s.access), &json!({"username": "okname", "password": PASSWORD, "role": "enumerator", "provinces": ["99"]}));
    assert_eq!(
        unknown.body["error"]["fields"][0]["code"],
        "unknown_province"
    );
    let role = app.post(
        "/api/v1/users",
        Some(&s.access),
        &json!({"username": "okname", "password": PASSWORD, "role": "king"}),
    );
    assert_eq!((role.status, role.code()), (400, "invalid_json"));
    let pa = app.post(
        "/api/v1/users",
        Some(&s.access),
        &json!({"username": "okname", "password": PASSWORD, "role": "provincial_admin"}),
    );
    assert_eq!((pa.status, pa.code()), (422, "validation_failed"));
    let me = app.send(
        "PATCH",
        &format!("/api/v1/users/{}", s.user_id),
        Some(&s.access),
        &json!({"active": false}),
    );
    assert_eq!((me.status, me.code()), (403, "forbidden"));
}

dual_backend_tests!(
    every_route_by_every_role_in_and_out_of_scope,
    lists_show_only_what_is_in_scope,
    user_list_pages_with_a_cursor,
    account_rules_give_clear_errors,
);

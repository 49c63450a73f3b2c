//! Possible duplicates: the same woman registered on two tablets, once with a zero-width
//! space and another phone spelling, once in another cooperative by her phone; a husband
//! sharing her phone is not proposed; scope as everywhere.

use coopsync_tests::{TestApp, dual_backend_tests, tablet::Tablet};
use sync_protocol::documents::{DocType, Member};

fn member(
    t: &mut Tablet,
    coop: &str,
    km: &str,
    latin: &str,
    sex: &str,
    yob: i64,
    phone: &str,
) -> String {
    let m = Member {
        cooperative_id: Some(coop.to_string()),
        full_name_khmer: Some(km.to_string()),
        name_latin: Some(latin.to_string()),
        sex: Some(sex.to_string()),
        year_of_birth: Some(yob),
        phone: Some(phone.to_string()),
        village: Some("Prey Khmeng".into()),
        role: Some("member".into()),
        ..Member::default()
    };
    t.client
        .create(DocType::Member, |tx| m.write(tx, true))
        .unwrap()
}

fn the_same_farmer_registered_twice_is_proposed_with_its_reasons(app: &TestApp) {
    app.create_user("nat", "national_admin", &[], &[]);
    app.create_user("prov07", "provincial_admin", &["07"], &[]);
    app.create_user("prov12", "provincial_admin", &["12"], &[]);
    app.create_user("enum07a", "enumerator", &["07"], &[]);
    app.create_user("enum07b", "enumerator", &["07"], &[]);
    let mut a = Tablet::new(app, "enum07a");
    let coop = a.create_cooperative("07", "Ou Krang");
    let other_coop = a.create_cooperative("07", "Tuek Chhu");
    let first = member(
        &mut a,
        &coop,
        "សុខ ចាន់ថា",
        "Sok Chanthea",
        "female",
        1986,
        "012 345 678",
    );
    let husband = member(
        &mut a,
        &coop,
        "ហេង សុភា",
        "Heng Sophea",
        "male",
        1980,
        "012 345 678",
    );
    for i in 0..5 {
        member(
            &mut a,
            &coop,
            &format!("ស្រី {i}"),
            &format!("Srey {i}"),
            "female",
            1990 + i,
            &format!("097 000 00{i}"),
        );
    }
    a.sync();
    let mut b = Tablet::new(app, "enum07b");
    b.sync();
    let again = member(
        &mut b,
        &coop,
        "សុខ\u{200b}  ចាន់ថា",
        "Sokh Chantha",
        "female",
        1987,
        "+855 12 345 678",
    );
    let elsewhere = member(
        &mut b,
        &other_coop,
        "ចាន់ថា សុខ",
        "Chanthea Sok",
        "female",
        1986,
        "85512345678",
    );
    b.sync();

    let p07 = app.login("prov07").access;
    let r = app.get("/api/v1/duplicates", Some(&p07));
    assert_eq!(r.status, 200, "{}", r.body);
    let pairs: Vec<(String, String, u64, String)> = r.body["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["a"]["id"].as_str().unwrap().to_string(),
                c["b"]["id"].as_str().unwrap().to_string(),
                c["score"].as_u64().unwrap(),
                c["explanation"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let has = |x: &str, y: &str| {
        pairs
            .iter()
            .find(|(a, b, _, _)| (a == x && b == y) || (a == y && b == x))
    };
    let (_, _, score, why) = has(&first, &again).unwrap_or_else(|| panic!("{pairs:?}"));
    assert_eq!(*score, 100, "{why}");
    assert!(
        why.starts_with("same Khmer name (50) + same phone number (35)"),
        "{why}"
    );
    let (_, _, _, why) = has(&first, &elsewhere).unwrap_or_else(|| panic!("{pairs:?}"));
    assert!(why.contains("same phone number"), "{why}");
    assert!(has(&again, &elsewhere).is_some());
    assert!(has(&first, &husband).is_none(), "sex disagrees: {pairs:?}");
    assert_eq!(pairs.len(), 3, "{pairs:?}");
    // Sorted best first; blocks kept the comparisons few.
    assert!(pairs.windows(2).all(|w| w[0].2 >= w[1].2));
    assert!(
        r.body["compared"].as_u64().unwrap() < 45,
        "{}",
        r.body["compared"]
    );

    let r = app.get(
        &format!("/api/v1/duplicates?cooperative={coop}&min_score=90"),
        Some(&p07),
    );
    assert_eq!(
        r.body["candidates"].as_array().unwrap().len(),
        1,
        "{}",
        r.body
    );

    let p12 = app.login("prov12").access;
    let r = app.get("/api/v1/duplicates", Some(&p12));
    assert_eq!(
        r.body["candidates"].as_array().unwrap().len(),
        0,
        "another province sees none"
    );
    let nat = app.login("nat").access;
    let r = app.get("/api/v1/duplicates", Some(&nat));
    assert_eq!((r.status, r.code()), (400, "province_required"));
    let r = app.get("/api/v1/duplicates?province=07", Some(&nat));
    assert_eq!(r.body["found"], 3);
    let e = app.login("enum07a").access;
    assert_eq!(app.get("/api/v1/duplicates", Some(&e)).status, 403);
}

dual_backend_tests!(the_same_farmer_registered_twice_is_proposed_with_its_reasons);

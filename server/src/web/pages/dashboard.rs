//! The dashboard: people trained by province, programme and sex, the women's share,
//! sessions and hours by month, cooperatives reached — drawn from `reports::run`, the
//! same figures (and scope) as `/api/v1/reports`.

use actix_web::{HttpResponse, web};
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::Value as Json;

use crate::{
    export::Filter,
    reports::{ALL, Report},
    state::AppState,
    web::{
        WebError,
        charts::{self, Bar},
        i18n::Lang,
        layout::{self, Section},
        ok,
        session::WebUser,
    },
};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/dashboard", web::get().to(dashboard));
}

#[derive(Debug, Default, Deserialize)]
pub struct DashboardQuery {
    province: Option<String>,
    programme: Option<String>,
    from: Option<String>,
    to: Option<String>,
}

fn nonempty(s: &Option<String>) -> Option<&str> {
    s.as_deref().filter(|s| !s.is_empty())
}

/// A programme's name as people say it.
pub fn programme_name(lang: Lang, code: &str) -> String {
    match code {
        "think_coop" => "Think.Coop".into(),
        "start_coop" => "Start.Coop".into(),
        "follow_up" => lang.t("Follow-up", "ការតាមដាន").into(),
        ALL => lang.t("All programmes", "គ្រប់កម្មវិធី").into(),
        other => other.into(),
    }
}

fn int(row: &Json, k: &str) -> i64 {
    row.get(k).and_then(Json::as_i64).unwrap_or(0)
}

fn num(row: &Json, k: &str) -> f64 {
    row.get(k).and_then(Json::as_f64).unwrap_or(0.0)
}

fn text<'a>(row: &'a Json, k: &str) -> &'a str {
    row.get(k).and_then(Json::as_str).unwrap_or("")
}

/// A province's name in the page's language (Khmer name where the registry has one).
pub fn province_label(lang: Lang, row: &Json) -> String {
    let (latin, khmer) = (text(row, "province_name"), text(row, "province_name_khmer"));
    match lang {
        Lang::Km if !khmer.is_empty() => khmer.into(),
        _ if !latin.is_empty() => latin.into(),
        _ => text(row, "province_code").into(),
    }
}

fn rows(figures: &Json) -> Vec<Json> {
    figures
        .get("rows")
        .and_then(Json::as_array)
        .cloned()
        .unwrap_or_default()
}

fn sex_bar(lang: Lang, label: String, row: &Json) -> Bar {
    Bar {
        label,
        parts: vec![
            (int(row, "women") as f64, "women"),
            (int(row, "men") as f64, "men"),
            (
                (int(row, "other_sex") + int(row, "unknown_sex")) as f64,
                "other",
            ),
        ],
        note: format!(
            "{} · {} {}",
            lang.int(int(row, "people")),
            lang.percent(num(row, "women_share")),
            lang.t("women", "ស្ត្រី")
        ),
    }
}

fn legend(lang: Lang) -> Markup {
    html! {
        ul.legend {
            li { span.swatch.women {} (lang.t("Women", "ស្ត្រី")) }
            li { span.swatch.men {} (lang.t("Men", "បុរស")) }
            li { span.swatch.other {} (lang.t("Other or not recorded", "ផ្សេងៗ ឬមិនបានកត់ត្រា")) }
        }
    }
}

async fn dashboard(
    state: web::Data<AppState>,
    user: WebUser,
    query: web::Query<DashboardQuery>,
) -> Result<HttpResponse, WebError> {
    let lang = user.lang;
    let q = query.into_inner();
    let filter = Filter::parse(
        nonempty(&q.province),
        nonempty(&q.programme),
        nonempty(&q.from),
        nonempty(&q.to),
    )
    .map_err(|e| user.fail(e))?;
    let (p, f, app) = (user.principal.clone(), filter.clone(), state.clone());
    let (people, months, reached, provinces) = user
        .run(&state, move |conn| {
            let mut run = |r| app.figures.get(conn, &p, r, &f);
            Ok((
                run(Report::PeopleTrained)?,
                run(Report::SessionsByMonth)?,
                run(Report::CooperativesReached)?,
                super::provinces(conn, &p)?,
            ))
        })
        .await?;
    let people = rows(&people);
    let total = people
        .iter()
        .find(|r| text(r, "province_code") == ALL && text(r, "programme") == ALL);
    let by_province: Vec<&Json> = people
        .iter()
        .filter(|r| text(r, "province_code") != ALL && text(r, "programme") == ALL)
        .collect();
    let by_programme: Vec<&Json> = people
        .iter()
        .filter(|r| text(r, "province_code") == ALL && text(r, "programme") != ALL)
        .collect();
    let months: Vec<Json> = rows(&months)
        .into_iter()
        .filter(|r| text(r, "month") != ALL)
        .collect();
    let reached = rows(&reached);
    let reached_total = reached.iter().find(|r| text(r, "province_code") == ALL);
    let title = lang.t("Dashboard", "ផ្ទាំងសង្ខេប");
    let body = html! {
        form.filters method="get" action="/dashboard" {
            (super::province_select(lang, &provinces, nonempty(&q.province)))
            (layout::select("programme", lang.t("Programme", "កម្មវិធី"),
                &[("", lang.t("All programmes", "គ្រប់កម្មវិធី")), ("think_coop", "Think.Coop"),
                  ("start_coop", "Start.Coop"), ("follow_up", lang.t("Follow-up", "ការតាមដាន"))],
                nonempty(&q.programme)))
            label { span { (lang.t("From", "ពី")) } input type="date" name="from" value=[nonempty(&q.from)]; }
            label { span { (lang.t("To", "ដល់")) } input type="date" name="to" value=[nonempty(&q.to)]; }
            button type="submit" { (lang.t("Show", "បង្ហាញ")) }
        }
        section.tiles aria-label=(lang.t("Totals", "សរុប")) {
            div.tile { span.big #people-trained { (lang.int(total.map_or(0, |t| int(t, "people")))) }
                span { (lang.t("people trained", "នាក់បានទទួលការបណ្តុះបណ្តាល")) } }
            div.tile { span.big #women-trained { (lang.int(total.map_or(0, |t| int(t, "women")))) }
                span { (lang.t("women", "ស្ត្រី")) " · " (lang.percent(total.map_or(0.0, |t| num(t, "women_share")))) } }
            div.tile { span.big { (lang.int(months.iter().map(|m| int(m, "held")).sum())) }
                span { (lang.t("sessions held", "វគ្គដែលបានរៀបចំ")) } }
            div.tile { span.big { (lang.num(months.iter().map(|m| num(m, "hours_delivered")).sum())) }
                span { (lang.t("hours delivered", "ម៉ោងបណ្តុះបណ្តាល")) } }
            div.tile { span.big { (lang.int(reached_total.map_or(0, |t| int(t, "cooperatives_reached")))) " / " (lang.int(reached_total.map_or(0, |t| int(t, "cooperatives_registered")))) }
                span { (lang.t("cooperatives reached", "សហគមន៍បានចូលរួម")) } }
        }
        section {
            h2 { (lang.t("People trained by province", "អ្នកបានទទួលការបណ្តុះបណ្តាលតាមខេត្ត")) }
            (legend(lang))
            @if by_province.is_empty() { (layout::empty(lang)) } @else {
                (charts::hbars(lang.t("People trained by province and sex", "អ្នកបានទទួលការបណ្តុះបណ្តាលតាមខេត្ត និងភេទ"),
                    &by_province.iter().map(|r| sex_bar(lang, province_label(lang, r), r)).collect::<Vec<_>>()))
            }
            h2 { (lang.t("People trained by programme", "អ្នកបានទទួលការបណ្តុះបណ្តាលតាមកម្មវិធី")) }
            @if by_programme.is_empty() { (layout::empty(lang)) } @else {
                (charts::hbars(lang.t("People trained by programme and sex", "អ្នកបានទទួលការបណ្តុះបណ្តាលតាមកម្មវិធី និងភេទ"),
                    &by_programme.iter().map(|r| sex_bar(lang, programme_name(lang, text(r, "programme")), r)).collect::<Vec<_>>()))
            }
            table {
                caption { (lang.t("People trained (a person counts once in each row)", "អ្នកបានទទួលការបណ្តុះបណ្តាល (ម្នាក់រាប់តែម្ដងក្នុងជួរនីមួយៗ)")) }
                thead { tr {
                    th scope="col" { (lang.t("Province", "ខេត្ត")) } th scope="col" { (lang.t("Programme", "កម្មវិធី")) }
                    th.n scope="col" { (lang.t("Women", "ស្ត្រី")) } th.n scope="col" { (lang.t("Men", "បុរស")) }
                    th.n scope="col" { (lang.t("Other", "ផ្សេងៗ")) } th.n scope="col" { (lang.t("People", "សរុប")) }
                    th.n scope="col" { (lang.t("Women's share", "ភាគរយស្ត្រី")) }
                } }
                tbody { @for r in &people { tr {
                    td { @if text(r, "province_code") == ALL { (lang.t("All", "ទាំងអស់")) } @else { (province_label(lang, r)) } }
                    td { (programme_name(lang, text(r, "programme"))) }
                    td.n { (lang.int(int(r, "women"))) } td.n { (lang.int(int(r, "men"))) }
                    td.n { (lang.int(int(r, "other_sex") + int(r, "unknown_sex"))) }
                    td.n { (lang.int(int(r, "people"))) } td.n { (lang.percent(num(r, "women_share"))) }
                } } }
            }
        }
        section {
            h2 { (lang.t("Hours of training delivered by month", "ម៉ោងបណ្តុះបណ្តាលតាមខែ")) }
            @if months.is_empty() { (layout::empty(lang)) } @else {
                (charts::columns(lang.t("Hours delivered by month", "ម៉ោងបណ្តុះបណ្តាលតាមខែ"), lang,
                    &months.iter().map(|m| (lang.month(text(m, "month")), num(m, "hours_delivered"))).collect::<Vec<_>>()))
                table {
                    caption { (lang.t("Sessions by month", "វគ្គតាមខែ")) }
                    thead { tr {
                        th scope="col" { (lang.t("Month", "ខែ")) }
                        th.n scope="col" { (lang.t("Planned", "គ្រោងទុក")) } th.n scope="col" { (lang.t("Held", "បានរៀបចំ")) }
                        th.n scope="col" { (lang.t("Cancelled", "បានលុបចោល")) } th.n scope="col" { (lang.t("Hours", "ម៉ោង")) }
                        th.n scope="col" { (lang.t("Average attendance", "អ្នកចូលរួមជាមធ្យម")) }
                    } }
                    tbody { @for m in &months { tr {
                        td { (lang.month(text(m, "month"))) }
                        td.n { (lang.int(int(m, "planned"))) } td.n { (lang.int(int(m, "held"))) }
                        td.n { (lang.int(int(m, "cancelled"))) } td.n { (lang.num(num(m, "hours_delivered"))) }
                        td.n { (lang.num(num(m, "average_attendance"))) }
                    } } }
                }
            }
        }
        section {
            h2 { (lang.t("Cooperatives reached", "សហគមន៍កសិកម្មដែលបានចូលរួម")) }
            @let bars: Vec<Bar> = reached.iter().filter(|r| text(r, "province_code") != ALL).map(|r| Bar {
                label: province_label(lang, r),
                parts: vec![(int(r, "cooperatives_reached") as f64, "held"),
                            ((int(r, "cooperatives_registered") - int(r, "cooperatives_reached")).max(0) as f64, "rest")],
                note: format!("{} / {} · {}", lang.int(int(r, "cooperatives_reached")), lang.int(int(r, "cooperatives_registered")), lang.percent(num(r, "reached_share"))),
            }).collect();
            @if bars.is_empty() { (layout::empty(lang)) } @else {
                (charts::hbars(lang.t("Cooperatives reached out of registered, by province", "សហគមន៍បានចូលរួមធៀបនឹងបានចុះបញ្ជី តាមខេត្ត"), &bars))
            }
            p.hint { (lang.t("A cooperative is reached when at least one of its sessions was held.", "សហគមន៍មួយត្រូវបានរាប់ថាបានចូលរួម នៅពេលវគ្គយ៉ាងហោចណាស់មួយរបស់វាត្រូវបានរៀបចំ។")) }
        }
    };
    Ok(ok(layout::page(
        &user,
        Section::Dashboard,
        title,
        None,
        body,
    )))
}

//! The labelled evaluation set of the duplicate rules (docs/duplicates.md): a generated
//! registry of members in realistic cooperatives and villages (fixed seed), true
//! duplicate pairs made by the variations enumerators really produce (zero-width spaces,
//! doubled spaces, vowel/subscript order, legacy vowels, word order, Khmer spellings with
//! one skeleton, romanisation variants, phone formats, a year of birth one off, the
//! record made in a neighbouring cooperative), and hard negatives (relatives sharing a
//! family name, a phone and a village; namesakes in another village). Scored with the
//! server's own blocking and scoring (`matching::pairs`, what `coopsync duplicates
//! rescan` and detection use), it answers precision and recall at each threshold.

use std::collections::{HashMap, HashSet};

use coopsync::domain::matching::{self, Person, Prepared};

/// Family names: Khmer and the romanisations seen for each.
const FAMILY: &[(&str, &[&str])] = &[
    ("សុខ", &["Sok", "Sokh"]),
    ("ចាន់", &["Chan", "Chann"]),
    ("ហេង", &["Heng"]),
    ("លី", &["Ly", "Lee"]),
    ("គឹម", &["Kim", "Kem"]),
    ("ស៊ុន", &["Sun", "Soun"]),
    ("ម៉ៅ", &["Mao"]),
    ("ឈឹម", &["Chhim", "Chim"]),
    ("ពៅ", &["Pov", "Pow"]),
    ("ទេព", &["Tep", "Teb"]),
    ("អ៊ុំ", &["Um", "Oum"]),
    ("ណុប", &["Nop", "Nob"]),
    ("ផល", &["Phal", "Pal"]),
    ("រស់", &["Ros", "Rors"]),
    ("យិន", &["Yin"]),
    ("ខៀវ", &["Khiev", "Kiev"]),
    ("ឡុង", &["Long"]),
    ("សៅ", &["Sao", "Sau"]),
    ("ញឹម", &["Nhim", "Nhem"]),
    ("ប៉ែន", &["Pen", "Paen"]),
    ("មាស", &["Meas", "Mas"]),
    ("នួន", &["Nuon", "Noun"]),
    ("វង់", &["Vong", "Wong"]),
    ("អ៊ាង", &["Ang", "Eang"]),
    ("ជា", &["Chea", "Chea"]),
    ("ស៊ាន", &["Sean", "San"]),
    ("កែវ", &["Keo", "Kaev"]),
    ("ហ៊ុន", &["Hun", "Houn"]),
    ("ទូច", &["Touch", "Toch"]),
    ("ប៊ុន", &["Bun", "Boun"]),
    ("ស្រេង", &["Sreng"]),
    ("ឃុន", &["Khun", "Kun"]),
    ("ព្រំ", &["Prom", "Prum"]),
    ("ថោង", &["Thong", "Tong"]),
    ("ឌិត", &["Dith", "Dit"]),
    ("សេង", &["Seng"]),
    ("ម៉េង", &["Meng"]),
    ("ហួត", &["Huot", "Hout"]),
    ("ឯក", &["Ek", "Aek"]),
    ("ធី", &["Thy", "Thi"]),
];

/// Given names by sex, with romanisations; a third element, when present, is another
/// Khmer spelling of the same name (same consonant skeleton).
type Given = (&'static str, &'static [&'static str], Option<&'static str>);
const WOMEN: &[Given] = &[
    ("ចាន់ថា", &["Chanthea", "Chantha"], Some("ចន្ថា")),
    ("ស្រីពៅ", &["Sreypov", "Srey Pov"], None),
    ("ធារី", &["Theary", "Teary"], None),
    ("សុខា", &["Sokha", "Sokhar"], None),
    ("បូផា", &["Bopha", "Bophaa"], None),
    ("ពិសី", &["Pisey", "Pisei"], None),
    ("ស្រីនាង", &["Sreyneang", "Srey Neang"], None),
    ("លីដា", &["Lida", "Leda"], None),
    ("សុភាព", &["Sopheap", "Sophiep"], None),
    ("ចន្ធូ", &["Chanthou", "Chanthu"], None),
    ("រតនា", &["Rattana", "Ratana"], None),
    ("សុគន្ធា", &["Sokunthea", "Sokuntea"], None),
    ("ស្រីមុំ", &["Sreymom", "Srey Mom"], None),
    ("ម៉ាលី", &["Maly", "Mali"], None),
    ("វណ្ណី", &["Vanny", "Wanny"], None),
    ("សុផាត", &["Sophat", "Sopheat"], None),
    ("ចរិយា", &["Chariya", "Jariya"], None),
    ("ណារី", &["Nary", "Nari"], None),
    ("ស្រីល័ក្ខ", &["Sreyleak", "Srey Leak"], None),
    ("កញ្ញា", &["Kanha", "Kagna"], None),
    ("ធីតា", &["Thida", "Tida"], None),
    ("សុវណ្ណា", &["Sovanna", "Sowanna"], None),
    ("ច័ន្ទធី", &["Chanthy", "Chanthi"], None),
    ("រស្មី", &["Raksmey", "Reaksmey"], None),
    ("សំអាត", &["Samat", "Sam At"], None),
    ("ស្រីអូន", &["Sreyoun", "Srey Oun"], None),
    ("បុប្ផា", &["Boppha", "Bopha"], None),
    ("ពុទ្ធី", &["Puthy", "Putthy"], None),
    ("សុជាតា", &["Sochata", "Socheata"], None),
    ("ឡាយ", &["Lay", "Laay"], None),
    ("ស្រីរ័ត្ន", &["Sreyrath", "Srey Roth"], None),
    ("ម៉ារ៉ា", &["Mara", "Marra"], None),
    ("នីតា", &["Nita", "Nitha"], None),
    ("ស៊ីណា", &["Sina", "Seena"], None),
    ("ភារម្យ", &["Phearom", "Pearom"], None),
    ("ដាលីស", &["Dalis", "Daliss"], None),
    ("ស្រីខួច", &["Sreykhuoch", "Srey Khuoch"], None),
    ("មុន្នី", &["Monny", "Moni"], None),
    ("ចិន្តា", &["Chenda", "Chinda"], None),
    ("សំណាង", &["Samnang", "Samnaang"], None),
];
const MEN: &[Given] = &[
    ("សុភា", &["Sophea", "Sopha"], None),
    ("ដារ៉ា", &["Dara", "Darra"], None),
    ("វណ្ណា", &["Vanna", "Wanna"], None),
    ("សុផល", &["Sophal", "Sopal"], None),
    ("វិចិត្រ", &["Vichet", "Vicheth"], None),
    ("មករា", &["Makara", "Makkara"], None),
    ("ដាវីន", &["Davin", "Daveen"], None),
    ("សំបូរ", &["Sambo", "Sambour"], None),
    ("វិបុល", &["Vibol", "Vibul"], None),
    ("រដ្ឋា", &["Rotha", "Ratha"], None),
    ("ពិសិដ្ឋ", &["Piseth", "Pisith"], None),
    ("សុខុម", &["Sokhom", "Sokom"], None),
    ("ចន្ទា", &["Chanda", "Chantha"], Some("ចាន់ទា")),
    ("បុរី", &["Borey", "Bory"], None),
    ("ភក្តី", &["Pheakdey", "Pheakdei"], None),
    ("សារិន", &["Sarin", "Sareen"], None),
    ("ធីរៈ", &["Thira", "Tira"], None),
    ("កុសល", &["Kosal", "Kossal"], None),
    ("សុវត្ថិ", &["Sovath", "Sowath"], None),
    ("រិទ្ធី", &["Rithy", "Rithi"], None),
    ("ណារិន", &["Narin", "Nareen"], None),
    ("ប៊ុនថន", &["Bunthan", "Bun Thon"], None),
    ("សេដ្ឋា", &["Settha", "Setha"], None),
    ("វុទ្ធី", &["Vuthy", "Wuthy"], None),
    ("ឧត្តម", &["Oudom", "Udom"], None),
    ("ហុងលី", &["Hongly", "Hong Ly"], None),
    ("ចំរើន", &["Chamroeun", "Chamroen"], None),
    ("សំណាង", &["Samnang", "Samnaang"], None),
    ("សុខេង", &["Sokheng", "Sokeng"], None),
    ("វាសនា", &["Veasna", "Vasna"], None),
    ("ប៊ុនណា", &["Bunna", "Bunnah"], None),
    ("ពិសាល", &["Pisal", "Pisaal"], None),
    ("សុធា", &["Sothea", "Sotha"], None),
    ("រ៉ាវី", &["Ravy", "Ravi"], None),
    ("គឹមហុង", &["Kimhong", "Kim Hong"], None),
    ("ម៉េងលី", &["Mengly", "Meng Ly"], None),
    ("ថុល", &["Thol", "Tol"], None),
    ("ស៊ីថា", &["Sitha", "Seetha"], None),
    ("ភិរុណ", &["Phirun", "Pirun"], None),
    ("ចាន់ណា", &["Channa", "Chana"], None),
];

const VILLAGES: &[&str] = &[
    "Prey Khmeng",
    "Trapeang Thom",
    "Kampong Bay",
    "Ou Krang",
    "Tuek Chhu",
    "Chamkar Bei",
    "Srae Ampil",
    "Phum Thmei",
    "Boeng Tuk",
    "Prey Kuy",
    "Ta Ong",
    "Krang Snay",
    "Angk Ta Saom",
    "Trapeang Chhuk",
    "Doung",
    "Svay Chrum",
    "Kampong Kol",
    "Chrey",
    "Ou Ampil",
    "Thma Koul",
];

/// A small deterministic generator (xorshift64*): the same seed, the same set.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len())]
    }
}

/// One generated record: who it really is (`person`), where, and what was typed.
#[derive(Debug, Clone)]
pub struct Record {
    pub person: usize,
    pub province: String,
    pub fields: Person,
}

/// Why a record was made: the labels the report breaks down.
#[derive(Debug, Clone, Default)]
pub struct Set {
    pub records: Vec<Record>,
    pub true_pairs: usize,
    pub relatives: usize,
    pub namesakes: usize,
}

fn phone_for(r: &mut Rng) -> String {
    let prefix = r.pick(&["012", "011", "092", "097", "088", "015", "070", "096"]);
    format!("{prefix}{:06}", r.below(1_000_000))
}

/// The same number as another enumerator types it.
fn retype_phone(r: &mut Rng, national: &str) -> String {
    let rest = &national[1..];
    match r.below(6) {
        0 => format!("+855{rest}"),
        1 => format!("+855 {} {} {}", &rest[..2], &rest[2..5], &rest[5..]),
        2 => format!("855{rest}"),
        3 => format!("{} {} {}", &national[..3], &national[3..6], &national[6..]),
        4 => format!("{}-{}-{}", &national[..3], &national[3..6], &national[6..]),
        _ => national.to_string(),
    }
}

/// The same Khmer name as another tablet stores it: invisible characters, spaces, the
/// order of a subscript and a vowel, legacy vowel parts, word order, another spelling.
fn retype_khmer(r: &mut Rng, family: &str, given: &Given) -> String {
    let given_text = match given.2 {
        Some(other) if r.chance(50) => other.to_string(),
        _ => given.0.to_string(),
    };
    let (x, y) = if r.chance(20) {
        (given_text.clone(), family.to_string())
    } else {
        (family.to_string(), given_text.clone())
    };
    let mut s = match r.below(6) {
        0 => format!("{x}\u{200b} {y}"),
        1 => format!("{x}  {y}"),
        2 => format!("{x}\u{200b}{y}"),
        3 => format!(" {x} {y} "),
        4 => format!("{x}\u{200c} {y}\u{200d}"),
        _ => format!("{x} {y}"),
    };
    // A vowel typed before the subscript it follows on screen.
    if r.chance(30) {
        let chars: Vec<char> = s.chars().collect();
        let mut out = chars.clone();
        for i in 0..chars.len().saturating_sub(2) {
            if chars[i] == '\u{17d2}' && ('\u{17b6}'..='\u{17c5}').contains(&chars[i + 2]) {
                out = chars[..i].to_vec();
                out.push(chars[i + 2]);
                out.push(chars[i]);
                out.push(chars[i + 1]);
                out.extend_from_slice(&chars[i + 3..]);
                break;
            }
        }
        s = out.into_iter().collect();
    }
    // Legacy two-part vowel.
    if r.chance(30) {
        s = s.replace('\u{17be}', "\u{17c1}\u{17b8}");
    }
    s
}

/// The registry: `members` records, about one in sixteen of them a second record of
/// someone already in it, and the hard negatives.
pub fn generate(members: usize, seed: u64) -> Set {
    let mut r = Rng(seed.max(1));
    let provinces = ["03", "07", "12", "17"];
    // About 54 members per cooperative, as the programme's 60,000 in 1,116.
    // A province has a few hundred villages (Kampot: 477), many of them sharing a name
    // with a number (`Prey Khmeng 2`); a cooperative draws its members from three.
    let village_names: Vec<String> = VILLAGES
        .iter()
        .flat_map(|v| {
            (1..=12).map(move |n| {
                if n == 1 {
                    v.to_string()
                } else {
                    format!("{v} {n}")
                }
            })
        })
        .collect();
    let coops: Vec<(String, String, Vec<String>)> = (0..members.div_ceil(54).max(2))
        .map(|i| {
            let province = provinces[i % provinces.len()].to_string();
            let villages: Vec<String> = (0..3).map(|_| r.pick(&village_names).clone()).collect();
            (format!("coop-{i:04}"), province, villages)
        })
        .collect();
    let mut set = Set::default();
    let mut person = 0usize;
    let dup_every = 14;
    while set.records.len() < members {
        let ci = r.below(coops.len());
        let (coop, province, villages) = &coops[ci];
        let female = r.chance(60);
        let family = r.pick(FAMILY);
        let given = if female { r.pick(WOMEN) } else { r.pick(MEN) };
        let village = r.pick(villages).clone();
        let phone = r.chance(85).then(|| phone_for(&mut r));
        let yob = r.chance(90).then(|| 1955 + r.below(50) as i64);
        let base = Person {
            name_khmer: Some(format!("{} {}", family.0, given.0)),
            name_latin: r
                .chance(70)
                .then(|| format!("{} {}", family.1[0], given.1[0])),
            sex: Some(if female { "female" } else { "male" }.into()),
            year_of_birth: yob,
            phone: phone.clone(),
            village: Some(village.clone()),
            cooperative_id: Some(coop.clone()),
        };
        set.records.push(Record {
            person,
            province: province.clone(),
            fields: base.clone(),
        });
        let me = person;
        person += 1;
        // A second record of the same person.
        if set.records.len() % dup_every == 0 {
            let elsewhere = r.chance(15);
            let coop2 = if elsewhere {
                // A neighbouring cooperative of the same province.
                let same: Vec<&(String, String, Vec<String>)> = coops
                    .iter()
                    .filter(|c| c.1 == *province && c.0 != *coop)
                    .collect();
                if same.is_empty() {
                    coops[ci].clone()
                } else {
                    (*r.pick(&same)).clone()
                }
            } else {
                coops[ci].clone()
            };
            let dup = Person {
                name_khmer: Some(retype_khmer(&mut r, family.0, given)),
                name_latin: r.chance(70).then(|| {
                    let f = r.pick(family.1);
                    let g = r.pick(given.1);
                    if r.chance(25) {
                        format!("{g} {f}")
                    } else {
                        format!("{f} {g}")
                    }
                }),
                sex: if r.chance(5) { None } else { base.sex.clone() },
                year_of_birth: match (yob, r.below(10)) {
                    (Some(y), 0..=3) => Some(y + if r.chance(50) { 1 } else { -1 }),
                    (Some(_), 4) => None,
                    (y, _) => y,
                },
                phone: match &phone {
                    Some(p) if r.chance(85) => Some(retype_phone(&mut r, p)),
                    _ => None,
                },
                village: if coop2.0 == *coop && r.chance(90) {
                    Some(village.clone())
                } else {
                    Some(r.pick(&coop2.2).clone())
                },
                cooperative_id: Some(coop2.0.clone()),
            };
            set.records.push(Record {
                person: me,
                province: province.clone(),
                fields: dup,
            });
            set.true_pairs += 1;
        }
        // Hard negatives: a relative in the household (same family name, phone and
        // village, another given name, any sex, another generation) ...
        if set.records.len() % 11 == 0 && phone.is_some() {
            let female = r.chance(50);
            let mut given2 = if female { r.pick(WOMEN) } else { r.pick(MEN) };
            while given2.0 == given.0 {
                given2 = if female { r.pick(WOMEN) } else { r.pick(MEN) };
            }
            set.records.push(Record {
                person,
                province: province.clone(),
                fields: Person {
                    name_khmer: Some(format!("{} {}", family.0, given2.0)),
                    name_latin: r
                        .chance(70)
                        .then(|| format!("{} {}", family.1[0], given2.1[0])),
                    sex: Some(if female { "female" } else { "male" }.into()),
                    year_of_birth: yob.map(|y| y + [-26, -24, 2, 3, 24, 27][r.below(6)]),
                    phone: phone.as_deref().map(|p| retype_phone(&mut r, p)),
                    village: Some(village.clone()),
                    cooperative_id: Some(coop.clone()),
                },
            });
            person += 1;
            set.relatives += 1;
        }
        // ... and a namesake in another village of the province (own phone, own age).
        if set.records.len() % 13 == 0 {
            let same: Vec<&(String, String, Vec<String>)> = coops
                .iter()
                .filter(|c| c.1 == *province && c.0 != *coop)
                .collect();
            if let Some(other) = (!same.is_empty()).then(|| *r.pick(&same)) {
                set.records.push(Record {
                    person,
                    province: province.clone(),
                    fields: Person {
                        name_khmer: base.name_khmer.clone(),
                        name_latin: base.name_latin.clone(),
                        sex: base.sex.clone(),
                        year_of_birth: Some(1955 + r.below(50) as i64),
                        phone: r.chance(85).then(|| phone_for(&mut r)),
                        village: Some(r.pick(&other.2).clone()),
                        cooperative_id: Some(other.0.clone()),
                    },
                });
                person += 1;
                set.namesakes += 1;
            }
        }
    }
    set
}

/// Precision and recall at one threshold.
#[derive(Debug, Clone, Copy)]
pub struct Point {
    pub threshold: u32,
    pub proposed: usize,
    pub true_positives: usize,
    pub precision: f64,
    pub recall: f64,
}

/// The report: the curve, and the pairs compared (what blocking let through).
#[derive(Debug, Clone)]
pub struct Evaluation {
    pub records: usize,
    pub true_pairs: usize,
    pub relatives: usize,
    pub namesakes: usize,
    pub compared: u64,
    pub curve: Vec<Point>,
    pub at_default: Point,
    /// A few misses and false alarms at the default threshold, for reading.
    pub examples: Vec<String>,
}

pub fn evaluate(set: &Set) -> Evaluation {
    let mut by_province: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, rec) in set.records.iter().enumerate() {
        by_province.entry(&rec.province).or_default().push(i);
    }
    let truth: HashSet<(usize, usize)> = {
        let mut by_person: HashMap<usize, Vec<usize>> = HashMap::new();
        for (i, rec) in set.records.iter().enumerate() {
            by_person.entry(rec.person).or_default().push(i);
        }
        by_person
            .values()
            .flat_map(|v| {
                let v = v.clone();
                (0..v.len()).flat_map(move |x| {
                    let v = v.clone();
                    (x + 1..v.len()).map(move |y| (v[x].min(v[y]), v[x].max(v[y])))
                })
            })
            .collect()
    };
    // Everything from 30 points, scored once; thresholds filter.
    let mut scored: Vec<(usize, usize, u32, String)> = Vec::new();
    let mut compared = 0;
    for idx in by_province.values() {
        let prepared: Vec<Prepared> = idx
            .iter()
            .map(|&i| Prepared::of(&set.records[i].fields))
            .collect();
        let (pairs, n) = matching::pairs(&prepared, 30);
        compared += n;
        for (x, y, s) in pairs {
            let (a, b) = (idx[x].min(idx[y]), idx[x].max(idx[y]));
            scored.push((a, b, s.points, s.explain()));
        }
    }
    // What the server proposes at threshold `t`: the pairs reaching it, each person with
    // at most `matching::MAX_PROPOSED` others (the rescan's rule).
    let proposed_at = |t: u32| -> Vec<&(usize, usize, u32, String)> {
        let reaching: Vec<&(usize, usize, u32, String)> =
            scored.iter().filter(|p| p.2 >= t).collect();
        let points: Vec<(usize, usize, u32)> = reaching.iter().map(|p| (p.0, p.1, p.2)).collect();
        reaching
            .into_iter()
            .zip(matching::within_cap(&points))
            .filter_map(|(p, k)| k.then_some(p))
            .collect()
    };
    let point = |t: u32| {
        let proposed = proposed_at(t);
        let tp = proposed
            .iter()
            .filter(|p| truth.contains(&(p.0, p.1)))
            .count();
        Point {
            threshold: t,
            proposed: proposed.len(),
            true_positives: tp,
            precision: if proposed.is_empty() {
                1.0
            } else {
                tp as f64 / proposed.len() as f64
            },
            recall: if truth.is_empty() {
                1.0
            } else {
                tp as f64 / truth.len() as f64
            },
        }
    };
    let curve: Vec<Point> = (30..=100).step_by(5).map(point).collect();
    let at_default = point(matching::PROPOSE_AT);
    let found: HashSet<(usize, usize)> = proposed_at(matching::PROPOSE_AT)
        .into_iter()
        .map(|p| (p.0, p.1))
        .collect();
    let show = |i: usize| {
        let f = &set.records[i].fields;
        format!(
            "{:?} / {:?} {:?} {:?} {:?} {:?} {:?}",
            f.name_khmer,
            f.name_latin,
            f.sex,
            f.year_of_birth,
            f.phone,
            f.village,
            f.cooperative_id
        )
    };
    let mut examples = Vec::new();
    for (a, b) in truth.iter().filter(|p| !found.contains(p)).take(4) {
        let why = scored
            .iter()
            .find(|p| (p.0, p.1) == (*a, *b))
            .map(|p| p.3.clone())
            .unwrap_or_else(|| "not compared (no shared block) or below 30".into());
        examples.push(format!(
            "missed: {}\n        {}\n        {why}",
            show(*a),
            show(*b)
        ));
    }
    for p in scored
        .iter()
        .filter(|p| p.2 >= matching::PROPOSE_AT && !truth.contains(&(p.0, p.1)))
        .take(4)
    {
        examples.push(format!(
            "false alarm: {}\n        {}\n        {}",
            show(p.0),
            show(p.1),
            p.3
        ));
    }
    Evaluation {
        records: set.records.len(),
        true_pairs: truth.len(),
        relatives: set.relatives,
        namesakes: set.namesakes,
        compared,
        curve,
        at_default,
        examples,
    }
}

impl Evaluation {
    pub fn table(&self) -> String {
        let mut out = format!(
            "duplicate rules on {} records ({} true duplicate pairs, {} relatives sharing a phone, {} namesakes elsewhere), {} pairs compared\n\
             | threshold | proposed | true | precision | recall |\n|---|---|---|---|---|\n",
            self.records, self.true_pairs, self.relatives, self.namesakes, self.compared
        );
        for p in &self.curve {
            let mark = if p.threshold == self.at_default.threshold {
                " (default)"
            } else {
                ""
            };
            out.push_str(&format!(
                "| {}{mark} | {} | {} | {:.3} | {:.3} |\n",
                p.threshold, p.proposed, p.true_positives, p.precision, p.recall
            ));
        }
        out
    }
}

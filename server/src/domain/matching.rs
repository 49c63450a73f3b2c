//! Whether two person records may be the same farmer: Khmer-aware name keys, Cambodian
//! phone numbers, year of birth and sex, scored field by field with the rules that
//! matched. Pure (no database); docs/duplicates.md states the rules with examples.
//!
//! Two enumerators offline in one village type the same woman as `សុខ ចាន់ថា` and
//! `សុខ  ចាន់ថា` (a zero-width space, two spaces), in Latin as `Sok Chanthea` or
//! `Sokh Chantha`, her phone as `012 345 678` or `+85512345678`: each key below makes one
//! of those differences disappear.

use std::fmt::Write as _;

/// Characters that change nothing a reader sees: zero-width non-joiner, joiner, byte
/// order mark / zero-width no-break space, soft hyphen, word joiner.
fn invisible(c: char) -> bool {
    matches!(
        c,
        '\u{200c}' | '\u{200d}' | '\u{feff}' | '\u{00ad}' | '\u{2060}'
    )
}

/// The zero-width space: Khmer is written without spaces between words, and keyboards
/// and typists put U+200B where a word ends. It is read as a word break (a space), so
/// `សុខ​ចាន់ថា` (family and given name joined by it) is the two words `សុខ ចាន់ថា`.
const ZWSP: char = '\u{200b}';

/// The zero-width space as a space, the invisible characters dropped.
fn visible_chars(text: &str) -> impl Iterator<Item = char> + '_ {
    text.chars()
        .filter(|c| !invisible(*c))
        .map(|c| if c == ZWSP { ' ' } else { c })
}

const COENG: char = '\u{17d2}';
const RO: char = '\u{179a}';

fn is_consonant(c: char) -> bool {
    ('\u{1780}'..='\u{17a2}').contains(&c)
}

/// Dependent vowel signs (ា … ៅ).
fn is_vowel_sign(c: char) -> bool {
    ('\u{17b6}'..='\u{17c5}').contains(&c)
}

/// Register shifters (៉ ៊) and the other signs above or after a syllable.
fn is_sign(c: char) -> bool {
    ('\u{17c6}'..='\u{17d1}').contains(&c) || c == '\u{17d3}' || c == '\u{17dd}'
}

/// Text with the invisible characters dropped and white space collapsed (the search of
/// records, which compares with names as stored, uses only this).
pub fn clean(text: &str) -> String {
    let visible: String = visible_chars(text).collect();
    visible.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Khmer text as one canonical spelling of what a reader sees:
/// - invisible characters dropped, a zero-width space read as a word break, runs of
///   white space one space, trimmed;
/// - a subscript (coeng + consonant) typed after the vowel or sign it visually precedes
///   moved before it (`ក` `ា` `្ក` → `ក` `្ក` `ា`): Unicode's order is base, subscripts,
///   register shifter, vowel, other signs, and keyboards let either order through;
/// - a subscript RO (`្រ`) typed before another subscript moved after it (it is drawn
///   to the left of the base whatever the order);
/// - a register shifter after a vowel moved before it;
/// - the legacy two-part vowels `េ` + `ី` (for `ើ`) and `េ` + `ា` (for `ោ`) written as
///   the single vowel, and the deprecated independent vowels `ឣ` `ឤ` as `អ` `អា`.
pub fn normalise_khmer(text: &str) -> String {
    let mut chars: Vec<char> = Vec::with_capacity(text.len());
    for c in visible_chars(text) {
        match c {
            '\u{17a3}' => chars.push('\u{17a2}'),
            '\u{17a4}' => chars.extend(['\u{17a2}', '\u{17b6}']),
            c => chars.push(c),
        }
    }
    // Reorder within each syllable until nothing moves (a syllable is a few characters).
    let mut moved = true;
    while moved {
        moved = false;
        let mut i = 0;
        while i + 1 < chars.len() {
            let (a, b) = (chars[i], chars[i + 1]);
            let next = chars.get(i + 2).copied();
            // vowel/sign then coeng+consonant: the subscript first.
            if (is_vowel_sign(a) || is_sign(a)) && b == COENG && next.is_some_and(is_consonant) {
                chars.remove(i);
                chars.insert(i + 2, a);
                moved = true;
                continue;
            }
            // coeng RO then another coeng+consonant: RO last.
            if a == COENG
                && b == RO
                && next == Some(COENG)
                && chars.get(i + 3).copied().is_some_and(is_consonant)
            {
                let other = chars[i + 3];
                chars[i + 1] = other;
                chars[i + 3] = RO;
                moved = true;
                i += 4;
                continue;
            }
            // vowel then register shifter: the shifter first.
            if is_vowel_sign(a) && matches!(b, '\u{17c9}' | '\u{17ca}') {
                chars.swap(i, i + 1);
                moved = true;
            }
            i += 1;
        }
    }
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match (c, chars.get(i + 1)) {
            ('\u{17c1}', Some('\u{17b8}')) => {
                out.push('\u{17be}');
                i += 2;
                continue;
            }
            ('\u{17c1}', Some('\u{17b6}')) => {
                out.push('\u{17c4}');
                i += 2;
                continue;
            }
            _ => {}
        }
        out.push(c);
        i += 1;
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Second-series consonants that sound like a first-series one (their vowels differ,
/// which the skeleton drops anyway): ក/គ, ខ/ឃ, ច/ជ, ឆ/ឈ, ដ/ឌ, ឋ/ឍ, ត/ទ, ថ/ធ, ប/ព,
/// ផ/ភ, ណ/ន, ល/ឡ.
fn sound(c: char) -> char {
    match c {
        'គ' => 'ក',
        'ឃ' => 'ខ',
        'ជ' => 'ច',
        'ឈ' => 'ឆ',
        'ឌ' => 'ដ',
        'ឍ' => 'ឋ',
        'ទ' => 'ត',
        'ធ' => 'ថ',
        'ព' => 'ប',
        'ភ' => 'ផ',
        'ណ' => 'ន',
        'ឡ' => 'ល',
        other => other,
    }
}

/// The consonant skeleton of a Khmer name, word by word (words sorted, so family and
/// given name in either order match): consonants (base and subscript) by sound,
/// independent vowels, digits and letters of other scripts kept, dependent vowels, signs
/// and coeng dropped. `សុខ ចាន់ថា` and
/// `សុខ ចន្ថា` both give `ចនថ សខ`.
pub fn khmer_key(name: &str) -> String {
    skeleton_of_normalised(&normalise_khmer(name))
}

/// [`khmer_key`] of text already through `normalise_khmer` (a person's keys are computed
/// from one normalisation).
fn skeleton_of_normalised(normal: &str) -> String {
    let mut words: Vec<String> = normal
        .split(' ')
        .map(|w| {
            w.chars()
                .filter(|c| {
                    is_consonant(*c)
                        || ('\u{17a3}'..='\u{17b3}').contains(c)
                        || ('\u{17e0}'..='\u{17e9}').contains(c)
                        || (c.is_alphanumeric() && !('\u{1780}'..='\u{17ff}').contains(c))
                })
                .map(sound)
                .collect::<String>()
        })
        .filter(|w| !w.is_empty())
        .collect();
    words.sort();
    words.join(" ")
}

/// A romanised name folded over the usual spelling variants, word by word (sorted):
/// lower case, letters only; `kh`→`k`, `ch`/`j`→`c`, `th`→`t`, `ph`→`p`, `ea`/`ie`→`a`/`i`,
/// `ou`/`oo`/`u`→`o`, a final `h` dropped, doubled letters single. `Sok Chanthea`,
/// `Sokh Chantha` and `Chanthea Sok` all give `canta sok`.
pub fn latin_key(name: &str) -> String {
    let mut words: Vec<String> = name
        .to_lowercase()
        .split(|c: char| !c.is_alphabetic())
        .filter(|w| !w.is_empty())
        .map(|w| {
            let mut w = w.to_string();
            for (from, to) in [
                ("kh", "k"),
                ("ch", "c"),
                ("j", "c"),
                ("th", "t"),
                ("ph", "p"),
                ("ea", "a"),
                ("ie", "i"),
                ("ou", "o"),
                ("oo", "o"),
                ("u", "o"),
            ] {
                w = w.replace(from, to);
            }
            if w.len() > 1 && w.ends_with('h') {
                w.pop();
            }
            let mut out = String::with_capacity(w.len());
            for c in w.chars() {
                if !out.ends_with(c) {
                    out.push(c);
                }
            }
            out
        })
        .collect();
    words.sort();
    words.join(" ")
}

/// A Cambodian phone number's digits in national form (`012345678`): spaces, dashes,
/// dots, brackets and `+855` / `855` / `00855` folded; empty if it holds no digits.
pub fn phone_key(phone: &str) -> String {
    let digits: String = phone.chars().filter(char::is_ascii_digit).collect();
    let national = digits
        .strip_prefix("00855")
        .or_else(|| digits.strip_prefix("855").filter(|_| digits.len() >= 11));
    match national {
        Some(rest) if !rest.starts_with('0') => format!("0{rest}"),
        Some(rest) => rest.to_string(),
        None => digits,
    }
}

/// The fields of a person compared (a member, or a participant in no cooperative).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Person {
    pub name_khmer: Option<String>,
    pub name_latin: Option<String>,
    pub sex: Option<String>,
    pub year_of_birth: Option<i64>,
    pub phone: Option<String>,
    pub village: Option<String>,
    pub cooperative_id: Option<String>,
}

impl Person {
    /// A walk-in as a person to compare: an attendance entry of someone with no member
    /// record has one `name` (Khmer or Latin letters, whichever the enumerator typed),
    /// an age instead of a year of birth (the session's year minus the age: within the
    /// ±1 the rules allow, as a birthday falls before or after the session), and the
    /// session's cooperative. A walk-in has no village.
    pub fn walk_in(
        name: Option<&str>,
        sex: Option<&str>,
        age: Option<i64>,
        phone: Option<&str>,
        cooperative_id: Option<&str>,
        session_year: Option<i64>,
    ) -> Person {
        let khmer = name.is_some_and(|n| n.chars().any(|c| ('\u{1780}'..='\u{17ff}').contains(&c)));
        Person {
            name_khmer: name.filter(|_| khmer).map(str::to_string),
            name_latin: name.filter(|_| !khmer).map(str::to_string),
            sex: sex.map(str::to_string),
            year_of_birth: match (session_year, age) {
                (Some(y), Some(a)) if (0..=120).contains(&a) => Some(y - a),
                _ => None,
            },
            phone: phone.map(str::to_string),
            village: None,
            cooperative_id: cooperative_id.map(str::to_string),
        }
    }
}

/// One rule that matched, with the points it gave (negative: it speaks against).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matched {
    pub field: &'static str,
    pub rule: &'static str,
    pub points: i32,
}

/// The score of a pair (0–100) and why.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Score {
    pub points: u32,
    pub matched: Vec<Matched>,
}

/// A phone or Khmer skeleton block larger than this is not used (an enumerator's own
/// number typed for every member, a placeholder such as `000 000 000`).
pub const MAX_BLOCK: usize = 200;

/// Pairs scoring at least this are proposed for review.
pub const PROPOSE_AT: u32 = 60;

/// A person is proposed with at most this many others, the best scored (ties: the other's
/// id, lowest first). One person registered twice, even three times, has one or two
/// candidates that stand out; twenty or more at the threshold is a crowd of namesakes
/// (one common name, one year, one village, no phone) that no admin can review pair by
/// pair, and writing every such pair made detection the larger part of a push.
pub const MAX_PROPOSED: usize = 20;

/// Which of `pairs` (`(i, j, points)` with people by index, in id order) stay proposed
/// under [`MAX_PROPOSED`]: a pair stays when it is among the best of at least one of its
/// two people, as detection keeps it when the later of the two is registered.
pub fn within_cap(pairs: &[(usize, usize, u32)]) -> Vec<bool> {
    use std::collections::HashMap;
    let mut by_person: HashMap<usize, Vec<(u32, usize, usize)>> = HashMap::new();
    for (n, &(i, j, points)) in pairs.iter().enumerate() {
        by_person.entry(i).or_default().push((points, j, n));
        by_person.entry(j).or_default().push((points, i, n));
    }
    let mut keep = vec![false; pairs.len()];
    for list in by_person.values_mut() {
        list.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        for &(_, _, n) in list.iter().take(MAX_PROPOSED) {
            keep[n] = true;
        }
    }
    keep
}

/// A person with its keys computed once (comparing one against many).
#[derive(Debug, Clone, Default)]
pub struct Prepared {
    sex: Option<String>,
    khmer: Option<String>,
    skeleton: Option<String>,
    latin: Option<String>,
    phone: Option<String>,
    year_of_birth: Option<i64>,
    cooperative: Option<String>,
    village: Option<String>,
}

impl Prepared {
    /// The phone in national form, when it has enough digits to compare.
    pub fn phone(&self) -> Option<&str> {
        self.phone.as_deref()
    }

    /// The Khmer consonant skeleton of the name, when there is one.
    pub fn skeleton(&self) -> Option<&str> {
        self.skeleton.as_deref().filter(|k| !k.is_empty())
    }

    /// The romanised name's key, when there is one.
    pub fn latin(&self) -> Option<&str> {
        self.latin.as_deref()
    }

    pub fn cooperative(&self) -> Option<&str> {
        self.cooperative.as_deref()
    }

    pub fn of(p: &Person) -> Prepared {
        let nonempty = |s: String| (!s.is_empty()).then_some(s);
        let khmer = p
            .name_khmer
            .as_deref()
            .map(normalise_khmer)
            .and_then(nonempty);
        Prepared {
            sex: p.sex.clone().and_then(nonempty),
            skeleton: khmer.as_deref().map(skeleton_of_normalised),
            khmer,
            latin: p.name_latin.as_deref().map(latin_key).and_then(nonempty),
            phone: p.phone.as_deref().map(phone_key).filter(|k| k.len() >= 8),
            year_of_birth: p.year_of_birth,
            cooperative: p.cooperative_id.clone().and_then(nonempty),
            village: p
                .village
                .as_deref()
                .map(|v| normalise_khmer(v).to_lowercase())
                .and_then(nonempty),
        }
    }
}

/// Scores a pair: the best name rule (Khmer as normalised 40, Khmer skeleton 30, Latin
/// key 25), phone 35, year of birth equal 15, ±1 10, further apart −20, same cooperative
/// 10, same village 10; from 0 to 100 (weights and threshold chosen on the labelled
/// evaluation set, `coopsync-dedup-eval`). Sex must agree when both are known: a disagreement scores 0 whatever
/// else matches (one household's phone is often shared by husband and wife).
pub fn score(a: &Person, b: &Person) -> Score {
    score_prepared(&Prepared::of(a), &Prepared::of(b))
}

pub fn score_prepared(a: &Prepared, b: &Prepared) -> Score {
    let mut s = Score::default();
    if let (Some(x), Some(y)) = (&a.sex, &b.sex)
        && x != y
    {
        return s;
    }
    let same =
        |x: &Option<String>, y: &Option<String>| matches!((x, y), (Some(x), Some(y)) if x == y);
    let mut add = |field, rule, points| {
        s.matched.push(Matched {
            field,
            rule,
            points,
        })
    };
    if same(&a.khmer, &b.khmer) {
        add("name_khmer", "same Khmer name", 40);
    } else if same(&a.skeleton, &b.skeleton) {
        add("name_khmer", "same Khmer consonant skeleton", 30);
    } else if same(&a.latin, &b.latin) {
        add("name_latin", "same romanised name", 25);
    }
    if same(&a.phone, &b.phone) {
        add("phone", "same phone number", 35);
    }
    match (a.year_of_birth, b.year_of_birth) {
        (Some(x), Some(y)) if x == y => add("year_of_birth", "same year of birth", 15),
        (Some(x), Some(y)) if (x - y).abs() == 1 => {
            add("year_of_birth", "year of birth one apart", 10)
        }
        // Two known years further apart speak against: namesakes in one cooperative,
        // a mother and her daughter on one phone.
        (Some(_), Some(_)) => add("year_of_birth", "years of birth far apart", -20),
        _ => {}
    }
    if same(&a.cooperative, &b.cooperative) {
        add("cooperative_id", "same cooperative", 10);
    }
    if same(&a.village, &b.village) {
        add("village", "same village", 10);
    }
    let total: i32 = s.matched.iter().map(|m| m.points).sum();
    s.points = total.clamp(0, 100) as u32;
    s
}

/// The blocks a person falls in: pairs are only compared within a block (one
/// cooperative, one phone, one Khmer skeleton), so a province's few thousand people cost
/// thousands of comparisons, not millions. Callers keep a block to one province. (No
/// block by the romanised name: members always have a Khmer name, and two that agree
/// only in Latin letters need a shared cooperative or phone to reach the threshold.)
pub fn blocks(p: &Prepared) -> impl Iterator<Item = String> + '_ {
    [
        p.cooperative().map(|c| format!("c:{c}")),
        p.phone().map(|k| format!("p:{k}")),
        p.skeleton().map(|k| format!("k:{k}")),
    ]
    .into_iter()
    .flatten()
}

/// Every pair of `people` (one province) that shares a block and scores at least
/// `at`, each once, as `(i, j, score)` with `i < j`; and how many pairs were compared.
pub fn pairs(people: &[Prepared], at: u32) -> (Vec<(usize, usize, Score)>, u64) {
    use std::collections::{HashMap, HashSet};
    let mut by_block: HashMap<String, Vec<usize>> = HashMap::new();
    for (i, p) in people.iter().enumerate() {
        for b in blocks(p) {
            by_block.entry(b).or_default().push(i);
        }
    }
    let mut seen: HashSet<(usize, usize)> = HashSet::new();
    let mut out = Vec::new();
    let mut compared = 0u64;
    // A cooperative is a block whatever its size; a phone or skeleton shared by more
    // than `MAX_BLOCK` people is no evidence of one person and is skipped.
    by_block.retain(|key, members| key.starts_with("c:") || members.len() <= MAX_BLOCK);
    for members in by_block.values() {
        for (x, &i) in members.iter().enumerate() {
            for &j in &members[x + 1..] {
                let pair = (i.min(j), i.max(j));
                if pair.0 == pair.1 || !seen.insert(pair) {
                    continue;
                }
                compared += 1;
                let s = score_prepared(&people[pair.0], &people[pair.1]);
                if s.points >= at {
                    out.push((pair.0, pair.1, s));
                }
            }
        }
    }
    out.sort_by_key(|p| (p.0, p.1));
    (out, compared)
}

/// A digest of the compared fields of a person as the rules see them: a decision on a
/// pair ("not the same person") holds while both fingerprints stay the same.
pub fn fingerprint(p: &Prepared) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for part in [
        p.sex.as_deref(),
        p.khmer.as_deref(),
        p.latin.as_deref(),
        p.phone.as_deref(),
        p.cooperative.as_deref(),
        p.village.as_deref(),
    ] {
        h.update(part.unwrap_or("\u{0}").as_bytes());
        h.update([0x1f]);
    }
    h.update(p.year_of_birth.map(|y| y.to_string()).unwrap_or_default());
    hex::encode(&h.finalize()[..12])
}

impl Score {
    /// `same Khmer name (45) + same phone number (35) = 80`.
    pub fn explain(&self) -> String {
        let mut out = String::new();
        for (i, m) in self.matched.iter().enumerate() {
            if i > 0 {
                out.push_str(" + ");
            }
            let _ = write!(out, "{} ({})", m.rule, m.points);
        }
        let _ = write!(out, " = {}", self.points);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A member of cooperative `c1` with every compared field filled in.
    fn sok_chanthea() -> Person {
        Person {
            name_khmer: Some("សុខ ចាន់ថា".into()),
            name_latin: Some("Sok Chanthea".into()),
            sex: Some("female".into()),
            year_of_birth: Some(1990),
            phone: Some("012 345 678".into()),
            village: Some("Prey Khmeng".into()),
            cooperative_id: Some("c1".into()),
        }
    }

    /// `records::duplicates::block_members` reads of a member's cooperative only those who
    /// share a name key or the phone with her: it relies on everything else scoring
    /// below the threshold, whatever the other fields say.
    #[test]
    fn without_a_name_or_phone_nobody_is_proposed() {
        let base = sok_chanthea();
        let other = Person {
            name_khmer: Some("ហេង សុភា".into()),
            name_latin: Some("Heng Sophea".into()),
            phone: Some("097 765 4321".into()),
            ..base.clone()
        };
        let (a, b) = (Prepared::of(&base), Prepared::of(&other));
        assert_ne!(a.skeleton(), b.skeleton());
        assert_ne!(a.latin(), b.latin());
        assert_ne!(a.phone(), b.phone());
        let s = score_prepared(&a, &b);
        assert!(s.points < PROPOSE_AT, "{s:?}");
        // The most a pair can score without those rules: every other rule's points.
        let most: i32 = s.matched.iter().map(|m| m.points.max(0)).sum();
        assert_eq!(most, 35, "{s:?}");
        // Any one of the three keys brings the same pair to the threshold.
        for shared in [
            Person {
                name_khmer: base.name_khmer.clone(),
                ..other.clone()
            },
            Person {
                name_latin: base.name_latin.clone(),
                name_khmer: None,
                ..other.clone()
            },
            Person {
                phone: base.phone.clone(),
                ..other.clone()
            },
        ] {
            let s = score(&base, &shared);
            assert!(s.points >= PROPOSE_AT, "{s:?}");
        }
    }

    #[test]
    fn a_crowd_of_namesakes_is_proposed_with_the_best_few() {
        // Person 0 matches 30 others at 65, and person 1 at 100; the others match only her.
        let mut pairs = vec![(0, 1, 100)];
        pairs.extend((2..32).map(|j| (0, j, 65)));
        let keep = within_cap(&pairs);
        // Every pair is among the best of its other side (each has only this one).
        assert!(keep.iter().all(|k| *k));
        // Among themselves the 30 are a crowd too: each keeps its 20 best.
        let crowd: Vec<(usize, usize, u32)> = (0..30)
            .flat_map(|i| (i + 1..30).map(move |j| (i, j, 65)))
            .collect();
        let keep = within_cap(&crowd);
        for person in 0..30 {
            let kept = crowd
                .iter()
                .zip(&keep)
                .filter(|((i, j, _), k)| **k && (*i == person || *j == person))
                .count();
            assert!(kept >= MAX_PROPOSED.min(29), "{person}: {kept}");
        }
        assert!(keep.iter().filter(|k| **k).count() < crowd.len());
        // The best pair of a crowd member survives whatever its rank elsewhere.
        let mut with_best = crowd.clone();
        with_best.push((29, 30, 90));
        let keep = within_cap(&with_best);
        assert!(keep[with_best.len() - 1]);
    }

    /// `records::walk_ins::member_changed` reads the walk-ins sharing the member's phone or
    /// Khmer skeleton only, not those of her cooperative: a walk-in has no village, so
    /// her romanised name, cooperative and year of birth alone stay below the threshold.
    #[test]
    fn a_walk_in_needs_a_phone_or_a_khmer_name_key() {
        let member = sok_chanthea();
        let w = Person::walk_in(
            Some("Sok Chanthea"),
            Some("female"),
            Some(36),
            None,
            Some("c1"),
            Some(2026),
        );
        let (a, b) = (Prepared::of(&member), Prepared::of(&w));
        assert_eq!(a.latin(), b.latin());
        assert_eq!((b.skeleton(), b.phone()), (None, None));
        let s = score_prepared(&a, &b);
        assert_eq!(s.points, 50, "{s:?}");
        assert!(s.points < PROPOSE_AT);
    }

    #[test]
    fn a_walk_in_compares_as_the_member_she_is() {
        let member = sok_chanthea();
        // Typed with a zero-width space, the phone in international form, aged 36 at a
        // session in 2026.
        let w = Person::walk_in(
            Some("សុខ\u{200b}ចាន់ថា"),
            Some("female"),
            Some(36),
            Some("+85512345678"),
            Some("c1"),
            Some(2026),
        );
        assert_eq!(w.year_of_birth, Some(1990));
        assert!(w.name_latin.is_none());
        let s = score(&member, &w);
        assert!(s.points >= PROPOSE_AT, "{s:?}");
        // In Latin letters her name is compared with the member's romanised name.
        let latin = Person::walk_in(
            Some("Sokh Chantha"),
            None,
            None,
            Some("012345678"),
            None,
            None,
        );
        assert_eq!(latin.name_latin.as_deref(), Some("Sokh Chantha"));
        assert!(score(&member, &latin).points >= PROPOSE_AT);
        // Her husband on the same phone is not her.
        let husband = Person::walk_in(
            Some("សុខ ចាន់ថា"),
            Some("male"),
            Some(40),
            Some("012345678"),
            Some("c1"),
            Some(2026),
        );
        assert_eq!(score(&member, &husband).points, 0);
        // An impossible age gives no year.
        assert!(
            Person::walk_in(Some("x"), None, Some(400), None, None, Some(2026))
                .year_of_birth
                .is_none()
        );
    }

    #[test]
    fn invisible_characters_and_spaces_do_not_count() {
        assert_eq!(normalise_khmer("សុខ\u{200b}  ចាន់ថា "), "សុខ ចាន់ថា");
        // The zero-width space is where a Khmer word ends: a word break, not nothing.
        assert_eq!(normalise_khmer("សុខ\u{200b}ចាន់ថា"), "សុខ ចាន់ថា");
        assert_eq!(normalise_khmer("\u{feff}សុខ\u{200c}ចាន់ថា"), "សុខចាន់ថា");
    }

    #[test]
    fn equivalent_khmer_encodings_are_one_spelling() {
        // ស្ត្រី (woman): coeng RO typed before coeng TA.
        assert_eq!(
            normalise_khmer("ស\u{17d2}\u{179a}\u{17d2}\u{178f}\u{17b8}"),
            normalise_khmer("ស\u{17d2}\u{178f}\u{17d2}\u{179a}\u{17b8}")
        );
        // ក្តា: the vowel typed before the subscript.
        assert_eq!(
            normalise_khmer("ក\u{17b6}\u{17d2}\u{178f}"),
            "ក\u{17d2}\u{178f}\u{17b6}"
        );
        // The legacy two-part vowels.
        assert_eq!(normalise_khmer("ដ\u{17c1}\u{17b8}ម"), "ដ\u{17be}ម");
        assert_eq!(normalise_khmer("ក\u{17c1}\u{17b6}"), "ក\u{17c4}");
        // A register shifter after the vowel.
        assert_eq!(normalise_khmer("ប\u{17b8}\u{17ca}"), "ប\u{17ca}\u{17b8}");
        assert_eq!(normalise_khmer("\u{17a3}"), "\u{17a2}");
    }

    #[test]
    fn the_skeleton_keeps_consonants_by_sound_in_any_word_order() {
        assert_eq!(khmer_key("សុខ ចាន់ថា"), khmer_key("ចាន់ថា សុខ"));
        assert_eq!(khmer_key("សុខ ចាន់ថា"), khmer_key("សុខ ចន្ថា"));
        // ទ and ត sound alike.
        assert_eq!(khmer_key("ទេវី"), khmer_key("តេវី"));
        assert_ne!(khmer_key("សុខ ចាន់ថា"), khmer_key("សុខ ចាន់ណា"));
        assert_ne!(khmer_key("សុខ ២"), khmer_key("សុខ ៣"), "digits are kept");
    }

    #[test]
    fn romanised_variants_fold() {
        for v in [
            "Sok Chanthea",
            "Sokh Chantha",
            "Chanthea Sok",
            "SOK  CHANTHEA",
            "Sok Jantha",
        ] {
            assert_eq!(latin_key(v), "canta sok", "{v}");
        }
        assert_ne!(latin_key("Sok Chanthea"), latin_key("Sok Dara"));
    }

    #[test]
    fn cambodian_phones_fold() {
        for p in [
            "012 345 678",
            "+855 12 345 678",
            "85512345678",
            "012-345-678",
            "00855 12 345 678",
            "(012) 345.678",
        ] {
            assert_eq!(phone_key(p), "012345678", "{p}");
        }
        assert_eq!(phone_key("none"), "");
    }

    fn person(km: &str, latin: &str, sex: &str, yob: i64, phone: &str) -> Person {
        Person {
            name_khmer: Some(km.into()),
            name_latin: Some(latin.into()),
            sex: Some(sex.into()),
            year_of_birth: Some(yob),
            phone: Some(phone.into()),
            village: Some("Prey Khmeng".into()),
            cooperative_id: Some("c1".into()),
        }
    }

    #[test]
    fn the_same_woman_typed_twice_scores_high_and_says_why() {
        let a = person("សុខ ចាន់ថា", "Sok Chanthea", "female", 1986, "012 345 678");
        let b = person(
            "សុខ\u{200b}  ចាន់ថា",
            "Sokh Chantha",
            "female",
            1987,
            "+85512345678",
        );
        let s = score(&a, &b);
        assert_eq!(s.points, 100);
        assert_eq!(
            s.explain(),
            "same Khmer name (40) + same phone number (35) + year of birth one apart (10) \
             + same cooperative (10) + same village (10) = 100"
        );
        // Typed once in Khmer, once only in Latin letters, with another phone.
        let c = Person {
            name_khmer: None,
            phone: Some("097 111 222".into()),
            ..person("", "Chanthea Sok", "female", 1986, "")
        };
        let s = score(&a, &c);
        assert_eq!(s.points, 60, "{}", s.explain());
    }

    #[test]
    fn sex_must_agree_and_a_shared_phone_alone_is_not_enough() {
        let a = person("សុខ ចាន់ថា", "Sok Chanthea", "female", 1986, "012 345 678");
        let husband = person("ហេង សុភា", "Heng Sophea", "male", 1980, "012 345 678");
        assert_eq!(score(&a, &husband).points, 0);
        let sister = person("សុខ ចាន់នី", "Sok Channy", "female", 1990, "012 345 678");
        let s = score(&a, &sister);
        assert!(s.points < PROPOSE_AT, "{}", s.explain());
        let unknown_sex = Person {
            sex: None,
            ..person("សុខ ចាន់ថា", "", "", 1986, "")
        };
        assert!(score(&a, &unknown_sex).points >= 55);
    }
}

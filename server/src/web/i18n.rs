//! The web app's two languages: which one a request gets, and numbers and dates written
//! the way a reader of that language expects (Khmer digits and month names in Khmer).

use chrono::{DateTime, Datelike, NaiveDate, Utc};

/// A UI language. Text is written at the point of use as `lang.t("English", "ខ្មែរ")`, so
/// that a page's two versions are read (and reviewed) side by side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    En,
    Km,
}

const KHMER_MONTHS: [&str; 12] = [
    "មករា",
    "កុម្ភៈ",
    "មីនា",
    "មេសា",
    "ឧសភា",
    "មិថុនា",
    "កក្កដា",
    "សីហា",
    "កញ្ញា",
    "តុលា",
    "វិច្ឆិកា",
    "ធ្នូ",
];
const ENGLISH_MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

impl Lang {
    pub fn parse(s: &str) -> Option<Lang> {
        match s {
            "en" => Some(Lang::En),
            "km" => Some(Lang::Km),
            _ => None,
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Km => "km",
        }
    }

    /// The other language (the switch offers it).
    pub fn other(self) -> Lang {
        match self {
            Lang::En => Lang::Km,
            Lang::Km => Lang::En,
        }
    }

    /// This language's own name, as the switch shows it.
    pub fn name(self) -> &'static str {
        match self {
            Lang::En => "English",
            Lang::Km => "ខ្មែរ",
        }
    }

    pub fn t(self, en: &'static str, km: &'static str) -> &'static str {
        match self {
            Lang::En => en,
            Lang::Km => km,
        }
    }

    /// Khmer for a browser whose first preferred language is Khmer, else English.
    pub fn from_accept_language(header: Option<&str>) -> Lang {
        let first = header
            .and_then(|h| h.split(',').next())
            .map(|l| l.trim().to_ascii_lowercase());
        match first {
            Some(l) if l == "km" || l.starts_with("km-") => Lang::Km,
            _ => Lang::En,
        }
    }

    /// Digits of this language (Khmer: ០–៩).
    pub fn digits(self, s: &str) -> String {
        match self {
            Lang::En => s.to_string(),
            Lang::Km => s
                .chars()
                .map(|c| match c.to_digit(10) {
                    Some(d) => char::from_u32(0x17E0 + d).unwrap_or(c),
                    None => c,
                })
                .collect(),
        }
    }

    /// A whole number with thousands grouped: `60,000` / `៦០,០០០`.
    pub fn int(self, n: i64) -> String {
        let raw = n.unsigned_abs().to_string();
        let mut grouped = String::new();
        for (i, c) in raw.chars().enumerate() {
            if i > 0 && (raw.len() - i).is_multiple_of(3) {
                grouped.push(',');
            }
            grouped.push(c);
        }
        let sign = if n < 0 { "-" } else { "" };
        self.digits(&format!("{sign}{grouped}"))
    }

    /// A number with one decimal, e.g. hours.
    pub fn num(self, x: f64) -> String {
        let whole = x.trunc() as i64;
        let tenth = ((x - x.trunc()).abs() * 10.0).round() as i64;
        let (whole, tenth) = if tenth == 10 {
            (whole + x.signum() as i64, 0)
        } else {
            (whole, tenth)
        };
        format!("{}{}", self.int(whole), self.digits(&format!(".{tenth}")))
    }

    /// A share 0–1 as a whole percentage.
    pub fn percent(self, share: f64) -> String {
        self.digits(&format!("{}%", (share * 100.0).round() as i64))
    }

    /// `3 Mar 2026` / `៣ មីនា ២០២៦`.
    pub fn date(self, d: NaiveDate) -> String {
        let m = d.month0() as usize;
        let month = match self {
            Lang::En => ENGLISH_MONTHS[m],
            Lang::Km => KHMER_MONTHS[m],
        };
        self.digits(&format!("{} {month} {}", d.day(), d.year()))
    }

    /// A date and time of day (UTC, which the page says), e.g. `3 Mar 2026 14:05`.
    pub fn datetime(self, t: DateTime<Utc>) -> String {
        format!(
            "{} {}",
            self.date(t.date_naive()),
            self.digits(&t.format("%H:%M").to_string())
        )
    }

    /// `2026-03` as `Mar 2026` / `មីនា ២០២៦`.
    pub fn month(self, ym: &str) -> String {
        let Some(d) = NaiveDate::parse_from_str(&format!("{ym}-01"), "%Y-%m-%d").ok() else {
            return ym.to_string();
        };
        let m = d.month0() as usize;
        match self {
            Lang::En => format!("{} {}", ENGLISH_MONTHS[m], d.year()),
            Lang::Km => self.digits(&format!("{} {}", KHMER_MONTHS[m], d.year())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_dates_in_both_languages() {
        assert_eq!(Lang::En.int(60000), "60,000");
        assert_eq!(Lang::Km.int(60000), "៦០,០០០");
        assert_eq!(Lang::En.int(-1234567), "-1,234,567");
        assert_eq!(Lang::En.num(2.96), "3.0");
        assert_eq!(Lang::Km.percent(0.587), "៥៩%");
        let d = NaiveDate::from_ymd_opt(2026, 3, 3).unwrap_or_default();
        assert_eq!(Lang::En.date(d), "3 Mar 2026");
        assert_eq!(Lang::Km.date(d), "៣ មីនា ២០២៦");
        assert_eq!(Lang::Km.month("2026-12"), "ធ្នូ ២០២៦");
        assert_eq!(Lang::from_accept_language(Some("km-KH,km;q=0.9")), Lang::Km);
        assert_eq!(Lang::from_accept_language(Some("en-US,km")), Lang::En);
        assert_eq!(Lang::from_accept_language(None), Lang::En);
    }
}

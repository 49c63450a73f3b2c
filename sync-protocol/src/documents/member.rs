//! Member document (`type: "member"`): one farmer in one cooperative.
//!
//! | field | Automerge type | required |
//! |---|---|---|
//! | `cooperative_id` | Str (UUID of the cooperative document) | yes |
//! | `full_name_khmer` | Str | yes |
//! | `name_latin` | Str | no |
//! | `sex` | Str: `female`, `male`, `other` | yes |
//! | `year_of_birth` | Int | no |
//! | `phone` | Str | no |
//! | `province_code` | Str, where the member lives | no |
//! | `village` | Str | no |
//! | `role` | Str: `member`, `chair`, `vice_chair`, `secretary`, `treasurer`, `committee`, `other` | yes |
//! | `joined_date` | Str `YYYY-MM-DD` | no |
//! | `merged_into` | Str (UUID of the member this one was merged into) | no: written only by the server (docs/sync-protocol.md, "Merged records") |

use automerge::{AutomergeError, ReadDoc, transaction::Transactable};
use serde::{Deserialize, Serialize};

use super::{DocType, Finding, Reader, SEX_VALUES, Writer, rules};

pub const ROLES: [&str; 7] = [
    "member",
    "chair",
    "vice_chair",
    "secretary",
    "treasurer",
    "committee",
    "other",
];

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Member {
    pub cooperative_id: Option<String>,
    pub full_name_khmer: Option<String>,
    pub name_latin: Option<String>,
    pub sex: Option<String>,
    pub year_of_birth: Option<i64>,
    pub phone: Option<String>,
    pub province_code: Option<String>,
    pub village: Option<String>,
    pub role: Option<String>,
    pub joined_date: Option<String>,
    /// Set by the server when an admin merged this record into another member (the
    /// survivor): the person is the survivor from then on. Absent or null: not merged.
    pub merged_into: Option<String>,
}

impl Member {
    pub fn read<D: ReadDoc>(doc: &D) -> (Self, Vec<Finding>) {
        let mut r = Reader::root(doc);
        let m = Member {
            cooperative_id: r.string("cooperative_id"),
            full_name_khmer: r.string("full_name_khmer"),
            name_latin: r.string("name_latin"),
            sex: r.string("sex"),
            year_of_birth: r.int("year_of_birth"),
            phone: r.string("phone"),
            province_code: r.string("province_code"),
            village: r.string("village"),
            role: r.string("role"),
            joined_date: r.string("joined_date"),
            merged_into: r.string("merged_into"),
        };
        (m, r.findings)
    }

    pub fn write<T: Transactable>(&self, tx: &mut T, create: bool) -> Result<(), AutomergeError> {
        let mut w = Writer::root(tx);
        if create {
            w.header(DocType::Member)?;
        }
        w.string("cooperative_id", self.cooperative_id.as_deref())?;
        w.string("full_name_khmer", self.full_name_khmer.as_deref())?;
        w.string("name_latin", self.name_latin.as_deref())?;
        w.string("sex", self.sex.as_deref())?;
        w.int("year_of_birth", self.year_of_birth)?;
        w.string("phone", self.phone.as_deref())?;
        w.string("province_code", self.province_code.as_deref())?;
        w.string("village", self.village.as_deref())?;
        w.string("role", self.role.as_deref())?;
        w.string("joined_date", self.joined_date.as_deref())?;
        w.string("merged_into", self.merged_into.as_deref())
    }

    /// `current_year` bounds the year of birth (passed in: this crate reads no clock).
    pub fn validate(&self, current_year: i64) -> Vec<Finding> {
        let mut f = Vec::new();
        rules::required(&mut f, "cooperative_id", &self.cooperative_id);
        rules::required(&mut f, "full_name_khmer", &self.full_name_khmer);
        rules::required(&mut f, "sex", &self.sex);
        rules::required(&mut f, "role", &self.role);
        rules::uuid(&mut f, "cooperative_id", &self.cooperative_id);
        rules::uuid(&mut f, "merged_into", &self.merged_into);
        rules::one_of(&mut f, "sex", &self.sex, &SEX_VALUES);
        rules::one_of(&mut f, "role", &self.role, &ROLES);
        rules::phone(&mut f, "phone", &self.phone);
        rules::province(&mut f, "province_code", &self.province_code);
        rules::date(&mut f, "joined_date", &self.joined_date);
        for (field, value) in [
            ("full_name_khmer", &self.full_name_khmer),
            ("name_latin", &self.name_latin),
            ("village", &self.village),
        ] {
            rules::max_chars(&mut f, field, value, rules::MAX_NAME_CHARS);
        }
        if let Some(y) = self.year_of_birth
            && !(current_year - 110..=current_year - 10).contains(&y)
        {
            f.push(Finding::new(
                "implausible_year_of_birth",
                "year_of_birth",
                format!("{y} is not a plausible year of birth for a member"),
            ));
        }
        f
    }
}

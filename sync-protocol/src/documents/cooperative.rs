//! Cooperative document (`type: "cooperative"`).
//!
//! | field | Automerge type | required |
//! |---|---|---|
//! | `name_khmer` | Str | yes |
//! | `name_latin` | Str | yes |
//! | `registration_number` | Str | no |
//! | `province_code` | Str, two digits | yes |
//! | `district`, `commune`, `village` | Str | no |
//! | `status` | Str: `forming`, `registered`, `active`, `inactive`, `dissolved` | yes |
//! | `established_date` | Str `YYYY-MM-DD` | no |

use automerge::{AutomergeError, ReadDoc, transaction::Transactable};
use serde::{Deserialize, Serialize};

use super::{DocType, Finding, Reader, Writer, rules};

pub const STATUSES: [&str; 5] = ["forming", "registered", "active", "inactive", "dissolved"];

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Cooperative {
    pub name_khmer: Option<String>,
    pub name_latin: Option<String>,
    pub registration_number: Option<String>,
    pub province_code: Option<String>,
    pub district: Option<String>,
    pub commune: Option<String>,
    pub village: Option<String>,
    pub status: Option<String>,
    pub established_date: Option<String>,
}

impl Cooperative {
    /// Reads the document; type mismatches come back as findings.
    pub fn read<D: ReadDoc>(doc: &D) -> (Self, Vec<Finding>) {
        let mut r = Reader::root(doc);
        let c = Cooperative {
            name_khmer: r.string("name_khmer"),
            name_latin: r.string("name_latin"),
            registration_number: r.string("registration_number"),
            province_code: r.string("province_code"),
            district: r.string("district"),
            commune: r.string("commune"),
            village: r.string("village"),
            status: r.string("status"),
            established_date: r.string("established_date"),
        };
        (c, r.findings)
    }

    /// Writes the fields that are set (and, with `create`, the document header).
    pub fn write<T: Transactable>(&self, tx: &mut T, create: bool) -> Result<(), AutomergeError> {
        let mut w = Writer::root(tx);
        if create {
            w.header(DocType::Cooperative)?;
        }
        w.string("name_khmer", self.name_khmer.as_deref())?;
        w.string("name_latin", self.name_latin.as_deref())?;
        w.string("registration_number", self.registration_number.as_deref())?;
        w.string("province_code", self.province_code.as_deref())?;
        w.string("district", self.district.as_deref())?;
        w.string("commune", self.commune.as_deref())?;
        w.string("village", self.village.as_deref())?;
        w.string("status", self.status.as_deref())?;
        w.string("established_date", self.established_date.as_deref())
    }

    pub fn validate(&self) -> Vec<Finding> {
        let mut f = Vec::new();
        rules::required(&mut f, "name_khmer", &self.name_khmer);
        rules::required(&mut f, "name_latin", &self.name_latin);
        rules::required(&mut f, "province_code", &self.province_code);
        rules::required(&mut f, "status", &self.status);
        rules::province(&mut f, "province_code", &self.province_code);
        rules::one_of(&mut f, "status", &self.status, &STATUSES);
        rules::date(&mut f, "established_date", &self.established_date);
        for (field, value) in [
            ("name_khmer", &self.name_khmer),
            ("name_latin", &self.name_latin),
            ("registration_number", &self.registration_number),
            ("district", &self.district),
            ("commune", &self.commune),
            ("village", &self.village),
        ] {
            rules::max_chars(&mut f, field, value, rules::MAX_NAME_CHARS);
        }
        f
    }
}

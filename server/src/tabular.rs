//! Tables written a row at a time as CSV (the `csv` crate) or XLSX (`rust_xlsxwriter`
//! in its constant-memory mode), for exports and reports: typed columns, so that a
//! spreadsheet gets dates as dates and numbers as numbers, and text that can never run
//! as a formula.

use std::io::Write;

use chrono::NaiveDateTime;
use rust_xlsxwriter::{ExcelDateTime, Format as CellFormat, Workbook, XlsxError};

/// The file format of a download.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    Xlsx,
}

impl Format {
    pub fn parse(s: &str) -> Option<Format> {
        match s {
            "csv" => Some(Format::Csv),
            "xlsx" => Some(Format::Xlsx),
            _ => None,
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Xlsx => "xlsx",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Csv => "text/csv; charset=utf-8",
            Format::Xlsx => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        }
    }
}

/// What a column holds, which decides its XLSX cell type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    Integer,
    Number,
    /// `YYYY-MM-DD`: an XLSX date cell when it is a real date, text otherwise (a tablet
    /// may have typed anything).
    Date,
    /// A server time (UTC).
    Timestamp,
}

#[derive(Debug, Clone)]
pub struct Column {
    pub name: std::borrow::Cow<'static, str>,
    pub kind: Kind,
}

pub const fn col(name: &'static str, kind: Kind) -> Column {
    Column {
        name: std::borrow::Cow::Borrowed(name),
        kind,
    }
}

/// One cell.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Empty,
    Text(String),
    Int(i64),
    Num(f64),
    Time(NaiveDateTime),
}

impl Value {
    /// As text, the way the CSV writes it and JSON reads it (RFC 3339 for times).
    pub fn to_text(&self) -> String {
        match self {
            Value::Empty => String::new(),
            Value::Text(s) => s.clone(),
            Value::Int(i) => i.to_string(),
            Value::Num(n) => n.to_string(),
            Value::Time(t) => {
                crate::db::utc(*t).to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
            }
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Value::Empty => serde_json::Value::Null,
            Value::Int(i) => (*i).into(),
            Value::Num(n) => serde_json::Number::from_f64(*n)
                .map(serde_json::Value::Number)
                .unwrap_or(serde_json::Value::Null),
            other => other.to_text().into(),
        }
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::Text(s)
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::Text(s.to_string())
    }
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Int(v)
    }
}

impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Value::Num(v)
    }
}

impl From<NaiveDateTime> for Value {
    fn from(v: NaiveDateTime) -> Self {
        Value::Time(v)
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map(Into::into).unwrap_or(Value::Empty)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TabularError {
    #[error("writing the file: {0}")]
    Io(#[from] std::io::Error),
    #[error("writing the CSV: {0}")]
    Csv(#[from] csv::Error),
    #[error("writing the XLSX: {0}")]
    Xlsx(#[from] XlsxError),
}

/// A cell that a spreadsheet would run as a formula (OWASP CSV injection: a first
/// character of `=`, `+`, `-`, `@`, tab or carriage return) gets a leading `'`, which
/// Excel and LibreOffice show as text and hide; a plain number such as `-2` is left as it
/// is. Tablet-entered text reaches these cells.
pub fn neutralise_formula(cell: &str) -> std::borrow::Cow<'_, str> {
    let risky = cell.starts_with(['=', '+', '-', '@', '\t', '\r']);
    // A tab or carriage return never parses as a number, so they are always neutralised.
    let plain_number = cell.parse::<f64>().is_ok_and(f64::is_finite);
    if risky && !plain_number {
        std::borrow::Cow::Owned(format!("'{cell}"))
    } else {
        std::borrow::Cow::Borrowed(cell)
    }
}

/// Where rows go, in order.
pub trait Sink {
    fn row(&mut self, values: &[Value]) -> Result<(), TabularError>;
    /// Completes the file (for XLSX, the whole file is written here).
    fn finish(self: Box<Self>) -> Result<(), TabularError>;
}

/// A sink for `columns` writing `format` to `out`. The header row is written first.
pub fn sink<W: Write + Send + 'static>(
    format: Format,
    out: W,
    sheet: &str,
    columns: &[Column],
) -> Result<Box<dyn Sink + Send>, TabularError> {
    Ok(match format {
        Format::Csv => Box::new(CsvSink::new(out, columns)?),
        Format::Xlsx => Box::new(XlsxSink::new(out, sheet, columns)?),
    })
}

/// RFC 4180 CSV with CRLF line ends, preceded by a UTF-8 byte order mark so that
/// spreadsheet programs read Khmer text as UTF-8.
struct CsvSink<W: Write> {
    writer: csv::Writer<W>,
}

impl<W: Write> CsvSink<W> {
    fn new(mut out: W, columns: &[Column]) -> Result<Self, TabularError> {
        out.write_all("\u{feff}".as_bytes())?;
        let mut writer = csv::WriterBuilder::new()
            .terminator(csv::Terminator::CRLF)
            .from_writer(out);
        writer.write_record(columns.iter().map(|c| c.name.as_ref()))?;
        Ok(CsvSink { writer })
    }
}

impl<W: Write> Sink for CsvSink<W> {
    fn row(&mut self, values: &[Value]) -> Result<(), TabularError> {
        for v in values {
            let text = v.to_text();
            self.writer.write_field(&*neutralise_formula(&text))?;
        }
        self.writer.write_record(None::<&[u8]>)?;
        Ok(())
    }

    fn finish(mut self: Box<Self>) -> Result<(), TabularError> {
        self.writer.flush()?;
        Ok(())
    }
}

/// One worksheet in constant-memory mode (rows go to a temporary file as they are
/// written; strings inline, never a shared table held in memory), header row bold and
/// frozen. Text is always a string cell: `write_string` never makes a formula.
struct XlsxSink<W: Write + Send> {
    workbook: Workbook,
    out: Option<W>,
    kinds: Vec<Kind>,
    row: u32,
    date: CellFormat,
    time: CellFormat,
}

/// Excel's last row (1,048,576 rows, the header included).
const XLSX_MAX_ROW: u32 = 1_048_575;

impl<W: Write + Send> XlsxSink<W> {
    fn new(out: W, sheet: &str, columns: &[Column]) -> Result<Self, TabularError> {
        let mut workbook = Workbook::new();
        let bold = CellFormat::new().set_bold();
        let ws = workbook.add_worksheet_with_constant_memory()?;
        ws.set_name(sheet)?;
        for (i, c) in columns.iter().enumerate() {
            let i = i as u16;
            ws.write_string_with_format(0, i, c.name.as_ref(), &bold)?;
            let width = match c.kind {
                Kind::Text => 18.0,
                Kind::Integer | Kind::Number => 10.0,
                Kind::Date => 12.0,
                Kind::Timestamp => 20.0,
            };
            ws.set_column_width(i, width)?;
        }
        ws.set_freeze_panes(1, 0)?;
        Ok(XlsxSink {
            workbook,
            out: Some(out),
            kinds: columns.iter().map(|c| c.kind).collect(),
            row: 0,
            date: CellFormat::new().set_num_format("yyyy-mm-dd"),
            time: CellFormat::new().set_num_format("yyyy-mm-dd hh:mm:ss"),
        })
    }
}

impl<W: Write + Send> Sink for XlsxSink<W> {
    fn row(&mut self, values: &[Value]) -> Result<(), TabularError> {
        if self.row >= XLSX_MAX_ROW {
            return Err(XlsxError::RowColumnLimitError.into());
        }
        self.row += 1;
        let row = self.row;
        let ws = self.workbook.worksheet_from_index(0)?;
        for (i, (v, kind)) in values.iter().zip(&self.kinds).enumerate() {
            let c = i as u16;
            match v {
                Value::Empty => {}
                Value::Int(n) => {
                    ws.write_number(row, c, *n as f64)?;
                }
                Value::Num(n) => {
                    ws.write_number(row, c, *n)?;
                }
                Value::Time(t) => {
                    let secs = t.and_utc().timestamp();
                    match ExcelDateTime::from_timestamp(secs) {
                        Ok(dt) => ws.write_datetime_with_format(row, c, dt, &self.time)?,
                        Err(_) => ws.write_string(row, c, v.to_text())?,
                    };
                }
                Value::Text(s) if *kind == Kind::Date => match date_cell(s) {
                    Some(dt) => {
                        ws.write_datetime_with_format(row, c, dt, &self.date)?;
                    }
                    None => {
                        ws.write_string(row, c, s)?;
                    }
                },
                Value::Text(s) => {
                    ws.write_string(row, c, s)?;
                }
            }
        }
        Ok(())
    }

    fn finish(mut self: Box<Self>) -> Result<(), TabularError> {
        if let Some(out) = self.out.take() {
            self.workbook.save_to_writer(out)?;
        }
        Ok(())
    }
}

/// A `YYYY-MM-DD` text that names a real day, as an Excel date.
fn date_cell(s: &str) -> Option<ExcelDateTime> {
    let d = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()?;
    if s.len() != 10 {
        return None;
    }
    use chrono::Datelike;
    ExcelDateTime::from_ymd(
        u16::try_from(d.year()).ok()?,
        d.month() as u8,
        d.day() as u8,
    )
    .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Default)]
    struct Shared(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .map_err(|_| std::io::Error::other("poisoned"))?
                .extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn csv_of(rows: &[Vec<Value>]) -> String {
        let out = Shared::default();
        let cols = [col("a", Kind::Text), col("b", Kind::Text)];
        let mut s = sink(Format::Csv, out.clone(), "t", &cols).unwrap();
        for r in rows {
            s.row(r).unwrap();
        }
        s.finish().unwrap();
        let bytes = out.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn csv_quotes_only_what_needs_quoting() {
        let text = csv_of(&[
            vec!["plain".into(), "with, comma".into()],
            vec!["say \"hi\"".into(), "two\nlines".into()],
            vec!["សហករណ៍".into(), Value::Empty],
        ]);
        assert_eq!(
            text,
            "\u{feff}a,b\r\nplain,\"with, comma\"\r\n\"say \"\"hi\"\"\",\"two\nlines\"\r\n\
             សហករណ៍,\r\n"
        );
    }

    #[test]
    fn cells_that_would_run_as_formulas_are_neutralised() {
        for risky in [
            "=HYPERLINK(\"http://x\",\"y\")",
            "@SUM(A1)",
            "+cmd|' /C calc'!A0",
            "-2+3",
            "\t=1",
            "\r=1",
        ] {
            assert_eq!(neutralise_formula(risky), format!("'{risky}"), "{risky:?}");
        }
        for safe in ["-2", "+855", "-1.5", "សុខ", "a=b", ""] {
            assert_eq!(neutralise_formula(safe), safe, "{safe:?}");
        }
        assert_eq!(
            csv_of(&[vec!["=1+1".into(), Value::Int(-2)]]),
            "\u{feff}a,b\r\n'=1+1,-2\r\n"
        );
    }

    #[test]
    fn only_real_days_become_date_cells() {
        assert!(date_cell("2026-02-28").is_some());
        for bad in ["2026-02-30", "26-2-1", "2026-2-1", "soon", ""] {
            assert!(date_cell(bad).is_none(), "{bad}");
        }
    }
}

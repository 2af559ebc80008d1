//! Validation of single label fields, shared by the multi-task file and the
//! per-task folders. Each returns `Ok(None)` for the invalid marker and an
//! error naming file, line and field for anything else that is not a label.

use super::labels::VA_INVALID;
use super::report::BadReason;
use crate::Error;
use std::path::Path;

pub(crate) type FieldResult<T> = std::result::Result<T, (BadReason, Error)>;

pub(crate) fn parse_err(
    file: &Path,
    line: usize,
    field: &str,
    reason: BadReason,
    msg: String,
) -> (BadReason, Error) {
    let err = Error::Parse {
        file: file.to_path_buf(),
        line,
        field: field.to_string(),
        msg,
    };
    (reason, err)
}

/// Valence or arousal: in [-1, 1], or exactly -5 for "not annotated".
pub(crate) fn va_value(file: &Path, line: usize, field: &str, s: &str) -> FieldResult<Option<f32>> {
    let v: f32 = s.trim().parse().map_err(|_| {
        parse_err(
            file,
            line,
            field,
            BadReason::NotANumber,
            format!("expected a number, found '{s}'"),
        )
    })?;
    if v == VA_INVALID {
        return Ok(None);
    }
    if !(-1.0..=1.0).contains(&v) {
        return Err(parse_err(
            file,
            line,
            field,
            BadReason::OutOfRange,
            format!("expected a value in [-1, 1] or -5, found {s}"),
        ));
    }
    Ok(Some(v))
}

/// An integer label in 0..n, or -1 for "not annotated".
pub(crate) fn class_value(
    file: &Path,
    line: usize,
    field: &str,
    s: &str,
    n: usize,
) -> FieldResult<Option<u8>> {
    let v: i64 = s.trim().parse().map_err(|_| {
        parse_err(
            file,
            line,
            field,
            BadReason::NotANumber,
            format!("expected an integer, found '{s}'"),
        )
    })?;
    match v {
        -1 => Ok(None),
        0.. if (v as usize) < n => Ok(Some(v as u8)),
        _ => Err(parse_err(
            file,
            line,
            field,
            BadReason::OutOfRange,
            format!("expected 0..{} or -1, found {v}", n - 1),
        )),
    }
}

/// A row of AU occurrences: all 0/1 (Some), or all -1 (None). A row mixing
/// -1 with 0/1 is rejected: the ABAW files mark a frame's AUs invalid as a whole.
pub(crate) fn au_row(
    file: &Path,
    line: usize,
    names: &[&str],
    fields: &[&str],
) -> FieldResult<Option<Vec<u8>>> {
    let mut out = Vec::with_capacity(fields.len());
    let mut invalid = 0;
    for (name, s) in names.iter().zip(fields) {
        match class_value(file, line, name, s, 2) {
            Ok(Some(v)) => out.push(v),
            Ok(None) => invalid += 1,
            Err((BadReason::OutOfRange, _)) => {
                return Err(parse_err(
                    file,
                    line,
                    name,
                    BadReason::OutOfRange,
                    format!("expected 0, 1 or -1, found {}", s.trim()),
                ))
            }
            Err(e) => return Err(e),
        }
    }
    match invalid {
        0 => Ok(Some(out)),
        n if n == fields.len() => Ok(None),
        _ => Err(parse_err(
            file,
            line,
            names[0],
            BadReason::OutOfRange,
            "AUs must be all annotated (0/1) or all -1, found a mix".to_string(),
        )),
    }
}

/// Reads a whole text file, naming the path on failure.
/// An annotation file as text, without a leading UTF-8 byte-order mark
/// (spreadsheet exports add one); a byte that is not UTF-8 is an error
/// naming its line.
pub(crate) fn read_text(path: &Path) -> crate::Result<String> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let body = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&bytes);
    match std::str::from_utf8(body) {
        Ok(text) => Ok(text.to_string()),
        Err(e) => {
            let at = e.valid_up_to();
            let before = &body[..at];
            let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
            let column = at
                - before
                    .iter()
                    .rposition(|&b| b == b'\n')
                    .map_or(0, |i| i + 1)
                + 1;
            Err(Error::Parse {
                file: path.to_path_buf(),
                line,
                field: "text".into(),
                msg: format!(
                    "byte 0x{:02X} at column {column} is not UTF-8 (save the file as UTF-8)",
                    body[at]
                ),
            })
        }
    }
}

/// Checks a file's first line against the expected header (spaces and
/// trailing whitespace ignored); a mismatch names the first differing
/// character and its byte value, since two headers can look identical.
pub(crate) fn check_header(path: &Path, found: Option<&str>, expected: &str) -> crate::Result<()> {
    let found = found.unwrap_or("");
    let norm = found.trim_end().replace(' ', "");
    if norm == expected {
        return Ok(());
    }
    let (pos, (want, got)) = expected
        .chars()
        .map(Some)
        .chain(std::iter::repeat(None))
        .zip(norm.chars().map(Some).chain(std::iter::repeat(None)))
        .enumerate()
        .find(|(_, (a, b))| a != b)
        .expect("the strings differ");
    let show = |c: Option<char>| match c {
        None => "the end of the line".to_string(),
        Some(c) => {
            let mut buf = [0u8; 4];
            let bytes: Vec<String> = c
                .encode_utf8(&mut buf)
                .bytes()
                .map(|b| format!("0x{b:02X}"))
                .collect();
            format!("{c:?} (byte {})", bytes.join(" "))
        }
    };
    Err(Error::Parse {
        file: path.to_path_buf(),
        line: 1,
        field: "header".into(),
        msg: format!(
            "expected '{expected}', found '{found}'; they first differ at character {}: expected {}, found {}",
            pos + 1,
            show(want),
            show(got)
        ),
    })
}

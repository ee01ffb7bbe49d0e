//! A spreadsheet's cells, whatever file an admin has: an Excel or OpenDocument
//! workbook (`.xlsx`, `.xls`, `.xlsb`, `.ods`; the first sheet
//! whose header names an id, read by calamine) or
//! delimited text as spreadsheet programs export it: UTF-8 with or without a byte
//! order mark, UTF-16 ("Unicode text"), or GB18030/GBK (what Excel on a Chinese
//! Windows writes as "CSV"); commas, tabs or semicolons.
//!
//! The format is told by the bytes, not the file name, so an upload named
//! wrongly is still read right.

use std::io::Cursor;
use std::path::Path;

use calamine::Reader;

use crate::source::Diagnostic;

/// One row of cells and its row number in the sheet (1-based, as the spreadsheet
/// program shows it; for delimited text, the line it starts on).
#[derive(Debug)]
pub struct Row {
    pub line: usize,
    pub cells: Vec<String>,
}

/// A workbook's cells, decompressed, may take at most this much (a zip bomb
/// uploaded as a spreadsheet is refused before it is unpacked).
const MAX_UNPACKED: u64 = 64 * 1024 * 1024;

/// The sheet's rows, the header row first; blank rows are kept (their numbers
/// count), so diagnostics name the row the admin sees. Of a workbook's sheets, the
/// first whose header `wanted` takes.
pub fn rows(
    path: &Path,
    data: &[u8],
    wanted: &dyn Fn(&[String]) -> bool,
) -> Result<Vec<Row>, Diagnostic> {
    let err = |line: usize, message: String| Diagnostic {
        file: path.to_path_buf(),
        line,
        col: 1,
        message,
    };
    match data {
        [0x50, 0x4b, 0x03, 0x04, ..] => {
            unpacked_size(data).map_err(|m| err(1, m))?;
            workbook(data, wanted).map_err(|m| err(1, m))
        }
        // An OLE compound file: Excel 97–2003 (`.xls`).
        [0xd0, 0xcf, 0x11, 0xe0, 0xa1, 0xb1, 0x1a, 0xe1, ..] => {
            workbook(data, wanted).map_err(|m| err(1, m))
        }
        _ => {
            let text = decode(data).map_err(|m| err(1, m))?;
            delimited(&text).map_err(|(line, m)| err(line, m))
        }
    }
}

/// The first sheet of a workbook whose first row `wanted` takes for a header (a
/// workbook may open with a sheet of instructions), else its first sheet.
fn workbook(data: &[u8], wanted: &dyn Fn(&[String]) -> bool) -> Result<Vec<Row>, String> {
    let mut book = calamine::open_workbook_auto_from_rs(Cursor::new(data))
        .map_err(|e| format!("not a workbook kefu can read: {e}"))?;
    let mut first = None;
    for name in book.sheet_names() {
        let range = book
            .worksheet_range(&name)
            .map_err(|e| format!("cannot read the sheet {name:?}: {e}"))?;
        let rows = sheet_rows(&range);
        let header = rows
            .iter()
            .find(|r| r.cells.iter().any(|c| !c.trim().is_empty()));
        if header.is_some_and(|h| wanted(&h.cells)) {
            return Ok(rows);
        }
        first.get_or_insert(rows);
    }
    first.ok_or_else(|| "the workbook has no sheet".into())
}

fn sheet_rows(range: &calamine::Range<calamine::Data>) -> Vec<Row> {
    let (top, _) = range.start().unwrap_or((0, 0));
    range
        .rows()
        .enumerate()
        .map(|(i, cells)| Row {
            line: top as usize + i + 1,
            cells: cells
                .iter()
                .map(|c| match c {
                    calamine::Data::Empty => String::new(),
                    other => other.to_string(),
                })
                .collect(),
        })
        .collect()
}

/// What a zip's entries declare they unpack to, refused above [`MAX_UNPACKED`].
fn unpacked_size(data: &[u8]) -> Result<(), String> {
    let mut zip = zip::ZipArchive::new(Cursor::new(data))
        .map_err(|e| format!("not a workbook kefu can read: {e}"))?;
    let mut total = 0u64;
    for i in 0..zip.len() {
        let entry = zip
            .by_index_raw(i)
            .map_err(|e| format!("not a workbook kefu can read: {e}"))?;
        total = total.saturating_add(entry.size());
    }
    if total > MAX_UNPACKED {
        return Err(format!(
            "the workbook unpacks to {} MiB; at most {} MiB is read",
            total >> 20,
            MAX_UNPACKED >> 20
        ));
    }
    Ok(())
}

/// Text in the encoding its byte order mark names, else UTF-8, else GB18030 (a
/// superset of GBK and GB2312).
fn decode(data: &[u8]) -> Result<String, String> {
    if let Some((encoding, bom)) = encoding_rs::Encoding::for_bom(data) {
        let (text, malformed) = encoding.decode_without_bom_handling(&data[bom..]);
        if malformed {
            return Err(format!("the file is not valid {}", encoding.name()));
        }
        return Ok(text.into_owned());
    }
    if let Ok(text) = std::str::from_utf8(data) {
        return Ok(text.to_string());
    }
    let (text, malformed) = encoding_rs::GB18030.decode_without_bom_handling(data);
    if malformed || text.contains('\0') {
        return Err(
            "the file is neither UTF-8, UTF-16 nor GBK text, nor a workbook (.xlsx, .xls, .ods)"
                .into(),
        );
    }
    Ok(text.into_owned())
}

/// Rows of delimited text; the delimiter is whichever of tab, comma and semicolon
/// the first line holds most of (outside quotes).
fn delimited(text: &str) -> Result<Vec<Row>, (usize, String)> {
    let first = text.lines().next().unwrap_or("");
    let count = |d: char| {
        let mut quoted = false;
        first
            .chars()
            .filter(|&c| {
                if c == '"' {
                    quoted = !quoted;
                }
                !quoted && c == d
            })
            .count()
    };
    let delimiter = [',', '\t', ';']
        .into_iter()
        .max_by_key(|&d| (count(d), d == ','))
        .unwrap_or(',');
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(delimiter as u8)
        .from_reader(text.as_bytes());
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| {
            let line = e.position().map_or(1, |p| p.line() as usize);
            (line, format!("unreadable row: {e}"))
        })?;
        // A record's position is where the one before it ended: blank lines
        // skipped since count too.
        let line = record.position().map_or(0, |p| {
            let skipped = text
                .get(p.byte() as usize..)
                .unwrap_or("")
                .bytes()
                .take_while(|b| matches!(b, b'\r' | b'\n'))
                .filter(|b| *b == b'\n')
                .count();
            p.line() as usize + skipped
        });
        rows.push(Row {
            line,
            cells: record.iter().map(str::to_string).collect(),
        });
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cells(data: &[u8]) -> Vec<Vec<String>> {
        rows(Path::new("faq.csv"), data, &|_| true)
            .unwrap()
            .into_iter()
            .map(|r| r.cells)
            .collect()
    }

    #[test]
    fn text_in_any_encoding_excel_writes() {
        let want = vec![
            vec!["id".to_string(), "问题".to_string()],
            vec!["refund".to_string(), "退款多久到账，谢谢".to_string()],
        ];
        let utf8 = "id,问题\nrefund,\"退款多久到账，谢谢\"\n";
        assert_eq!(cells(utf8.as_bytes()), want);
        let bom = [b"\xef\xbb\xbf".as_slice(), utf8.as_bytes()].concat();
        assert_eq!(cells(&bom), want);
        let (gbk, _, _) = encoding_rs::GBK.encode(utf8);
        assert!(std::str::from_utf8(&gbk).is_err());
        assert_eq!(cells(&gbk), want);
        // Excel's "Unicode text": UTF-16 little-endian with a mark, tab-separated.
        let tabbed = "id\t问题\r\nrefund\t退款多久到账，谢谢\r\n";
        let utf16: Vec<u8> = [0xff, 0xfe]
            .into_iter()
            .chain(tabbed.encode_utf16().flat_map(u16::to_le_bytes))
            .collect();
        assert_eq!(cells(&utf16), want);
        let semi = "id;问题\nrefund;退款多久到账，谢谢\n";
        assert_eq!(cells(semi.as_bytes()), want);
    }

    #[test]
    fn rows_keep_their_numbers() {
        let r = rows(
            Path::new("f.csv"),
            b"id,q\n\na,\"two\nlines\"\nb,x\n",
            &|_| true,
        )
        .unwrap();
        let lines: Vec<usize> = r.iter().map(|r| r.line).collect();
        assert_eq!(lines, [1, 3, 5]);
    }

    #[test]
    fn what_is_not_a_sheet_is_refused_with_a_reason() {
        let e = rows(
            Path::new("f.csv"),
            &[0x00, 0xff, 0xfe, 0x81, 0x00, 0x30],
            &|_| true,
        )
        .unwrap_err();
        assert!(
            e.to_string().starts_with("f.csv:1:1: the file is neither"),
            "{e}"
        );
        let e = rows(Path::new("f.xlsx"), b"PK\x03\x04broken", &|_| true).unwrap_err();
        assert!(e.to_string().contains("not a workbook"), "{e}");
        let e = rows(Path::new("f.csv"), b"\xff\xfe\x00\xd8", &|_| true).unwrap_err();
        assert!(e.to_string().contains("not valid UTF-16LE"), "{e}");
    }
}

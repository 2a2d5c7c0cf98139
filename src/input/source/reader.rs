//! The [`Reader`]: a source object's bytes, pushed as they arrive, decompressed and cut into
//! [`Chunk`]s of whole rows, so an object of any size passes through bounded memory. One
//! state machine, kept whole: decompression and cutting share the pending bytes, and the
//! framings (lines, array elements, CSV records) differ only in where they cut.

use std::io::Write;
use std::ops::ControlFlow;
use std::sync::Arc;

use super::{Compression, CsvOptions, Format, Framing};
use crate::Error;
use crate::rows::Rows;
use crate::rows::csv::{self, Boundary, Layout, Lexer};
use crate::rows::json::Scanner;

/// Decompressed bytes gathered before they are cut into a chunk of whole rows.
pub const CHUNK_BYTES: usize = 2 << 20;

/// The longest NDJSON line (or JSON array element) accepted: past it the object is refused
/// rather than buffered without bound. Lambda's own payload limit is 6 MB.
pub const MAX_ROW_BYTES: usize = 32 << 20;

/// Compressed bytes fed to gzip at a time: gzip expands at most ~1,032 times, so one feed
/// adds at most ~4 MiB before the reader can cut a chunk.
const GZIP_FEED: usize = 4 << 10;

/// Decompressed bytes zstd may produce per call, whatever its ratio.
const ZSTD_OUT: usize = 256 << 10;

/// zstd's largest window accepted (16 MiB; `zstd -19` uses 8 MiB). Frames that need more
/// (`--long`, `--ultra`) are refused instead of taking most of a 128 MB function.
const ZSTD_WINDOW_LOG_MAX: u32 = 24;

/// Whole rows of a source object, cut from its decompressed bytes.
#[derive(Debug)]
pub struct Chunk {
    format: Format,
    /// NDJSON: whole lines. JSON: `[` and whole elements and `]`. CSV: whole records.
    text: Vec<u8>,
    /// CSV: the columns and how to read the records.
    layout: Option<Arc<Layout>>,
    /// The index of the chunk's first row in the object.
    first_row: usize,
    /// The line the chunk's text starts on.
    first_line: usize,
}

impl Chunk {
    /// The chunk's rows on a tape, checked as strictly as an event's rows.
    ///
    /// # Errors
    /// `InvalidEvent` naming the line (NDJSON, CSV) or row (JSON) of invalid UTF-8, malformed
    /// JSON, a row that is not an object, or a repeated key; for CSV, as
    /// [`Rows::parse_csv`].
    pub fn rows(&self) -> Result<Rows<'_>, Error> {
        let text = crate::rows::json::utf8(&self.text).map_err(|valid_up_to| {
            let before = &self.text[..valid_up_to];
            let line = self.first_line + before.iter().filter(|&&b| b == b'\n').count();
            Error::InvalidEvent(format!("invalid UTF-8 at line {line}"))
        })?;
        match self.format {
            Format::Ndjson => Rows::parse_lines(text, self.first_line),
            Format::Csv { .. } => {
                let layout = self.layout.as_ref().expect("a CSV chunk has its layout");
                Rows::parse_csv(text, layout, self.first_line)
            }
            Format::Json => {
                let mut scanner = Scanner::over(text, self.first_line, "the object");
                let rows = Rows::parse(&mut scanner, 0, self.first_row)?;
                scanner.end()?;
                Ok(rows)
            }
        }
    }
}

/// The decompression in front of the framing.
enum Decoder {
    Plain,
    Gzip(Box<flate2::write::MultiGzDecoder<Vec<u8>>>),
    Zstd {
        raw: Box<zstd::stream::raw::Decoder<'static>>,
        /// Where the last frame stands: 0 at a frame's end.
        remaining: usize,
    },
}

/// Where a JSON array's framing stands: the top-level commas are found by tracking strings
/// and nesting, so a comma inside a string or an element never cuts a row.
#[derive(Debug, Default)]
struct ArrayState {
    /// The opening `[` has been seen.
    open: bool,
    /// The closing `]` has been seen.
    closed: bool,
    depth: usize,
    in_string: bool,
    escaped: bool,
    /// Bytes of `pending` already scanned.
    scanned: usize,
    /// The last top-level comma in `pending` and how many top-level commas precede it.
    cut: Option<(usize, usize)>,
    commas: usize,
}

/// Where a CSV object's framing stands: its header (until read), and the lexer finding
/// where records end.
struct CsvState {
    options: CsvOptions,
    tab: bool,
    /// Known once the header (or, without one, the first record) is read.
    layout: Option<Arc<Layout>>,
    lexer: Lexer,
    /// Bytes of `pending` already lexed.
    scanned: usize,
    /// The last record end within the chunk's size, or the first after it.
    cut: Option<usize>,
}

/// Turns an object's bytes, pushed as they arrive, into chunks of whole rows.
pub struct Reader {
    format: Format,
    decoder: Decoder,
    /// Decompressed bytes not yet cut into a chunk.
    pending: Vec<u8>,
    array: ArrayState,
    csv: Option<CsvState>,
    /// NDJSON: bytes of `pending` already searched for a newline.
    searched: usize,
    next_row: usize,
    next_line: usize,
    /// Whether the object's first bytes were looked at for a byte-order mark.
    bom_checked: bool,
}

/// UTF-8's byte-order mark, which Windows tools write at the start of a text file. RFC 8259
/// lets a parser ignore it; DuckDB and pyarrow do, and so does the reader.
const BOM: &[u8] = b"\xEF\xBB\xBF";

impl Reader {
    /// # Errors
    /// `SourceReadFailed` if the zstd decoder cannot be set up.
    pub fn new(framing: Framing) -> Result<Reader, Error> {
        let Framing {
            format,
            compression,
            csv,
            columns,
        } = framing;
        let csv = match format {
            Format::Csv { tab } => Some(CsvState {
                // A header-less object whose names are given needs no first look.
                layout: columns
                    .filter(|_| !csv.header)
                    .map(|names| Arc::new(csv.layout(tab, names))),
                options: csv,
                tab,
                lexer: Lexer::default(),
                scanned: 0,
                cut: None,
            }),
            _ => None,
        };
        let decoder = match compression {
            Compression::None => Decoder::Plain,
            Compression::Gzip => {
                Decoder::Gzip(Box::new(flate2::write::MultiGzDecoder::new(Vec::new())))
            }
            Compression::Zstd => {
                let mut raw = zstd::stream::raw::Decoder::new()
                    .map_err(|e| Error::SourceReadFailed(format!("zstd: {e}")))?;
                raw.set_parameter(zstd::stream::raw::DParameter::WindowLogMax(
                    ZSTD_WINDOW_LOG_MAX,
                ))
                .map_err(|e| Error::SourceReadFailed(format!("zstd: {e}")))?;
                Decoder::Zstd {
                    raw: Box::new(raw),
                    remaining: 0,
                }
            }
        };
        Ok(Reader {
            format,
            decoder,
            pending: Vec::new(),
            array: ArrayState::default(),
            csv,
            searched: 0,
            next_row: 0,
            next_line: 1,
            bom_checked: false,
        })
    }

    /// Feeds the next bytes of the object and returns the chunks they complete (none until
    /// [`CHUNK_BYTES`] have gathered).
    ///
    /// # Errors
    /// `InvalidEvent` for corrupt compressed data, a row longer than [`MAX_ROW_BYTES`], or a
    /// JSON object that is not an array.
    pub fn push(&mut self, mut input: &[u8]) -> Result<Vec<Chunk>, Error> {
        let mut chunks = Vec::new();
        while !input.is_empty() {
            let used = match &mut self.decoder {
                Decoder::Plain => {
                    let n = input.len().min(CHUNK_BYTES);
                    self.pending.extend_from_slice(&input[..n]);
                    n
                }
                Decoder::Gzip(gzip) => {
                    let n = input.len().min(GZIP_FEED);
                    let n = gzip.write(&input[..n]).map_err(|e| corrupt("gzip", &e))?;
                    self.pending.append(gzip.get_mut());
                    if n == 0 {
                        // Data after the last gzip member that is not another member.
                        return Err(corrupt("gzip", &"trailing bytes after the last member"));
                    }
                    n
                }
                Decoder::Zstd { raw, remaining } => {
                    let status = zstd_step(raw, input, &mut self.pending)?;
                    *remaining = status.remaining;
                    if status.bytes_read == 0 && status.bytes_written == 0 {
                        return Err(corrupt("zstd", &"the decoder made no progress"));
                    }
                    status.bytes_read
                }
            };
            input = &input[used..];
            self.cut_ready(&mut chunks)?;
        }
        Ok(chunks)
    }

    /// Ends the object: the last chunks, if any rows remain (cut as [`Reader::push`] cuts
    /// them, so how the bytes arrived never moves a cut).
    ///
    /// # Errors
    /// `InvalidEvent` for a truncated compressed stream, or a JSON array that never closes
    /// or is followed by anything but whitespace.
    pub fn finish(&mut self) -> Result<Vec<Chunk>, Error> {
        match &mut self.decoder {
            Decoder::Plain => {}
            Decoder::Gzip(gzip) => {
                gzip.try_finish().map_err(|e| corrupt("gzip", &e))?;
                self.pending.append(gzip.get_mut());
            }
            Decoder::Zstd { raw, remaining } => loop {
                let status = zstd_step(raw, &[], &mut self.pending)?;
                if status.bytes_written == 0 {
                    // A call that did nothing says nothing of the last frame.
                    if *remaining != 0 {
                        return Err(corrupt("zstd", &"the object ends inside a frame"));
                    }
                    break;
                }
            },
        }
        self.skip_bom(true);
        self.csv_header(true)?;
        let mut chunks = Vec::new();
        self.cut_ready(&mut chunks)?;
        if self.format == Format::Json {
            self.scan_array()?;
            if !self.array.open {
                return Err(not_an_array());
            }
            if !self.array.closed {
                return Err(Error::InvalidEvent(format!(
                    "the object is not valid JSON: its array never closes (EOF at line {})",
                    self.next_line + count_lines(&self.pending)
                )));
            }
            let rest = self.pending.iter().find(|b| !b.is_ascii_whitespace());
            if self.next_row > 0 && rest == Some(&b']') {
                return Err(Error::InvalidEvent(format!(
                    "the object is not valid JSON: a `,` after row {} is followed by the array's end",
                    self.next_row - 1
                )));
            }
        }
        let text = std::mem::take(&mut self.pending);
        chunks.extend(match self.format {
            Format::Ndjson => self.lines_chunk(text),
            Format::Csv { .. } => self.records_chunk(text),
            // The rows after the last cut (their count is not needed any more) and the `]`.
            Format::Json => Some(self.array_chunk(&text, 0, true)),
        });
        Ok(chunks)
    }

    /// Drops a byte-order mark at the object's start, once enough bytes tell.
    fn skip_bom(&mut self, at_end: bool) {
        if self.bom_checked || (self.pending.len() < BOM.len() && !at_end) {
            return;
        }
        self.bom_checked = true;
        if self.pending.starts_with(BOM) {
            self.pending.drain(..BOM.len());
        }
    }

    /// Cuts the chunks that `pending` holds.
    fn cut_ready(&mut self, chunks: &mut Vec<Chunk>) -> Result<(), Error> {
        self.skip_bom(false);
        self.csv_header(false)?;
        while self.pending.len() >= CHUNK_BYTES {
            let cut = match self.format {
                Format::Csv { .. } => self.scan_csv(),
                Format::Ndjson => {
                    // The last newline within the chunk's size, else (one line longer than
                    // that) the first after it; `searched` skips what is known to hold none.
                    let within = (self.searched < CHUNK_BYTES)
                        .then(|| {
                            self.pending[..CHUNK_BYTES]
                                .iter()
                                .rposition(|&b| b == b'\n')
                        })
                        .flatten();
                    within.or_else(|| {
                        let from = self.searched.max(CHUNK_BYTES);
                        self.searched = self.pending.len();
                        let after = self.pending[from..].iter().position(|&b| b == b'\n');
                        after.map(|at| from + at)
                    })
                }
                Format::Json => {
                    self.scan_array()?;
                    self.array.cut.map(|(at, _)| at)
                }
            };
            let Some(cut) = cut else {
                if self.pending.len() > MAX_ROW_BYTES {
                    return Err(self.too_long());
                }
                return Ok(());
            };
            if cut > MAX_ROW_BYTES {
                // Only a row that alone passes the chunk's size ends past it.
                return Err(self.too_long());
            }
            // The rest starts a buffer of the same size as every other chunk's, so the heap
            // reuses one block size instead of fragmenting on doublings.
            let mut rest = Vec::with_capacity(CHUNK_BYTES + (CHUNK_BYTES >> 2));
            rest.extend_from_slice(&self.pending[cut + 1..]);
            self.pending.truncate(cut + 1);
            let text = std::mem::replace(&mut self.pending, rest);
            self.searched = 0;
            if let Some(csv) = &mut self.csv {
                csv.scanned -= cut + 1;
                csv.cut = None;
                chunks.extend(self.records_chunk(text));
            } else if self.format == Format::Json {
                let (_, commas) = self.array.cut.take().expect("a cut was found");
                // The scan stopped at the cut's bound: what it passed after the cut holds no
                // top-level comma, and its state is the rest's at the same offset.
                self.array.scanned -= cut + 1;
                self.array.commas = 0;
                // Rows before the cut: the commas before it, plus the element it ends.
                let rows = commas + 1;
                chunks.push(self.array_chunk(&text[..cut], rows, false));
            } else {
                chunks.extend(self.lines_chunk(text));
            }
        }
        Ok(())
    }

    fn too_long(&self) -> Error {
        let hint = match self.csv {
            Some(_) => " (an unterminated quote makes the rest of a CSV object one field)",
            None => "",
        };
        Error::InvalidEvent(format!(
            "a row starting at line {} is longer than {} MiB{hint}",
            self.next_line,
            MAX_ROW_BYTES >> 20
        ))
    }

    /// Reads a CSV object's header (or, without one, counts its first record's fields for
    /// the names `_c0`, `_c1`, …) once its first record is whole, skipping blank and comment
    /// lines before it; `at_end`: the object has no more bytes.
    fn csv_header(&mut self, at_end: bool) -> Result<(), Error> {
        let Some(csv) = &mut self.csv else {
            return Ok(());
        };
        while csv.layout.is_none() {
            let dialect = csv.options.dialect(csv.tab);
            let mut found = None;
            csv.scanned =
                csv.lexer
                    .records(&dialect, &self.pending, csv.scanned, |at, boundary| {
                        if boundary == Boundary::Field {
                            return ControlFlow::Continue(());
                        }
                        found = Some((at + 1, boundary));
                        ControlFlow::Break(())
                    });
            let (end, boundary) = match found {
                Some(found) => found,
                None if at_end && !self.pending.is_empty() => {
                    (self.pending.len(), Boundary::Record)
                }
                None if self.pending.len() > MAX_ROW_BYTES => {
                    return Err(Error::InvalidEvent(format!(
                        "the header starting at line {} is longer than {} MiB",
                        self.next_line,
                        MAX_ROW_BYTES >> 20
                    )));
                }
                None => return Ok(()),
            };
            let record = &self.pending[..end];
            let breaks = count_lines(record);
            let blank = matches!(record, b"\n" | b"\r\n" | b"" | b"\r");
            if boundary == Boundary::Comment || blank || csv.options.header {
                if boundary == Boundary::Record && !blank {
                    let text = std::str::from_utf8(record).map_err(|_| {
                        Error::InvalidEvent(format!("invalid UTF-8 at line {}", self.next_line))
                    })?;
                    let fields = csv::record_fields(text, &dialect, self.next_line)?;
                    let names = csv::header_names(fields, &csv.options.null_value)?;
                    csv.layout = Some(Arc::new(csv.options.layout(csv.tab, names)));
                }
                self.pending.drain(..end);
                self.next_line += breaks;
            } else {
                // The first record is a row: only its fields are counted, and it is lexed again.
                let text = String::from_utf8_lossy(record);
                let fields = csv::record_fields(&text, &dialect, self.next_line)?;
                let names = (0..fields.len()).map(|i| format!("_c{i}")).collect();
                csv.layout = Some(Arc::new(csv.options.layout(csv.tab, names)));
            }
            csv.lexer = Lexer::default();
            csv.scanned = 0;
        }
        Ok(())
    }

    /// Lexes the CSV bytes not yet lexed for the cut; `None` while there is none.
    fn scan_csv(&mut self) -> Option<usize> {
        let csv = self.csv.as_mut().expect("a CSV reader");
        let dialect = &csv.layout.as_ref()?.dialect;
        let mut cut = csv.cut;
        csv.scanned = csv
            .lexer
            .records(dialect, &self.pending, csv.scanned, |at, boundary| {
                if boundary == Boundary::Field {
                    return ControlFlow::Continue(());
                }
                if at < CHUNK_BYTES || cut.is_none() {
                    cut = Some(at);
                }
                match at < CHUNK_BYTES {
                    true => ControlFlow::Continue(()),
                    false => ControlFlow::Break(()),
                }
            });
        csv.cut = cut;
        cut
    }

    /// A chunk of whole CSV records; `None` when it holds nothing but line breaks.
    fn records_chunk(&mut self, text: Vec<u8>) -> Option<Chunk> {
        let chunk = Chunk {
            format: self.format,
            layout: self.csv.as_ref().and_then(|csv| csv.layout.clone()),
            text,
            first_row: self.next_row,
            first_line: self.next_line,
        };
        self.next_line += count_lines(&chunk.text);
        let empty = chunk.text.iter().all(|b| matches!(b, b'\r' | b'\n'));
        (!empty && chunk.layout.is_some()).then_some(chunk)
    }

    /// Finds top-level commas and the array's brackets in the bytes not yet scanned.
    fn scan_array(&mut self) -> Result<(), Error> {
        let state = &mut self.array;
        let mut i = state.scanned;
        while i < self.pending.len() {
            if i >= CHUNK_BYTES && state.cut.is_some() {
                // The cut is final: the last top-level comma within the chunk's size, or the
                // first after it.
                break;
            }
            let b = self.pending[i];
            if state.in_string {
                if state.escaped {
                    state.escaped = false;
                } else if b == b'\\' {
                    state.escaped = true;
                } else if b == b'"' {
                    state.in_string = false;
                }
            } else if state.closed {
                if !matches!(b, b' ' | b'\n' | b'\r' | b'\t') {
                    return Err(Error::InvalidEvent(
                        "the object is not valid JSON: trailing characters after its array".into(),
                    ));
                }
            } else if !state.open {
                match b {
                    b'[' => state.open = true,
                    b' ' | b'\n' | b'\r' | b'\t' => {}
                    _ => return Err(not_an_array()),
                }
            } else {
                match b {
                    b'"' => state.in_string = true,
                    b'{' | b'[' => state.depth += 1,
                    b'}' | b']' if state.depth > 0 => state.depth -= 1,
                    b']' => state.closed = true,
                    b',' if state.depth == 0 => {
                        if i < CHUNK_BYTES || state.cut.is_none() {
                            state.cut = Some((i, state.commas));
                        }
                        state.commas += 1;
                    }
                    _ => {}
                }
            }
            i += 1;
        }
        state.scanned = i;
        Ok(())
    }

    /// A chunk of whole JSON array elements, `rows` of them, made one array: the `[` that only
    /// the first chunk's bytes hold is added to later ones, the `]` that only the last one's
    /// bytes hold (`closed`) to earlier ones.
    fn array_chunk(&mut self, elements: &[u8], rows: usize, closed: bool) -> Chunk {
        let mut text = Vec::with_capacity(elements.len() + 2);
        if self.next_row > 0 {
            text.push(b'[');
        }
        text.extend_from_slice(elements);
        if !closed {
            text.push(b']');
        }
        let chunk = Chunk {
            format: Format::Json,
            layout: None,
            text,
            first_row: self.next_row,
            first_line: self.next_line,
        };
        self.next_line += count_lines(elements);
        self.next_row += rows;
        chunk
    }

    /// A chunk of whole NDJSON lines; `None` when every one is blank.
    fn lines_chunk(&mut self, text: Vec<u8>) -> Option<Chunk> {
        let chunk = Chunk {
            format: Format::Ndjson,
            layout: None,
            text,
            first_row: self.next_row,
            first_line: self.next_line,
        };
        self.next_line += count_lines(&chunk.text);
        (!chunk.text.iter().all(u8::is_ascii_whitespace)).then_some(chunk)
    }
}

/// One call of the zstd decoder, its output appended to `pending` (at most [`ZSTD_OUT`]).
fn zstd_step(
    raw: &mut zstd::stream::raw::Decoder<'static>,
    input: &[u8],
    pending: &mut Vec<u8>,
) -> Result<zstd::stream::raw::Status, Error> {
    use zstd::stream::raw::Operation;
    let start = pending.len();
    pending.resize(start + ZSTD_OUT, 0);
    let status = raw
        .run_on_buffers(input, &mut pending[start..])
        .map_err(|e| corrupt("zstd", &e))?;
    pending.truncate(start + status.bytes_written);
    Ok(status)
}

fn count_lines(text: &[u8]) -> usize {
    text.iter().filter(|&&b| b == b'\n').count()
}

fn not_an_array() -> Error {
    Error::InvalidEvent(
        "the object is not a JSON array of objects (for one object a line, use the ndjson format)"
            .into(),
    )
}

fn corrupt(codec: &str, e: &dyn std::fmt::Display) -> Error {
    Error::InvalidEvent(format!("the object is not valid {codec} data: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rows::RowRef;

    fn framing(format: Format, compression: Compression) -> Framing {
        Framing {
            format,
            compression,
            csv: CsvOptions::default(),
            columns: None,
        }
    }

    /// Every chunk of an object read with `framing`, its bytes fed in pieces of `piece`.
    fn chunks_of(framing: Framing, bytes: &[u8], piece: usize) -> Result<Vec<Chunk>, Error> {
        let mut reader = Reader::new(framing)?;
        let mut chunks = Vec::new();
        for part in bytes.chunks(piece.max(1)) {
            chunks.extend(reader.push(part)?);
        }
        chunks.extend(reader.finish()?);
        Ok(chunks)
    }

    /// Every chunk's rows as `(row ref, first key)`, feeding `bytes` in pieces of `piece`.
    fn read(
        format: Format,
        compression: Compression,
        bytes: &[u8],
        piece: usize,
    ) -> Result<Vec<(RowRef, String)>, Error> {
        let mut out = Vec::new();
        for chunk in &chunks_of(framing(format, compression), bytes, piece)? {
            let rows = chunk.rows()?;
            for (row, start) in rows.rows_in(0..rows.len()) {
                let first = rows.members(start).next().map(|(k, _)| k.to_owned());
                out.push((row, first.unwrap_or_default()));
            }
        }
        Ok(out)
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }

    fn ndjson(rows: usize) -> String {
        (0..rows)
            .map(|i| format!("{{\"k{}\": {i}, \"s\": \"a,]}}\\\"\"}}\n", i % 3))
            .collect()
    }

    /// Every chunk as `(first row, first line, text)`, feeding `bytes` in pieces of `piece`.
    fn cuts(
        format: Format,
        compression: Compression,
        bytes: &[u8],
        piece: usize,
    ) -> Vec<(usize, usize, Vec<u8>)> {
        chunks_of(framing(format, compression), bytes, piece)
            .unwrap()
            .into_iter()
            .map(|c| (c.first_row, c.first_line, c.text))
            .collect()
    }

    #[test]
    fn chunks_are_cut_where_the_content_says_however_the_bytes_arrive() {
        // A retry must write what the attempt it replaces wrote: the same chunks, so the same
        // row groups, dictionaries and files. Rows of uneven lengths, one longer than a chunk.
        let mut lines: Vec<String> = (0..60_000)
            .map(|i| format!("{{\"i\": {i}, \"s\": \"{}\"}}", "x,]".repeat(i % 40)))
            .collect();
        lines[20_000] = format!("{{\"long\": \"{}\"}}", "y".repeat(CHUNK_BYTES + 5));
        let ndjson = lines.join("\n") + "\n";
        let array = format!("[{}]", lines.join(",\n"));
        for (format, text) in [(Format::Ndjson, ndjson), (Format::Json, array)] {
            let whole = cuts(format, Compression::None, text.as_bytes(), text.len());
            assert!(whole.len() > 3, "{format:?}: {} chunks", whole.len());
            assert!(
                whole
                    .iter()
                    .all(|(_, _, t)| t.len() <= 2 * CHUNK_BYTES + 64)
            );
            let zstd = zstd::encode_all(text.as_bytes(), 3).unwrap();
            for (compression, bytes) in [
                (Compression::None, text.clone().into_bytes()),
                (Compression::Gzip, gzip(text.as_bytes())),
                (Compression::Zstd, zstd),
            ] {
                for piece in [1_000, 65_536, 3 << 20] {
                    assert!(
                        cuts(format, compression, &bytes, piece) == whole,
                        "{format:?} {compression:?} in pieces of {piece}"
                    );
                }
            }
        }
    }

    #[test]
    fn ndjson_chunks_keep_rows_whole_and_lines_numbered_in_any_pieces() {
        // Enough rows for several chunks; blank lines and CRLF on the way.
        let mut text = ndjson(200_000);
        text.insert_str(0, "\r\n  \n");
        let expected = 200_000;
        for compression in [Compression::None, Compression::Gzip] {
            let bytes = match compression {
                Compression::Gzip => gzip(text.as_bytes()),
                _ => text.clone().into_bytes(),
            };
            for piece in [7, 65_536] {
                let rows = read(Format::Ndjson, compression, &bytes, piece).unwrap();
                assert_eq!(rows.len(), expected);
                assert_eq!(rows[0], (RowRef::Line(3), "k0".into()));
                assert_eq!(
                    rows[expected - 1],
                    (
                        RowRef::Line(expected + 2),
                        format!("k{}", (expected - 1) % 3)
                    )
                );
                assert!(rows.windows(2).all(
                    |w| matches!((w[0].0, w[1].0), (RowRef::Line(a), RowRef::Line(b)) if b == a + 1)
                ));
            }
        }
    }

    #[test]
    fn a_byte_order_mark_at_the_start_is_skipped_however_the_bytes_arrive() {
        let ndjson = "\u{feff}{\"a\": 1}\r\n{\"a\": 2}\r\n";
        let array = "\u{feff} [{\"a\": 1}, {\"a\": 2}]";
        for (format, text) in [(Format::Ndjson, ndjson), (Format::Json, array)] {
            for compression in [Compression::None, Compression::Gzip] {
                let bytes = match compression {
                    Compression::Gzip => gzip(text.as_bytes()),
                    _ => text.as_bytes().to_vec(),
                };
                for piece in [1, 2, 1024] {
                    let rows = read(format, compression, &bytes, piece).unwrap();
                    assert_eq!(rows.len(), 2, "{format:?} {piece}");
                    assert_eq!(rows[0].1, "a");
                }
            }
        }
        // Only at the start: one inside a line is that line's content, and an error.
        let e = read(
            Format::Ndjson,
            Compression::None,
            "{\"a\": 1}\n\u{feff}{\"a\": 2}\n".as_bytes(),
            64,
        )
        .unwrap_err();
        assert!(e.to_string().contains("line 2"), "{e}");
    }

    #[test]
    fn zstd_streams_of_several_frames_read_whole() {
        let text = ndjson(50_000);
        let (a, b) = text.split_at(text.len() / 2);
        let mut bytes = zstd::encode_all(a.as_bytes(), 3).unwrap();
        bytes.extend(zstd::encode_all(b.as_bytes(), 3).unwrap());
        let rows = read(Format::Ndjson, Compression::Zstd, &bytes, 4096).unwrap();
        assert_eq!(rows.len(), 50_000);
        let truncated = &bytes[..bytes.len() - 5];
        let e = read(Format::Ndjson, Compression::Zstd, truncated, 4096).unwrap_err();
        assert!(e.to_string().contains("not valid zstd data"), "{e}");
    }

    #[test]
    fn json_arrays_are_cut_between_elements_only() {
        let elements: Vec<String> = (0..150_000)
            .map(|i| {
                format!(
                    "{{\"k{}\": [{i}, {{\"x\": \"],[{{\\\"\"}}], \"n\": null}}",
                    i % 2
                )
            })
            .collect();
        let text = format!(" [\n{}\n] \n", elements.join(",\n"));
        for piece in [3, 1 << 20] {
            let rows = read(Format::Json, Compression::None, text.as_bytes(), piece).unwrap();
            assert_eq!(rows.len(), 150_000);
            assert!(
                rows.iter()
                    .enumerate()
                    .all(|(i, (r, k))| *r == RowRef::Index(i) && *k == format!("k{}", i % 2))
            );
        }
        for (bad, word) in [
            ("{\"a\": 1}", "not a JSON array"),
            ("[{\"a\": 1}", "never closes"),
            ("[{\"a\": 1}] x", "trailing characters"),
            ("[{\"a\": 1},]", "not valid JSON"),
            ("[{\"a\": 1}, 2]", "row 1 is a JSON"),
        ] {
            let e = read(Format::Json, Compression::None, bad.as_bytes(), 2).unwrap_err();
            assert!(e.to_string().contains(word), "{bad}: {e}");
        }
    }

    #[test]
    fn bad_ndjson_names_the_line() {
        for (text, word) in [
            ("{\"a\": 1}\n{\"a\": \n1}\n", "line 2"),
            ("{\"a\": 1}\n\n[1]\n", "line 3 is a JSON array"),
            ("{\"a\": 1} {\"a\": 2}\n", "trailing characters at line 1"),
            (
                "{\"a\": 1}\n{\"a\": 1, \"a\": 2}",
                "line 2: key `a` appears twice",
            ),
            ("{\"a\": 1}\n{\"a\": \"\u{0}\"}", "line 2"),
        ] {
            let e = read(Format::Ndjson, Compression::None, text.as_bytes(), 3).unwrap_err();
            assert_eq!(e.error_type(), "InvalidEvent");
            assert!(e.to_string().contains(word), "{text:?}: {e}");
        }
        let mut bad_utf8 = b"{\"a\": 1}\n{\"a\": \"".to_vec();
        bad_utf8.extend([0xff, b'"', b'}', b'\n']);
        let e = read(Format::Ndjson, Compression::None, &bad_utf8, 100).unwrap_err();
        assert!(e.to_string().contains("invalid UTF-8 at line 2"), "{e}");
        let e = read(Format::Ndjson, Compression::Gzip, b"not gzip at all", 100).unwrap_err();
        assert!(e.to_string().contains("not valid gzip data"), "{e}");
    }

    #[test]
    fn a_row_longer_than_the_limit_is_refused_not_buffered() {
        let long = format!("{{\"a\": \"{}\"}}\n", "x".repeat(MAX_ROW_BYTES + 10));
        let e = read(Format::Ndjson, Compression::None, long.as_bytes(), 1 << 20).unwrap_err();
        assert!(e.to_string().contains("longer than 32 MiB"), "{e}");
    }

    /// A CSV row as its line and `(column, value)` pairs.
    type CsvRow = (usize, Vec<(String, Option<String>)>);

    /// Every row of a CSV object read with `options`, its bytes fed in pieces of `piece`.
    fn csv_rows(
        bytes: &[u8],
        options: &str,
        columns: Option<&[&str]>,
        piece: usize,
    ) -> Result<Vec<CsvRow>, Error> {
        let framing = Framing {
            format: Format::Csv { tab: false },
            compression: Compression::None,
            csv: CsvOptions::parse(options, "csv")?,
            columns: columns.map(|c| c.iter().map(|n| n.to_string()).collect()),
        };
        let mut out = Vec::new();
        for chunk in &chunks_of(framing, bytes, piece)? {
            let rows = chunk.rows()?;
            assert!(rows.is_text());
            for (row, start) in rows.rows_in(0..rows.len()) {
                let RowRef::Line(line) = row else {
                    panic!("CSV rows are named by line")
                };
                let fields = rows
                    .members(start)
                    .map(|(k, v)| {
                        let value = match rows.node(v) {
                            crate::rows::Node::Str(s) => Some(s.to_owned()),
                            crate::rows::Node::Null => None,
                            other => panic!("a CSV field is text or null, not {other:?}"),
                        };
                        (k.to_owned(), value)
                    })
                    .collect();
                out.push((line, fields));
            }
        }
        Ok(out)
    }

    fn fields(pairs: &[(&str, Option<&str>)]) -> Vec<(String, Option<String>)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.map(str::to_owned)))
            .collect()
    }

    #[test]
    fn csv_quoting_as_rfc_4180_says_in_any_pieces() {
        let text = "\u{feff}id,text,n\r\n\
                    1,\"a, b\",\r\n\
                    2,\"say \"\"hi\"\"\",7\r\n\
                    \r\n\
                    3,\"two\r\nlines\",\"\"\r\n\
                    4,plain \"quote\",x";
        let expected = vec![
            (
                2,
                fields(&[("id", Some("1")), ("text", Some("a, b")), ("n", None)]),
            ),
            (
                3,
                fields(&[
                    ("id", Some("2")),
                    ("text", Some("say \"hi\"")),
                    ("n", Some("7")),
                ]),
            ),
            (
                5,
                fields(&[
                    ("id", Some("3")),
                    ("text", Some("two\r\nlines")),
                    ("n", None),
                ]),
            ),
            (
                7,
                fields(&[
                    ("id", Some("4")),
                    ("text", Some("plain \"quote\"")),
                    ("n", Some("x")),
                ]),
            ),
        ];
        for piece in [1, 2, 5, 1 << 20] {
            assert_eq!(
                csv_rows(text.as_bytes(), "{}", None, piece).unwrap(),
                expected,
                "{piece}"
            );
        }
        // Another delimiter, a backslash escape, a comment line, and a null value.
        let text = "# exported\na;b\n'x\\'y;z';NA\n# more\n'';c\n";
        let rows = csv_rows(
            text.as_bytes(),
            r##"{"delimiter": ";", "quote": "'", "escape": "\\", "comment": "#", "null_value": "NA"}"##,
            None,
            3,
        )
        .unwrap();
        assert_eq!(
            rows,
            vec![
                (3, fields(&[("a", Some("x'y;z")), ("b", None)])),
                (5, fields(&[("a", Some("")), ("b", Some("c"))])),
            ]
        );
    }

    #[test]
    fn csv_headers_are_named_as_spark_names_them() {
        let rows = csv_rows(b"a,,A,b\n1,2,3,4\n", "{}", None, 64).unwrap();
        let names: Vec<&str> = rows[0].1.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, ["a0", "_c1", "A2", "b"]);
        let e = csv_rows(b"a,a,a1\n1,2,3\n", "{}", None, 64).unwrap_err();
        assert!(e.to_string().contains("column `a1` twice"), "{e}");
        // Without a header: `_c0`, … from the first record, which is a row; or the names given.
        let rows = csv_rows(b"\n1,2\n3,4\n", r#"{"header": false}"#, None, 1).unwrap();
        assert_eq!(
            rows[0],
            (2, fields(&[("_c0", Some("1")), ("_c1", Some("2"))]))
        );
        assert_eq!(rows.len(), 2);
        let rows = csv_rows(b"1,2\n", r#"{"header": false}"#, Some(&["x", "y"]), 1).unwrap();
        assert_eq!(
            rows,
            vec![(1, fields(&[("x", Some("1")), ("y", Some("2"))]))]
        );
        // With a header, the names given are not used: the header's are.
        let rows = csv_rows(b"p,q\n1,2\n", "{}", Some(&["x", "y"]), 1).unwrap();
        assert_eq!(rows[0].1[0].0, "p");
        // A header and nothing else: no rows.
        assert!(csv_rows(b"p,q", "{}", None, 1).unwrap().is_empty());
    }

    #[test]
    fn csv_chunks_cut_between_records_only_however_the_bytes_arrive() {
        // Records with quoted line breaks and delimiters, enough for several chunks.
        let mut text = String::from("i,s\n");
        for i in 0..300_000 {
            text.push_str(&format!("{i},\"x\n{}\"\"y,\"\n", "z".repeat(i % 17)));
        }
        let cuts = |bytes: &[u8], compression, piece| {
            cuts(Format::Csv { tab: false }, compression, bytes, piece)
        };
        let whole = cuts(text.as_bytes(), Compression::None, text.len());
        assert!(whole.len() > 2, "{} chunks", whole.len());
        assert!(whole.iter().all(|(_, _, t)| t.len() <= CHUNK_BYTES));
        let gz = gzip(text.as_bytes());
        for piece in [999, 65_536] {
            assert!(
                cuts(text.as_bytes(), Compression::None, piece) == whole,
                "{piece}"
            );
            assert!(cuts(&gz, Compression::Gzip, piece) == whole, "gzip {piece}");
        }
        let rows = csv_rows(text.as_bytes(), "{}", None, 4096).unwrap();
        assert_eq!(rows.len(), 300_000);
        for i in [0, 1, 177_777, 299_999] {
            let (line, fields) = &rows[i];
            assert_eq!(*line, 2 + 2 * i);
            let s = format!("x\n{}\"y,", "z".repeat(i % 17));
            assert_eq!(fields[1].1.as_deref(), Some(s.as_str()));
        }
    }

    #[test]
    fn bad_csv_names_the_line_never_the_content() {
        for (text, options, word) in [
            (
                "a,b\n1,2\n3\n",
                "{}",
                "line 3: 1 field where there are 2 columns",
            ),
            (
                "a,b\n1,2\n3,4,5\n",
                "{}",
                "line 3: 3 fields where there are 2 columns",
            ),
            (
                "a,b\n1,\"2\n3,4\n",
                "{}",
                "line 2: a quoted field never closes",
            ),
            (
                "a,b\n1,\"secret\" x\n",
                "{}",
                "line 2: a quoted field has characters after its closing quote",
            ),
            ("a,\"b\n", "{}", "line 1: a quoted field never closes"),
        ] {
            let e = csv_rows(text.as_bytes(), options, None, 2).unwrap_err();
            assert_eq!(e.error_type(), "InvalidEvent");
            assert!(e.to_string().contains(word), "{text:?}: {e}");
            assert!(!e.to_string().contains("secret"), "{e}");
        }
        let mut bad_utf8 = b"a,b\n1,2\n3,".to_vec();
        bad_utf8.extend([0xff, b'\n']);
        let e = csv_rows(&bad_utf8, "{}", None, 100).unwrap_err();
        assert!(e.to_string().contains("invalid UTF-8 at line 3"), "{e}");
        // PERMISSIVE: missing fields are null, extra ones dropped.
        let rows = csv_rows(b"a,b\n1\n3,4,5\n", r#"{"mode": "PERMISSIVE"}"#, None, 100).unwrap();
        assert_eq!(
            rows,
            vec![
                (2, fields(&[("a", Some("1"))])),
                (3, fields(&[("a", Some("3")), ("b", Some("4"))])),
            ]
        );
        // An unterminated quote early in a large object stops at the row limit, said so.
        let mut long = b"a\n\"".to_vec();
        long.extend(std::iter::repeat_n(b'x', MAX_ROW_BYTES + 10));
        let e = csv_rows(&long, "{}", None, 1 << 20).unwrap_err();
        assert!(e.to_string().contains("unterminated quote"), "{e}");
    }
}

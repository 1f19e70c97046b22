//! The spool beside the log (`audit.jsonl.spool`): every row the log gets,
//! in the log's order, waiting until the collector has it.
//!
//! The file is a fixed-width header line, then rows exactly as the log
//! has them (link included), one a line:
//!
//! ```text
//! cli-guard spool 1 delivered=00000000000000000074 seq=00000000000000000000
//! {"seq":1,"prev_sha256":null,"ts":…}
//! ```
//!
//! `delivered` is the offset of the first row the collector has not
//! acknowledged, `seq` the link of the last one it has. Writers append
//! rows under the log's lock (so the spool's order is the chain's); one
//! shipper at a time (an exclusive lock on the spool itself) reads from
//! `delivered`, sends, and moves the header on over what the collector's
//! TCP acknowledged; once everything is delivered it cuts the file back
//! to its header, under the log's lock. Exactly once by the chain: a row
//! is sent again only if its connection broke before the collector's
//! acknowledgement, and then it is the same bytes with the same link,
//! which a reader counts once.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::audit::link_of;

/// The most the spool holds: past this, rows stay in the log only (and a
/// `required` shipping refuses to run the tool).
pub(crate) const CAP: u64 = 64 * 1024 * 1024;
/// What the header line starts with.
const MAGIC: &str = "cli-guard spool 1 ";
/// The header's length, newline included.
pub(crate) const HEADER_LEN: u64 = 74;

/// The spool of the log at `log`.
pub(crate) fn path_of(log: &Path) -> PathBuf {
    let mut name = log.as_os_str().to_owned();
    name.push(".spool");
    PathBuf::from(name)
}

/// Where delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    /// The offset of the first row not yet delivered.
    pub delivered: u64,
    /// The link (`seq`) of the last row delivered; 0 before any.
    pub seq: u64,
}

impl Default for Header {
    fn default() -> Header {
        Header {
            delivered: HEADER_LEN,
            seq: 0,
        }
    }
}

impl Header {
    pub(crate) fn to_bytes(self) -> Vec<u8> {
        format!("{MAGIC}delivered={:020} seq={:020}\n", self.delivered, self.seq).into_bytes()
    }

    /// The header at the start of `bytes`; `None` if it is not one (then
    /// everything in the spool is sent: at worst again, which the chain
    /// shows as a row delivered twice).
    pub(crate) fn parse(bytes: &[u8]) -> Option<Header> {
        let line = bytes.get(..usize::try_from(HEADER_LEN).ok()?)?;
        let text = std::str::from_utf8(line).ok()?.strip_suffix('\n')?;
        let rest = text.strip_prefix(MAGIC)?;
        let (delivered, seq) = rest.split_once(' ')?;
        let number = |field: &str, key: &str| -> Option<u64> {
            let digits = field.strip_prefix(key)?;
            (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()))
                .then(|| digits.parse().ok())
                .flatten()
        };
        let header = Header {
            delivered: number(delivered, "delivered=")?,
            seq: number(seq, "seq=")?,
        };
        (header.delivered >= HEADER_LEN).then_some(header)
    }
}

/// One row read from the spool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Spooled<'a> {
    /// The row, without its newline.
    pub line: &'a [u8],
    /// The offset just past its newline.
    pub end: u64,
    /// Its link's seq, if it has one.
    pub seq: Option<u64>,
}

/// The whole rows in `data`, read from offset `at`; a last line without
/// its newline (still being written) is left for later.
pub(crate) fn rows(data: &[u8], at: u64) -> Vec<Spooled<'_>> {
    let mut out = Vec::new();
    let mut start = 0usize;
    while let Some(len) = data[start..].iter().position(|b| *b == b'\n') {
        let line = &data[start..start + len];
        start += len + 1;
        if line.is_empty() {
            continue;
        }
        out.push(Spooled {
            line,
            end: at + start as u64,
            seq: link_of(line).map(|l| l.seq),
        });
    }
    out
}

/// The spool as a writer appends to it.
#[derive(Debug)]
pub(crate) struct Appender {
    file: File,
}

/// Why a row was not spooled.
#[derive(Debug)]
pub(crate) enum NotSpooled {
    /// The spool is at its cap.
    Full(u64),
    Io(io::Error),
}

impl Appender {
    /// Opens (creating) the spool at `path` for appending, as the log is
    /// opened: never through a symlink, a regular file only.
    pub(crate) fn open(path: &Path) -> Result<Appender, String> {
        crate::audit::open_append(path)
            .map(|file| Appender { file })
            .map_err(|e| format!("cannot open the spool {}: {e}", path.display()))
    }

    /// How many bytes wait in it (rows not yet delivered, or not yet cut).
    pub(crate) fn size(&self) -> io::Result<u64> {
        self.file.metadata().map(|m| m.len())
    }

    /// Appends one row (newline included) with one write; the caller holds
    /// the log's lock. A new spool gets its header first.
    pub(crate) fn append(&mut self, line: &[u8]) -> Result<(), NotSpooled> {
        let size = self.size().map_err(NotSpooled::Io)?;
        if size == 0 {
            write_once(&mut self.file, &Header::default().to_bytes()).map_err(NotSpooled::Io)?;
        } else if size + line.len() as u64 > CAP {
            return Err(NotSpooled::Full(size));
        }
        write_once(&mut self.file, line).map_err(NotSpooled::Io)
    }
}

fn write_once(file: &mut File, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write;
    match file.write(bytes)? {
        n if n == bytes.len() => Ok(()),
        n => Err(io::Error::new(
            io::ErrorKind::WriteZero,
            format!("short write: {n} of {} bytes", bytes.len()),
        )),
    }
}

/// Opens the spool at `path` for the shipper (reading, and writing its
/// header); `None` when there is none.
pub(crate) fn open_for_delivery(path: &Path) -> io::Result<Option<File>> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK | nix::libc::O_NOCTTY)
        .open(path)
    {
        Ok(file) if file.metadata()?.is_file() => Ok(Some(file)),
        Ok(_) => Err(io::Error::other(format!(
            "{} is not a regular file",
            path.display()
        ))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// The header of `file`, or the default for a spool without a readable
/// one.
pub(crate) fn read_header(file: &File) -> io::Result<Header> {
    let mut buf = vec![0u8; HEADER_LEN as usize];
    let n = read_at_most(file, &mut buf, 0)?;
    Ok(Header::parse(&buf[..n]).unwrap_or_default())
}

pub(crate) fn write_header(file: &File, header: Header) -> io::Result<()> {
    file.write_all_at(&header.to_bytes(), 0)
}

/// Up to `max` bytes from `at`, and more if needed to hold one whole row.
pub(crate) fn read_from(file: &File, at: u64, max: usize) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut chunk = vec![0u8; max.max(4096)];
    loop {
        let n = read_at_most(file, &mut chunk, at + out.len() as u64)?;
        out.extend_from_slice(&chunk[..n]);
        if n == 0 || out.len() >= max && out.contains(&b'\n') {
            return Ok(out);
        }
        if n < chunk.len() {
            return Ok(out);
        }
    }
}

fn read_at_most(file: &File, buf: &mut [u8], at: u64) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match file.read_at(&mut buf[got..], at + got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_is_fixed_width_and_reads_back() {
        let h = Header {
            delivered: 1234,
            seq: 56,
        };
        let bytes = h.to_bytes();
        assert_eq!(bytes.len() as u64, HEADER_LEN);
        assert_eq!(
            bytes,
            b"cli-guard spool 1 delivered=00000000000000001234 seq=00000000000000000056\n"
        );
        assert_eq!(Header::parse(&bytes), Some(h));
        assert_eq!(Header::default().to_bytes().len() as u64, HEADER_LEN);
        // Rows after it do not matter.
        let mut more = bytes.clone();
        more.extend_from_slice(b"{\"seq\":1}\n");
        assert_eq!(Header::parse(&more), Some(h));
    }

    #[test]
    fn a_header_that_is_not_one_is_refused() {
        let good = Header::default().to_bytes();
        let mut cases: Vec<Vec<u8>> = vec![
            Vec::new(),
            good[..40].to_vec(),
            b"cli-guard spool 2 delivered=00000000000000001234 seq=00000000000000000056\n".to_vec(),
            b"cli-guard spool 1 delivered=0000000000000000123x seq=00000000000000000056\n".to_vec(),
            b"cli-guard spool 1 delivered=00000000000000000012 seq=00000000000000000056\n".to_vec(),
            b"cli-guard spool 1 seq=00000000000000000056 delivered=00000000000000001234\n".to_vec(),
        ];
        let mut no_newline = good.clone();
        no_newline[73] = b' ';
        cases.push(no_newline);
        for case in cases {
            assert_eq!(Header::parse(&case), None, "{}", String::from_utf8_lossy(&case));
        }
    }

    #[test]
    fn rows_are_whole_lines_with_their_end_and_link() {
        let data = b"{\"seq\":7,\"prev_sha256\":null,\"ts\":1}\n\n{\"ts\":2}\n{\"seq\":9,";
        let rows = rows(data, 100);
        assert_eq!(
            rows,
            [
                Spooled {
                    line: b"{\"seq\":7,\"prev_sha256\":null,\"ts\":1}",
                    end: 100 + 36,
                    seq: Some(7)
                },
                Spooled {
                    line: b"{\"ts\":2}",
                    end: 100 + 46,
                    seq: None
                },
            ]
        );
    }

    #[test]
    fn the_spool_is_beside_the_log() {
        assert_eq!(
            path_of(Path::new("/s/audit.jsonl")),
            PathBuf::from("/s/audit.jsonl.spool")
        );
    }
}

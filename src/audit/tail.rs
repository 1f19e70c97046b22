//! The live log as `cli-guard audit --follow` reads it: whole lines only,
//! across rotations; a row still being written waits for its newline.

use std::fs::File;
use std::ops::ControlFlow;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::audit::fold::{read_stream, BadLine};
use crate::audit::record::Row;

/// The live log as `--follow` reads it: whole lines only, a row still being
/// written stays in `partial` until its newline arrives.
pub(super) struct Tail {
    file: Option<(File, u64)>,
    partial: Vec<u8>,
    line_no: u64,
}

impl Tail {
    pub(super) fn open(path: &Path) -> Tail {
        let file = File::open(path).ok().and_then(|f| {
            let ino = f.metadata().ok()?.ino();
            Some((f, ino))
        });
        Tail {
            file,
            partial: Vec::new(),
            line_no: 0,
        }
    }

    /// Reads what has been appended, in bounded chunks, folding whole lines
    /// as it goes; a row still being written waits in `partial`.
    pub(super) fn read(
        &mut self,
        path: &Path,
        record: &mut impl FnMut(Row) -> ControlFlow<()>,
        bad: &mut impl FnMut(BadLine),
    ) {
        let Some((file, _)) = self.file.as_mut() else {
            *self = Tail::open(path);
            return;
        };
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            let n = match std::io::Read::read(file, &mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            // Only the new bytes can hold the line end: a long line must not
            // be rescanned on every chunk.
            let newline = chunk[..n].iter().rposition(|b| *b == b'\n');
            self.partial.extend_from_slice(&chunk[..n]);
            if let Some(at) = newline {
                let end = self.partial.len() - n + at;
                let whole: Vec<u8> = self.partial.drain(..=end).collect();
                self.line_no += read_stream(path, &mut &whole[..], self.line_no, record, bad).unwrap_or(0);
            }
        }
    }

    /// Whether the path now names another file than the one being read.
    pub(super) fn rotated(&self, path: &Path) -> bool {
        match &self.file {
            Some((_, ino)) => std::fs::metadata(path).is_ok_and(|m| m.ino() != *ino),
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::path::PathBuf;

    fn line(id: &str, kind: &str) -> String {
        format!("{{\"ts\":\"2026-11-24T00:00:00.000Z\",\"kind\":\"{kind}\",\"audit_id\":\"{id}\"}}\n")
    }

    /// A fresh directory for one test's log.
    fn dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("cli-guard-tail-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        dir
    }

    fn append(path: &Path, bytes: &[u8]) {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut f| f.write_all(bytes))
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }

    /// Reads what is new, returning the rows' audit IDs and the bad lines'
    /// numbers.
    fn read(tail: &mut Tail, path: &Path) -> (Vec<String>, Vec<u64>) {
        let (mut ids, mut bad) = (Vec::new(), Vec::new());
        tail.read(
            path,
            &mut |r: Row| {
                ids.push(r.audit_id);
                ControlFlow::Continue(())
            },
            &mut |b: BadLine| bad.push(b.line),
        );
        (ids, bad)
    }

    #[test]
    fn a_line_written_in_two_halves_is_folded_once_complete() {
        let dir = dir("halves");
        let log = dir.join("audit.jsonl");
        let whole = line("a", "start");
        let (head, rest) = whole.split_at(20);
        append(&log, head.as_bytes());
        let mut tail = Tail::open(&log);
        assert_eq!(read(&mut tail, &log), (vec![], vec![]), "half a line waits");
        append(&log, rest.as_bytes());
        assert_eq!(read(&mut tail, &log), (vec!["a".to_string()], vec![]));
        assert_eq!(read(&mut tail, &log), (vec![], vec![]), "and is read once");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_line_number_continues_across_reads() {
        let dir = dir("numbers");
        let log = dir.join("audit.jsonl");
        append(&log, format!("{}garbage\n", line("a", "start")).as_bytes());
        let mut tail = Tail::open(&log);
        assert_eq!(read(&mut tail, &log), (vec!["a".to_string()], vec![2]));
        append(&log, format!("{}more garbage\n", line("a", "end")).as_bytes());
        assert_eq!(read(&mut tail, &log), (vec!["a".to_string()], vec![4]));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_rotation_is_followed() {
        let dir = dir("rotation");
        let log = dir.join("audit.jsonl");
        append(&log, line("a", "start").as_bytes());
        let mut tail = Tail::open(&log);
        assert_eq!(read(&mut tail, &log).0, vec!["a"]);
        assert!(!tail.rotated(&log));
        // A writer's last row to the old file, then the rename, then a row
        // to the new one.
        append(&log, line("a", "end").as_bytes());
        std::fs::rename(&log, dir.join("audit.jsonl.1")).unwrap_or_else(|e| panic!("{e}"));
        append(&log, line("b", "start").as_bytes());
        assert!(tail.rotated(&log));
        assert_eq!(read(&mut tail, &log).0, vec!["a"], "the old file's last row");
        let mut tail = Tail::open(&log);
        assert!(!tail.rotated(&log));
        assert_eq!(read(&mut tail, &log).0, vec!["b"], "the new file from its start");
        let _ = std::fs::remove_dir_all(&dir);
    }
}

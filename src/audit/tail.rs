//! The live log as `cli-guard audit --follow` reads it: whole lines only,
//! across rotations; a row still being written waits for its newline.

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::audit::fold::{read_stream, BadLine, Fields};

/// The live log as `--follow` reads it: whole lines only, a row still being
/// written stays in `partial` until its newline arrives.
pub struct Tail {
    file: Option<(File, u64)>,
    partial: Vec<u8>,
    line_no: u64,
}

impl Tail {
    pub fn open(path: &Path) -> Tail {
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
    pub fn read(&mut self, path: &Path, record: &mut impl FnMut(Fields), bad: &mut impl FnMut(BadLine)) {
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
    pub fn rotated(&self, path: &Path) -> bool {
        match &self.file {
            Some((_, ino)) => std::fs::metadata(path).is_ok_and(|m| m.ino() != *ino),
            None => false,
        }
    }
}
